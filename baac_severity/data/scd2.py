"""One Slowly Changing Dimension Type 2 mechanism, shared by the accident and user histories.

Each version of a record carries:
- ``valid_from`` / ``valid_to``: the as-of dates of the chunks that opened and closed it
  (``valid_to`` is null while current), never the wall clock;
- ``valid_from_chunk`` / ``valid_to_chunk``: the ids of those chunks;
- ``is_current`` and ``record_hash`` (a hash of the tracked attributes).

A record arriving with changed attributes closes its current version and opens a new one; an
unchanged re-arrival changes nothing. Chunks must be applied in increasing id order, and
applying a chunk id that is already applied is a no-op, so a replay is idempotent.

The tracked columns may change over time: a source column that appears in chunk N is tracked
from chunk N on, and the versions written before it read it as missing. A column that one
side lacks counts as missing when a re-arrival is compared with its current version.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from baac_severity.data.io import BadInputError, remove_tree, write_parquet

VALIDITY_COLUMNS = [
    "valid_from",
    "valid_to",
    "valid_from_chunk",
    "valid_to_chunk",
    "is_current",
    "record_hash",
]
VALIDITY_DTYPES = {
    "valid_from": "datetime64[ms]",
    "valid_to": "datetime64[ms]",
    "valid_from_chunk": "int32",
    "valid_to_chunk": "Int32",
    "is_current": "bool",
    "record_hash": "string",
}


def tracked_columns(frame: pd.DataFrame, key: str) -> list[str]:
    return [column for column in frame.columns if column != key and column not in VALIDITY_DTYPES]


def record_hashes(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """A stable 64-bit hash of each row's tracked attributes, as 16 hex characters."""
    hashed = pd.util.hash_pandas_object(frame[columns], index=False, categorize=False)
    return pd.Series([f"{value:016x}" for value in hashed.to_numpy()], index=frame.index).astype(
        "string"
    )


def hashed(incoming: pd.DataFrame, key: str, source: str) -> pd.DataFrame:
    """The incoming records with their ``record_hash``; a key twice in one chunk is an error."""
    duplicated = incoming[key].duplicated()
    if duplicated.any():
        raise BadInputError(
            source,
            "duplicated key in one chunk",
            column=key,
            value=incoming[key][duplicated].iloc[0],
        )
    return incoming.assign(record_hash=record_hashes(incoming, tracked_columns(incoming, key)))


def _missing_like(values: pd.Series, index: pd.Index) -> pd.Series:
    return pd.Series(pd.NA, index=index, dtype=values.dtype)


def same_values(current: pd.DataFrame, incoming: pd.DataFrame, key: str) -> np.ndarray:
    """Whether each incoming record equals its key's current version (one row per key in
    ``current``), a column that either side lacks counting as missing on that side."""
    columns = list(dict.fromkeys([*tracked_columns(incoming, key), *tracked_columns(current, key)]))
    old = current.set_index(key).reindex(pd.Index(incoming[key]))
    new = incoming.set_index(key)
    # The absent side gets the present side's dtype: the hashes then compare values only.
    old = old.assign(**{c: _missing_like(new[c], old.index) for c in columns if c not in old})
    new = new.assign(**{c: _missing_like(old[c], new.index) for c in columns if c not in new})
    return record_hashes(old, columns).to_numpy() == record_hashes(new, columns).to_numpy()


def diff(
    current_hash: pd.Series,
    incoming: pd.DataFrame,
    key: str,
    chunk_id: int,
    as_of: pd.Timestamp,
    current_versions: Callable[[pd.Index], pd.DataFrame],
) -> tuple[pd.DataFrame, pd.Index]:
    """The versions a chunk opens, and the keys whose current version it closes.

    ``current_hash`` maps the incoming keys that the history holds to their current version's
    hash; ``incoming`` is ``hashed``; ``current_versions(keys)`` reads those keys' current
    versions.
    """
    previous = current_hash.reindex(incoming[key].to_numpy()).to_numpy(dtype=object, na_value=None)
    is_new = pd.isna(previous)
    changed = ~is_new & (incoming["record_hash"].to_numpy(dtype=object) != previous)
    if changed.any():
        # A hash covers the columns its version had: a version written before a source column
        # appeared differs in hash from an unchanged re-arrival. Compare those few by value.
        candidates = incoming.loc[changed]
        current = current_versions(pd.Index(candidates[key]))
        changed[changed] = ~same_values(current, candidates, key)
    opened = _new_versions(incoming.loc[is_new | changed], chunk_id, as_of)
    return opened, pd.Index(incoming[key][changed])


