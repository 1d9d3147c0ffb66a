"""The SCD2 histories survive a new source column: real 2024 accidents arrive in two chunks,
the first from a source that did not publish the speed limit ``vma`` yet.

Through the real on-disk store (``PartitionedHistory``) and the ``split`` stage that reads it:
the old part keeps its columns, reading the whole dataset gives ``vma`` missing for the old
versions, the column is tracked from chunk 2 on, every key keeps one current version, and a
re-run changes no byte.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from baac_severity.config import CLEAN_ACCIDENTS, CLEAN_USERS, DATASET, RAW_DIR, ROOT
from baac_severity.data import entities, loaders, scd2, schema, split
from tests.helpers import apply_chunk, load_table

KEY = schema.KEY
NEW = "vma"  # published by the 2019+ lieux table
ACCIDENTS = 1500  # per chunk
REPUBLISHED = 200  # accidents of chunk 1 published again in chunk 2
AS_OF = {1: pd.Timestamp("2024-06-30"), 2: pd.Timestamp("2024-12-31")}


@pytest.fixture(scope="module")
def records() -> dict[str, pd.DataFrame]:
    """Accident and road-user records of the first 2 x 1,500 accidents of the bundled 2024
    dump, built by the pipeline's own loaders and entities."""
    folder = ROOT / RAW_DIR / "2024"
    if not folder.is_dir():
        pytest.skip("data/raw not fetched: run `make data`")
    tables = {}
    for path in sorted(folder.glob("*.parquet")):
        table = loaders.table_of(path)
        tables[table] = load_table(path, 2024, table)
    keys = tables["caracteristiques"][KEY].sort_values().iloc[: 2 * ACCIDENTS]
    tables = {name: t[t[KEY].isin(keys)].reset_index(drop=True) for name, t in tables.items()}
    return {"accidents": entities.accidents(tables), "users": entities.users(tables)}


def chunks(accidents: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Chunk 1 without the new column; chunk 2 with it, plus republished chunk-1 accidents:
    the first half carry their real ``vma``, the second half none (an unchanged record)."""
    first, second = accidents.iloc[:ACCIDENTS], accidents.iloc[ACCIDENTS:]
    with_value = first[first[NEW].notna()].iloc[: REPUBLISHED // 2]
    without_value = first[~first[KEY].isin(with_value[KEY])].iloc[: REPUBLISHED // 2]
    without_value = without_value.assign(**{NEW: pd.NA}).astype({NEW: first[NEW].dtype})
    republished = pd.concat([with_value, without_value])
    return first.drop(columns=[NEW]), pd.concat([second, republished], ignore_index=True)


def files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.rglob("*.parquet"))}


def test_a_new_source_column_is_tracked_from_its_chunk_on(records, tmp_path):
    accidents = records["accidents"]
    chunk1, chunk2 = chunks(accidents)
    store = scd2.PartitionedHistory(tmp_path / "accidents.parquet", KEY)
    store.apply(chunk1, 1, AS_OF[1], "chunk-0001")
    store.apply(chunk2, 2, AS_OF[2], "chunk-0002")
    assert NEW not in pq.read_schema(store.part(1)).names  # the old part is left as written
    assert NEW in pq.read_schema(store.part(2)).names

    history = store.read()
    assert history[NEW].dtype == accidents[NEW].dtype
    assert history.groupby(KEY)["is_current"].sum().eq(1).all()
    assert history[KEY].nunique() == 2 * ACCIDENTS
    old = history[history["valid_from_chunk"] == 1]
    assert len(old) == ACCIDENTS and old[NEW].isna().all()
    # Republished with a value: a new version, the chunk-1 one closed by chunk 2.
    with_value = chunk2[KEY].iloc[ACCIDENTS : ACCIDENTS + REPUBLISHED // 2]
    versions = history[history[KEY].isin(with_value)]
    assert len(versions) == REPUBLISHED
    closed, current = versions[~versions["is_current"]], versions[versions["is_current"]]
    assert (closed["valid_to_chunk"] == 2).all() and (current["valid_from_chunk"] == 2).all()
    expected = accidents.set_index(KEY).loc[with_value, NEW]
    assert current.set_index(KEY)[NEW].equals(expected)
    # Republished unchanged, the new column empty: no new version.
    without_value = chunk2[KEY].iloc[ACCIDENTS + REPUBLISHED // 2 :]
    assert history[KEY].isin(without_value).sum() == REPUBLISHED // 2
    assert len(history) == 2 * ACCIDENTS + REPUBLISHED // 2

    before = files(store.directory)
    store.apply(chunk2, 2, AS_OF[2], "chunk-0002")  # a re-run
    assert files(store.directory) == before

    # The in-memory mechanism agrees with the store.
    in_memory = apply_chunk(None, chunk1, KEY, 1, AS_OF[1])
    in_memory = apply_chunk(in_memory, chunk2, KEY, 2, AS_OF[2])
    pd.testing.assert_frame_equal(scd2.ordered(in_memory, KEY), history)


def test_the_split_stage_reads_the_new_column(records, tmp_path, monkeypatch):
    """The next stage reads the history directory: with pyarrow's default (the first part's
    schema) the new column would silently vanish from the dataset."""
    monkeypatch.chdir(tmp_path)
    chunk1, chunk2 = chunks(records["accidents"])
    accidents = scd2.PartitionedHistory(CLEAN_ACCIDENTS, KEY)
    users = scd2.PartitionedHistory(CLEAN_USERS, schema.USER_KEY)
    people = records["users"]
    for chunk_id, chunk in ((1, chunk1), (2, chunk2)):
        accidents.apply(chunk, chunk_id, AS_OF[chunk_id], f"chunk-{chunk_id:04d}")
        keys = chunk[KEY].iloc[:ACCIDENTS]
        users.apply(people[people[KEY].isin(keys)], chunk_id, AS_OF[chunk_id], "users")
    assert NEW not in pd.read_parquet(CLEAN_ACCIDENTS).columns  # pyarrow's default reading

    split.split(seed=42, fractions=[0.6, 0.2, 0.2])
    dataset = pd.read_parquet(DATASET).set_index(KEY)
    source = records["accidents"].set_index(KEY)[NEW]
    current = accidents.read().query("is_current").set_index(KEY)
    arrived_in_2 = current.index[current["valid_from_chunk"] == 2]
    assert dataset[NEW].dtype == source.dtype
    assert dataset.loc[arrived_in_2, NEW].equals(source.loc[arrived_in_2])
    assert dataset.drop(arrived_in_2)[NEW].isna().all()
    assert dataset[NEW].notna().sum() > ACCIDENTS // 2  # the column carries real values
