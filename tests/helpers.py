"""Helpers of the tests only; those the benchmarks share live in ``baac_severity.testing.sandbox``
(a throwaway repository) and ``baac_severity.testing.local_service`` (the real service on a loopback
port)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import yaml

from baac_severity.data import loaders, scd2

# The fast tests' server limit: small, so that a 413 test sends little; 10,001 minimal records fit.
TEST_MAX_BODY = 2_000_000


def lock_hashes(repo: Path) -> dict[str, str]:
    """md5 of every output of every stage in dvc.lock."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {
        f"{stage}:{out['path']}": out["md5"]
        for stage, entry in lock["stages"].items()
        for out in entry.get("outs", [])
    }


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (hidden ones included), by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def load_table(path: str | Path, year: int, table: str | None = None) -> pd.DataFrame:
    """One BAAC file on its own, read and checked as ``loaders.load_year`` reads each of a
    year's files: the rows it keeps (duplicate and extra lieux rows are quarantined)."""
    return loaders._kept(loaders._read_rows(Path(path), year, table)[1])


def apply_chunk(
    history: pd.DataFrame | None,
    incoming: pd.DataFrame,
    key: str,
    chunk_id: int,
    as_of: pd.Timestamp,
    source: str = "chunk",
) -> pd.DataFrame:
    """The SCD2 mechanism in memory: one chunk merged into a history frame with the same
    ``scd2.diff`` and ``scd2.close`` as the stage's on-disk store (``PartitionedHistory``),
    which the tests compare with this reference."""
    incoming = scd2.hashed(incoming, key, source)
    if history is None or history.empty:
        return scd2._new_versions(incoming, chunk_id, as_of)

    def current_versions(keys: pd.Index) -> pd.DataFrame:
        return history.loc[history["is_current"] & history[key].isin(keys)]

    current = history["is_current"].to_numpy()
    keys = history[key].to_numpy()[current]
    hashes = pd.Series(history["record_hash"].to_numpy()[current], index=keys)
    opened, closing = scd2.diff(hashes, incoming, key, chunk_id, as_of, current_versions)
    if opened.empty:
        return history
    if len(closing):
        history = scd2.close(history, closing, key, chunk_id, as_of)
    # The newest chunk's column order first, then any column only older versions have: the
    # order the on-disk store reads (PartitionedHistory.schema).
    merged = pd.concat([history, opened], ignore_index=True)
    columns = list(dict.fromkeys([*opened.columns, *history.columns]))
    return merged if merged.columns.tolist() == columns else merged[columns]