def close(
    versions: pd.DataFrame, keys: pd.Index, key: str, chunk_id: int, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Close the current version of each of ``keys`` as of the given chunk."""
    closing = versions["is_current"].to_numpy() & versions[key].isin(keys).to_numpy()
    versions = versions.copy()
    versions.loc[closing, "valid_to"] = as_of
    versions.loc[closing, "valid_to_chunk"] = chunk_id
    versions.loc[closing, "is_current"] = False
    return versions


class PartitionedHistory:
    """An SCD2 history stored as a Parquet dataset directory with one part per chunk.

    Part k holds the versions that chunk k opened, sorted by key. Applying a chunk writes its
    own part and rewrites only the older parts holding versions it closes (corrections are
    rare), so the cost of a chunk does not grow with the history.
    """

    def __init__(self, directory: Path, key: str) -> None:
        self.directory = Path(directory)
        self.key = key

    def part(self, chunk_id: int) -> Path:
        return self.directory / f"part-{chunk_id:05d}.parquet"

    def parts(self) -> list[Path]:
        return sorted(self.directory.glob("part-*.parquet"))

    def rewind(self, chunk_id: int) -> None:
        """Bring the store back to what it was right after applying ``chunk_id`` (0: empty).

        A run killed while applying later chunks may have written their parts and closed
        older versions in earlier parts. Both are undone: dropping the parts alone would leave
        those versions closed, and re-applying the chunks would then open them a second time.
        """
        if chunk_id == 0:
            if self.directory.exists():
                remove_tree(self.directory)
            return
        for part in self.parts():
            if int(part.stem.split("-")[1]) > chunk_id:
                part.unlink()
        for part in self.parts():
            closed_by = pq.read_table(part, columns=["valid_to_chunk"]).column("valid_to_chunk")
            if pc.any(pc.greater(closed_by, chunk_id)).as_py():
                write_parquet(reopen(pd.read_parquet(part), chunk_id), part)

    def schema(self) -> pa.Schema:
        """The dataset's schema: the union of its parts' columns.

        Parts written before a source column appeared lack it; pyarrow would otherwise take
        the first part's schema and silently drop the column. The newest part comes first, so
        that its pandas metadata (the dtypes of the current columns) is the one kept.
        """
        return pa.unify_schemas([pq.read_schema(part) for part in reversed(self.parts())])

    def _read(self, **options) -> pd.DataFrame:
        """Every part in id order, under the unified schema (``options``: of ``read_parquet``)."""
        return pd.read_parquet(self.directory, schema=self.schema(), **options)

    def _current_hashes(self, keys: pd.Series) -> pd.Series:
        """The current hash of each of ``keys`` that the history holds.

        The filter runs in Arrow over two columns of every part, and only the matching rows
        become pandas: converting the whole history's keys and indexing them made a chunk's
        cost grow with the history (docs/scale.md: 1.88 s for chunk 1, 5.35 s for chunk 11
        of the 10x synthetic bundle).
        """
        if not self.parts():
            return pd.Series(dtype="string")
        wanted = pa.array(keys.to_numpy(dtype=object, na_value=None), type=pa.string())
        index = pq.read_table(
            self.directory,
            columns=[self.key, "record_hash"],
            filters=(pc.field("is_current") == True) & pc.field(self.key).isin(wanted),  # noqa: E712
        )
        return pd.Series(
            index.column("record_hash").to_numpy(), index=index.column(self.key).to_numpy()
        )

    def _current_versions(self, keys: pd.Index) -> pd.DataFrame:
        return self._read(filters=[("is_current", "==", True), (self.key, "in", list(keys))])

    def _parts_holding(self, keys: pd.Index) -> list[Path]:
        return [
            part
            for part in self.parts()
            if pd.Index(pq.read_table(part, columns=[self.key]).column(self.key).to_numpy())
            .isin(keys)
            .any()
        ]

    def apply(self, incoming: pd.DataFrame, chunk_id: int, as_of: pd.Timestamp, source: str):
        incoming = hashed(incoming, self.key, source)
        current = self._current_hashes(incoming[self.key])
        opened, closing = diff(current, incoming, self.key, chunk_id, as_of, self._current_versions)
        if len(closing):  # a corrected re-publication: rewrite only the parts it touches
            for part in self._parts_holding(closing):
                write_parquet(
                    close(pd.read_parquet(part), closing, self.key, chunk_id, as_of), part
                )
        if not opened.empty:
            write_parquet(ordered(opened, self.key), self.part(chunk_id))

    def read_parts(self) -> pd.DataFrame:
        """Every version, in part order: what the next stage reads (``read_parquet`` of the
        directory, but with the columns of every part)."""
        return self._read()

    def read(self) -> pd.DataFrame:
        return ordered(self.read_parts(), self.key)


def _new_versions(records: pd.DataFrame, chunk_id: int, as_of: pd.Timestamp) -> pd.DataFrame:
    rows = len(records)
    versions = records.reset_index(drop=True)
    validity = {
        "valid_from": pd.Series([as_of] * rows, dtype=VALIDITY_DTYPES["valid_from"]),
        "valid_to": pd.Series([pd.NaT] * rows, dtype=VALIDITY_DTYPES["valid_to"]),
        "valid_from_chunk": pd.Series([chunk_id] * rows, dtype=VALIDITY_DTYPES["valid_from_chunk"]),
        "valid_to_chunk": pd.Series([pd.NA] * rows, dtype=VALIDITY_DTYPES["valid_to_chunk"]),
        "is_current": pd.Series([True] * rows, dtype=VALIDITY_DTYPES["is_current"]),
    }
    for name, values in validity.items():
        versions[name] = values
    versions["record_hash"] = versions.pop("record_hash")
    return versions


def ordered(history: pd.DataFrame, key: str) -> pd.DataFrame:
    """The canonical row and column order, so that equal histories are equal files."""
    columns = [key, *tracked_columns(history, key), *VALIDITY_COLUMNS]
    return (
        history[columns]
        .sort_values([key, "valid_from_chunk"], kind="stable")
        .reset_index(drop=True)
    )


def reopen(versions: pd.DataFrame, chunk_id: int) -> pd.DataFrame:
    """Undo ``close`` for every version closed by a chunk after ``chunk_id``."""
    later = versions["valid_to_chunk"].gt(chunk_id).fillna(False).to_numpy(dtype=bool)
    versions = versions.copy()
    versions.loc[later, "valid_to"] = pd.NaT
    versions.loc[later, "valid_to_chunk"] = pd.NA
    versions.loc[later, "is_current"] = True
    return versions


def current(history: pd.DataFrame) -> pd.DataFrame:
    return history.loc[history["is_current"]].drop(columns=VALIDITY_COLUMNS).reset_index(drop=True)
