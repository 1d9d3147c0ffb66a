"""Property tests of the shared SCD Type 2 mechanism (baac_severity/data/scd2.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baac_severity.data import scd2
from baac_severity.data.io import BadInputError
from tests.helpers import apply_chunk

KEY = "num_acc"
EXAMPLES = settings(max_examples=200, deadline=None)


def chunk_frame(records: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            KEY: pd.Series(list(records), dtype="string"),
            "lum": pd.Series(list(records.values()), dtype="Int16"),
        }
    )


# A chunk is a set of keys (a small alphabet, so keys re-arrive) with an attribute value each.
chunks_strategy = st.lists(
    st.dictionaries(st.sampled_from([f"k{i}" for i in range(8)]), st.integers(1, 3), min_size=1),
    min_size=1,
    max_size=6,
)


def as_of(chunk_id: int) -> pd.Timestamp:
    return pd.Timestamp("2024-01-01") + pd.Timedelta(days=chunk_id)


def replay(chunks: list[dict[str, int]], history: pd.DataFrame | None = None, start: int = 1):
    for offset, records in enumerate(chunks):
        chunk_id = start + offset
        history = apply_chunk(history, chunk_frame(records), KEY, chunk_id, as_of(chunk_id))
    return history


def assert_one_current_version_per_key(history: pd.DataFrame, chunks) -> None:
    current_per_key = history.groupby(KEY)["is_current"].sum()
    assert (current_per_key == 1).all()
    assert set(current_per_key.index) == set().union(*chunks)


def assert_intervals_never_overlap(history: pd.DataFrame) -> None:
    for _, versions in scd2.ordered(history, KEY).groupby(KEY):
        starts = versions["valid_from_chunk"].to_numpy()
        ends = versions["valid_to_chunk"].astype("float64").fillna(float("inf")).to_numpy()
        assert (starts < ends).all()
        assert (ends[:-1] <= starts[1:]).all()  # each version ends before the next begins
        assert versions["valid_to"].isna().sum() == 1
        assert versions["is_current"].iloc[-1]


def assert_no_version_lost(history: pd.DataFrame, chunks) -> None:
    """Every distinct (key, value) run that arrived is still in the history."""
    expected_versions = 0
    last: dict[str, int] = {}
    for records in chunks:
        for key, value in records.items():
            if last.get(key) != value:
                expected_versions += 1
                last[key] = value
    assert len(history) == expected_versions
    assert history[history["is_current"]].set_index(KEY)["lum"].to_dict() == last


@EXAMPLES
@given(chunks_strategy)
def test_invariants_hold_for_any_arrival_sequence(chunks):
    # One replay checks every invariant: the mechanism costs milliseconds per chunk.
    history = replay(chunks)
    assert_one_current_version_per_key(history, chunks)
    assert_intervals_never_overlap(history)
    assert_no_version_lost(history, chunks)
    last_id = len(chunks)  # re-running the last chunk is a no-op
    again = apply_chunk(history, chunk_frame(chunks[-1]), KEY, last_id, as_of(last_id))
    pd.testing.assert_frame_equal(scd2.ordered(again, KEY), scd2.ordered(history, KEY))


@EXAMPLES
@given(chunks_strategy, st.integers(0, 6))
def test_one_at_a_time_equals_all_at_once(chunks, cut):
    """Stopping after some chunks, saving and resuming gives the identical table."""
    cut = min(cut, len(chunks))
    all_at_once = scd2.ordered(replay(chunks), KEY)
    first = replay(chunks[:cut]) if cut else None
    if first is not None:  # a round trip through Parquet, as between two stage runs
        first = scd2.ordered(first, KEY)
    resumed = replay(chunks[cut:], first, start=cut + 1) if cut < len(chunks) else first
    pd.testing.assert_frame_equal(scd2.ordered(resumed, KEY), all_at_once)


def test_reingestion_versions_instead_of_duplicating():
    """Regression: the original project keyed rows by a surrogate row id, so ingesting the
    same accident again created a second current row. Natural keys make it a version."""
    history = replay([{"a": 1, "b": 1}, {"a": 1, "b": 1}, {"a": 2}])
    assert history[KEY].value_counts().to_dict() == {"a": 2, "b": 1}
    assert history.groupby(KEY)["is_current"].sum().to_dict() == {"a": 1, "b": 1}
    closed = history[(history[KEY] == "a") & ~history["is_current"]].iloc[0]
    assert closed["valid_to_chunk"] == 3 and closed["valid_to"] == as_of(3)


def test_duplicated_key_within_a_chunk_is_bad_input():
    frame = pd.concat([chunk_frame({"a": 1}), chunk_frame({"a": 2})], ignore_index=True)
    with pytest.raises(BadInputError, match=r"duplicated key.*'a'"):
        scd2.hashed(frame, KEY, "chunk-0001")


def test_validity_dates_come_from_the_chunk_not_the_clock():
    history = replay([{"a": 1}, {"a": 3}])
    assert set(history["valid_from"]) == {as_of(1), as_of(2)}


@settings(max_examples=40, deadline=None)
@given(chunks_strategy)
def test_partitioned_store_equals_the_in_memory_history(chunks):
    """The stage's on-disk store (one Parquet part per chunk) is the same mechanism."""
    with tempfile.TemporaryDirectory() as directory:
        store = scd2.PartitionedHistory(Path(directory) / "history.parquet", KEY)
        for chunk_id, records in enumerate(chunks, start=1):
            store.apply(chunk_frame(records), chunk_id, as_of(chunk_id), "chunk")
        pd.testing.assert_frame_equal(store.read(), scd2.ordered(replay(chunks), KEY))
        opened = {int(part.stem.split("-")[1]) for part in store.parts()}
        assert opened == set(store.read()["valid_from_chunk"])
