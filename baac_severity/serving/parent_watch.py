"""A worker exits when the ``bentoml serve`` process that started it dies.

BentoML's process manager (circus) starts each worker in a session of its own, so a SIGKILL of
``make serve``'s process group, or of the serve process, does not reach the workers: they lived
on as orphans holding the port (the next ``make serve`` failed with "Address already in use").
Linux delivers a chosen signal to a process whose parent dies (``prctl(PR_SET_PDEATHSIG)``):
SIGKILL. The parent only dies that way abnormally (Ctrl-C and SIGTERM reach ``bentoml serve``,
which stops its workers gracefully), and then nothing is left to coordinate a graceful exit;
SIGTERM's graceful shutdown took 2.4 s on a busy 2-core machine, SIGKILL frees the port at once.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# The parent when this module was imported (early in the worker's start): compared after the
# signal is armed, in case the parent died in between.
PARENT_AT_IMPORT = os.getppid()


def exit_with_parent(signal_number: int = signal.SIGKILL) -> bool:
    """Arm the parent-death signal of this process; send it now if the parent already died.

    Returns False where the platform has no parent-death signal (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != PARENT_AT_IMPORT:
        os.kill(os.getpid(), signal_number)
    return True
