"""The prediction log: one JSON line per answered prediction request, written off the hot path.

Each line holds the request id, a UTC timestamp, the model version, the number of records and
of predictions, the latency, the predicted classes and the SHA-256 of the request body: enough
to audit and monitor predictions without storing the accidents themselves.

The request thread only puts the line on a queue (``QueueHandler``); a listener thread writes
it to a size-rotated file. Several service workers may share the file: writes and rotations
take an advisory lock and a writer reopens the file when another one has rotated it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one worker per log file there
    fcntl = None


class SharedRotatingFileHandler(RotatingFileHandler):
    """A ``RotatingFileHandler`` that several processes can share (POSIX advisory lock)."""

    def __init__(self, filename: Path, max_bytes: int, backups: int) -> None:
        filename.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(filename, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self.lock_path = filename.with_name(filename.name + ".lock")

    def _rotated_elsewhere(self) -> bool:
        if self.stream is None:
            return False
        try:
            return os.stat(self.baseFilename).st_ino != os.fstat(self.stream.fileno()).st_ino
        except FileNotFoundError:
            return True

    def emit(self, record: logging.LogRecord) -> None:
        if fcntl is None:
            super().emit(record)
            return
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if self._rotated_elsewhere():
                    self.stream.close()
                    self.stream = self._open()
                super().emit(record)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class PredictionLog:
    """Writes prediction records as JSON lines through a background thread."""

    def __init__(
        self,
        path: str | Path,
        max_bytes: int,
        backups: int,
    ) -> None:
        self.path = Path(path)
        handler = SharedRotatingFileHandler(self.path, max_bytes, backups)
        handler.setFormatter(logging.Formatter("%(message)s"))
        lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        # One logger per log object, not propagated: prediction lines stay out of the
        # server's own logs.
        self.logger = logging.getLogger(f"app.predictions.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(QueueHandler(lines))
        self.listener = QueueListener(lines, handler)
        self.listener.start()
        self.closed = False
        atexit.register(self.close)

    def write(self, entry: dict[str, Any]) -> None:
        """Queue one line; returns at once (the listener thread does the I/O)."""
        self.logger.info(json.dumps(entry, separators=(",", ":")))

    def close(self) -> None:
        """Flush the queued lines and stop the writer thread (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.listener.stop()
        for handler in self.listener.handlers:
            handler.close()
