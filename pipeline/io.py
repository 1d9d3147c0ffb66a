"""Atomic, deterministic writes and the one error type for bad input.

Every output goes to a temporary file in the destination directory and is then renamed over
the target, so a crash or a rejected chunk never leaves a partial file behind.
"""

from __future__ import annotations

import json
import os
import shutil
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


def run_stage(stage: str, work: Callable[[], object]) -> int:
    """Run a stage's work; bad input becomes one clear line on stderr and exit code 2."""
    try:
        work()
    except BadInputError as error:
        print(f"{stage}: bad input: {error}", file=sys.stderr)
        return 2
    return 0


@contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it over ``target`` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet(frame: pd.DataFrame, target: str | Path) -> None:
    """Write ``frame`` atomically as Parquet, with no wall-clock or index metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_path(target, ".parquet") as tmp:
        # Fixed writer options keep the bytes identical for identical data.
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)


def write_json(payload: Any, target: str | Path) -> None:
    with atomic_path(target, ".json") as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


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
    """Build a directory under a temporary name and rename it into place on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700 directories
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
