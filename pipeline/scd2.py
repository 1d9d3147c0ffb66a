"""One Slowly Changing Dimension Type 2 mechanism, shared by the accident and user histories.

Each version of a record carries:
- ``valid_from`` / ``valid_to``: the as-of dates of the chunks that opened and closed it
  (``valid_to`` is null while current), never the wall clock;
- ``valid_from_chunk`` / ``valid_to_chunk``: the ids of those chunks;
- ``is_current`` and ``record_hash`` (a hash of the tracked attributes).

A record arriving with changed attributes closes its current version and opens a new one; an
unchanged re-arrival changes nothing. Chunks must be applied in increasing id order, and
applying a chunk id that is already applied is a no-op, so a replay is idempotent.
"""

from __future__ import annotations

import pandas as pd

from pipeline.io import BadInputError

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


def applied_chunks(history: pd.DataFrame | None) -> int:
    """The highest chunk id that has touched this history (0 when empty)."""
    if history is None or history.empty:
        return 0
    closed = history["valid_to_chunk"].max()
    opened = int(history["valid_from_chunk"].max())
    return max(opened, 0 if pd.isna(closed) else int(closed))


def apply_chunk(
    history: pd.DataFrame | None,
    incoming: pd.DataFrame,
    key: str,
    chunk_id: int,
    as_of: pd.Timestamp,
    source: str = "chunk",
) -> pd.DataFrame:
    """Merge one chunk's records into the history and return the new history (unsorted)."""
    if chunk_id < applied_chunks(history):
        # Replaying an older chunk over newer versions would revert them.
        raise ValueError(f"chunk {chunk_id} arrives after chunk {applied_chunks(history)}")
    duplicated = incoming[key].duplicated()
    if duplicated.any():
        raise BadInputError(
            source,
            "duplicated key in one chunk",
            column=key,
            value=incoming[key][duplicated].iloc[0],
        )
    incoming = incoming.assign(record_hash=record_hashes(incoming, tracked_columns(incoming, key)))
    if history is None or history.empty:
        return _new_versions(incoming, chunk_id, as_of)
    is_current = history["is_current"].to_numpy()
    current_hash = pd.Series(
        history["record_hash"].to_numpy()[is_current], index=history[key].to_numpy()[is_current]
    )
    previous = current_hash.reindex(incoming[key].to_numpy()).to_numpy()
    is_new = pd.isna(previous)
    changed = ~is_new & (incoming["record_hash"].to_numpy() != previous)
    if not (is_new.any() or changed.any()):
        return history
    closing = is_current & history[key].isin(incoming[key][changed]).to_numpy()
    history = history.copy()
    history.loc[closing, "valid_to"] = as_of
    history.loc[closing, "valid_to_chunk"] = chunk_id
    history.loc[closing, "is_current"] = False
    opened = _new_versions(incoming.loc[is_new | changed], chunk_id, as_of)
    return pd.concat([history, opened], ignore_index=True)


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


def current(history: pd.DataFrame) -> pd.DataFrame:
    return history.loc[history["is_current"]].drop(columns=VALIDITY_COLUMNS).reset_index(drop=True)
