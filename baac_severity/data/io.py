"""Atomic, deterministic writes, the one error type for bad input, and the one way to run git.

Every output goes to a temporary file in the destination directory and is then renamed over
the target, so a crash or a rejected chunk never leaves a partial file behind. A process killed
mid-write (SIGKILL, power loss) cannot run its cleanup, so it may leave a temporary file: its
name is hidden (leading dot) and marked with ``TEMP_MARKER``, which keeps it invisible to the
readers (pyarrow datasets skip dot files; chunks are globbed as ``chunk-*``), and each stage
removes such leftovers from its outputs when it starts (``remove_leftovers``), before DVC hashes
them.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


class BadInputError(Exception):
    """Input that cannot be used as it is; the message names the file, line, field or value."""

    def __init__(
        self,
        path: str | Path,
        problem: str,
        *,
        line: int | None = None,
        column: str | None = None,
        value: Any = None,
    ) -> None:
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        detail = f" (value {value!r})" if value is not None else ""
        super().__init__(f"{where}: {problem}{detail}")
        self.path, self.line, self.column, self.value = str(path), line, column, value


BAD_INPUT_EXIT = 2
DISK_FULL_EXIT = 3
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Every temporary name starts with "." and holds this marker, so that leftovers of a killed
# writer can be told apart from real outputs (and from other dot files) and removed.
TEMP_MARKER = ".tmp-"


def run_stage(stage: str, work: Callable[[], object]) -> int:
    """Run a stage's work; bad input and a full disk become one clear line on stderr.

    Exit codes: 2 for bad input, 3 for a full disk or exhausted quota (the atomic writers
    leave the earlier outputs as they were, so freeing space and re-running is enough).
    """
    try:
        work()
    except BadInputError as error:
        print(f"{stage}: bad input: {error}", file=sys.stderr)
        return BAD_INPUT_EXIT
    except OSError as error:
        if error.errno not in DISK_FULL_ERRNOS:
            raise
        reason = os.strerror(error.errno).lower()
        print(f"{stage}: cannot write {error.filename}: {reason}", file=sys.stderr)
        return DISK_FULL_EXIT
    return 0


def is_temp_leftover(path: Path) -> bool:
    """Whether ``path`` is a temporary name made by this module."""
    return path.name.startswith(".") and TEMP_MARKER in path.name


def _temp_prefix(target: Path) -> str:
    return f".{target.name}{TEMP_MARKER}"


def _name_target(error: OSError, tmp: Path, target: Path) -> None:
    """Make an OSError name the output it was writing, not the temporary name.

    pyarrow raises OSError(ENOSPC) without a file name; nested temporaries (a file inside a
    temporary directory) are mapped back to their final place.
    """
    if error.filename is None or str(error.filename) == str(tmp):
        error.filename = str(target)
    elif str(error.filename).startswith(f"{tmp}{os.sep}"):
        error.filename = str(target / Path(error.filename).relative_to(tmp))


def _rename_aside(path: Path) -> Path:
    """Rename a directory to a fresh temporary name (a leftover if we are killed now)."""
    aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path)))
    os.replace(path, aside)  # a directory may replace the empty placeholder
    return aside


def remove_tree(path: str | Path) -> None:
    """Delete a directory so that it disappears at once: renamed to a temporary name first, a
    kill during the deletion leaves a hidden leftover, never a half-deleted directory."""
    shutil.rmtree(_rename_aside(Path(path)))


def remove_leftovers(*outputs: str | Path) -> list[Path]:
    """Remove the temporaries a killed writer left next to or inside ``outputs``.

    Call it when a stage starts, before it writes: DVC hashes whole output directories, so a
    leftover would otherwise become part of the output (and of dvc.lock). Returns what it
    removed.
    """
    found: list[Path] = []
    for output in map(Path, outputs):
        if output.parent.is_dir():
            found += sorted(output.parent.glob(f"{glob.escape(_temp_prefix(output))}*"))
        if output.is_dir():
            found += sorted(p for p in output.rglob(f"*{TEMP_MARKER}*") if is_temp_leftover(p))
    removed = []
    for path in found:
        if any(parent in removed for parent in path.parents):
            continue  # already gone with its temporary directory
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it over ``target`` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=_temp_prefix(target), suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, target)
    except OSError as error:
        _name_target(error, tmp, target)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(frame: pd.DataFrame, target: str | Path) -> None:
    """Write ``frame`` atomically as Parquet, with no wall-clock or index metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_path(target, ".parquet") as tmp:
        # Fixed writer options keep the bytes identical for identical data.
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)


def write_json(payload: Any, target: str | Path, sort_keys: bool = True) -> None:
    """``sort_keys=False`` keeps the payload's order: a DVC metrics file's key order is the
    column order of ``dvc exp show``."""
    with atomic_path(target, ".json") as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=sort_keys, default=str) + "\n")


def write_text(text: str, target: str | Path) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def read_json(path: str | Path, default: Any = None) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text())


@contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it into place on success.

    An existing ``target`` is first renamed aside (not deleted in place), so a kill at any
    moment leaves the old directory, the new one or, between two renames, none (the next run
    writes it again), but never a half-deleted or half-written one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=_temp_prefix(target)))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700 directories
        old = _rename_aside(target) if target.exists() else None
        try:
            os.replace(tmp, target)
        except OSError:
            if old is not None:  # put the previous version back
                os.replace(old, target)
            raise
        if old is not None:
            shutil.rmtree(old)
    except OSError as error:
        _name_target(error, tmp, target)
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def git(
    repo: str | Path,
    *args: str,
    check: bool = False,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """``git args`` in ``repo``; the output as bytes (``git show`` of a binary file), never
    printed. ``check``: raise ``CalledProcessError`` when git fails; ``stdin``: what git reads
    (``cat-file --batch``)."""
    return subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        check=check,
        env=env,
        input=stdin,
        timeout=60,
    )


def git_text(repo: str | Path, *args: str) -> str:
    """The stripped standard output of a ``git`` command that must succeed."""
    return git(repo, *args, check=True).stdout.decode().strip()
