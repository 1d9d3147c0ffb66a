"""The data layer on the full bundled 2018 + 2024 data: ingest-chunk, clean-scd2, split.

The stages run in-process in a temporary working directory whose data/raw points at the
repository's raw dump, so these tests never touch the repository's own outputs.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from baac_severity.config import (
    CHUNKS_DIR,
    CLEAN_ACCIDENTS,
    CLEAN_USERS,
    DATASET,
    DATASET_USERS,
    PROGRESS_FILE,
    ROOT,
    SPLIT_METRICS,
)
from baac_severity.data import clean, ingest, schema, split
from baac_severity.data.loaders import load_raw_dump
from tests.helpers import file_digests

RAW = ROOT / "data" / "raw"
pytestmark = pytest.mark.skipif(not RAW.is_dir(), reason="data/raw missing: run `make data`")
FRACTIONS = [0.6, 0.2, 0.2]


@functools.cache
def cached_raw_dump(raw_dir: Path, years) -> dict[str, pd.DataFrame]:
    return load_raw_dump(raw_dir, years)


@pytest.fixture(autouse=True)
def load_raw_dump_once(monkeypatch):
    """These tests are about arrival semantics: parse the raw files once per session."""
    monkeypatch.setattr(ingest, "load_raw_dump", lambda raw_dir, years: cached_raw_dump(RAW, years))


def run_stages(workdir: Path, chunks: int | None, chunk_size: int = 10_000) -> None:
    previous = Path.cwd()
    os.chdir(workdir)
    try:
        ingest.ingest(Path("data/raw"), None, chunk_size, chunks)
        clean.clean()
        split.split(42, FRACTIONS)
    finally:
        os.chdir(previous)


def new_workdir(path: Path) -> Path:
    (path / "data").mkdir(parents=True)
    (path / "data" / "raw").symlink_to(RAW)
    return path


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    workdir = new_workdir(tmp_path_factory.mktemp("full"))
    run_stages(workdir, None)
    return workdir


def test_full_load_counts_every_accident_and_user(full_run):
    accidents = pd.read_parquet(full_run / DATASET)
    users = pd.read_parquet(full_run / DATASET_USERS)
    assert len(accidents) == 57_783 + 54_402
    assert len(users) == 130_169 + 125_187
    assert accidents[schema.KEY].is_unique and users[schema.USER_KEY].is_unique
    assert len(list((full_run / CHUNKS_DIR).glob("chunk-*"))) == 12
    progress = json.loads((full_run / PROGRESS_FILE).read_text())
    assert progress["chunks"] == {"ingested": 12, "total": 12, "chunk_size": 10_000}
    assert progress["tables"]["usagers"]["rows"] == len(users)


def test_severe_share_matches_the_published_counts(full_run):
    accidents = pd.read_parquet(full_run / DATASET)
    by_year = accidents.groupby("an")["severe"].mean()
    # BAAC README: severe covers 38.7% of 2018 accidents and 36.1% of 2024 ones.
    assert by_year.loc[2018] == pytest.approx(0.387, abs=0.001)
    assert by_year.loc[2024] == pytest.approx(0.361, abs=0.001)


def test_every_chunk_holds_all_four_tables_of_its_accidents(full_run):
    previous_last = None
    for chunk_dir in sorted((full_run / CHUNKS_DIR).glob("chunk-*")):
        tables = {t: pd.read_parquet(chunk_dir / f"{t}.parquet") for t in schema.TABLE_NAMES}
        keys = set(tables["caracteristiques"][schema.KEY])
        for table in schema.CHILD_TABLES:
            assert set(tables[table][schema.KEY]) <= keys, (chunk_dir.name, table)
        assert set(tables["lieux"][schema.KEY]) == keys
        order = ingest.event_order(tables["caracteristiques"])
        assert order.index.is_monotonic_increasing, f"{chunk_dir.name} not chronological"
        first = tuple(order.iloc[0][["an", "mois", "jour", "minute"]])
        if previous_last is not None:
            assert previous_last <= first  # chunks follow each other in time
        previous_last = tuple(order.iloc[-1][["an", "mois", "jour", "minute"]])


def test_split_is_stratified_sixty_twenty_twenty(full_run):
    accidents = pd.read_parquet(full_run / DATASET)
    shares = pd.crosstab(accidents["severity"], accidents["dataset_split"], normalize="index")
    for fraction, name in zip(FRACTIONS, split.SPLITS, strict=True):
        assert (shares[name] - fraction).abs().max() <= 0.005, shares
    report = json.loads((full_run / SPLIT_METRICS).read_text())
    assert report["train"]["accidents"] + report["validation"]["accidents"] + report["test"][
        "accidents"
    ] == len(accidents)


def test_users_inherit_the_split_of_their_accident(full_run):
    accidents = pd.read_parquet(full_run / DATASET).set_index(schema.KEY)["dataset_split"]
    users = pd.read_parquet(full_run / DATASET_USERS)
    inherited = accidents.reindex(users[schema.KEY]).to_numpy()
    assert (users["dataset_split"].to_numpy() == inherited).all()
    assert users.groupby(schema.KEY)["dataset_split"].nunique().max() == 1


def test_chunk_by_chunk_arrival_gives_identical_outputs(full_run, tmp_path):
    """Chunks arriving over several runs (1, +1, +3, +7) give byte-identical snapshots,
    histories and split; earlier snapshots are never rewritten, and the split of early
    accidents never moves."""
    workdir = new_workdir(tmp_path / "incremental")
    run_stages(workdir, 1)
    early = pd.read_parquet(workdir / DATASET)[[schema.KEY, "dataset_split"]]
    first_chunk = workdir / CHUNKS_DIR / "chunk-0001" / "usagers.parquet"
    first_stat = first_chunk.stat()
    for arrived in (2, 5, 12):
        run_stages(workdir, arrived)
    later_stat = first_chunk.stat()
    assert (later_stat.st_ino, later_stat.st_mtime_ns) == (
        first_stat.st_ino,
        first_stat.st_mtime_ns,
    )
    for folder in ("data/chunks", "data/clean", "data/processed"):
        assert file_digests(workdir / folder) == file_digests(full_run / folder), folder
    final = pd.read_parquet(workdir / DATASET).set_index(schema.KEY)["dataset_split"]
    assert (final.reindex(early[schema.KEY]).to_numpy() == early["dataset_split"].to_numpy()).all()


def test_fewer_chunks_after_more_rebuilds_the_histories(full_run, tmp_path):
    workdir = new_workdir(tmp_path / "shrink")
    run_stages(workdir, 2, chunk_size=30_000)
    two = file_digests(workdir / "data/clean")
    run_stages(workdir, 4, chunk_size=30_000)
    run_stages(workdir, 2, chunk_size=30_000)
    assert file_digests(workdir / "data/clean") == two
    assert len(list((workdir / CHUNKS_DIR).glob("chunk-*"))) == 2
    histories = pd.read_parquet(workdir / CLEAN_ACCIDENTS)
    assert histories["valid_from_chunk"].max() == 2


def test_clean_refuses_an_empty_chunk_and_keeps_its_outputs(full_run, tmp_path):
    workdir = new_workdir(tmp_path / "empty")
    run_stages(workdir, 2, chunk_size=20_000)
    before = file_digests(workdir / "data/clean")
    chunk = workdir / CHUNKS_DIR / "chunk-0003"
    chunk.mkdir()
    for table in schema.TABLE_NAMES:
        empty = pd.read_parquet(workdir / CHUNKS_DIR / "chunk-0001" / f"{table}.parquet").head(0)
        empty.to_parquet(chunk / f"{table}.parquet")
    manifest = json.loads((workdir / CHUNKS_DIR / "chunk-0002" / "chunk.json").read_text())
    manifest |= {"chunk_id": 3, "content_hash": "empty"}
    (chunk / "chunk.json").write_text(json.dumps(manifest))
    result = subprocess.run(
        [sys.executable, "-m", "baac_severity.data.stages.clean"],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "chunk-0003" in result.stderr and "empty chunk" in result.stderr
    assert file_digests(workdir / "data/clean") == before


def test_republished_accident_opens_a_new_version(tmp_path):
    """A corrected re-publication (a chunk holding an accident again, changed) versions it."""
    workdir = new_workdir(tmp_path / "republish")
    run_stages(workdir, 1, chunk_size=30_000)
    first = workdir / CHUNKS_DIR / "chunk-0001"
    tables = {t: pd.read_parquet(first / f"{t}.parquet") for t in schema.TABLE_NAMES}
    key = tables["caracteristiques"][schema.KEY].iloc[0]
    corrected = {t: frame[frame[schema.KEY] == key].copy() for t, frame in tables.items()}
    lum = corrected["caracteristiques"]["lum"]
    corrected["caracteristiques"]["lum"] = lum.where(lum != 3, 1).where(lum == 3, 3)  # changed
    os.chdir(workdir)
    try:
        ingest.write_chunk(2, pd.Timestamp("2019-01-31"), corrected, Path(CHUNKS_DIR))
        clean.clean()
    finally:
        os.chdir(ROOT)
    history = pd.read_parquet(workdir / CLEAN_ACCIDENTS)
    versions = history[history[schema.KEY] == key]
    assert len(versions) == 2
    assert versions["is_current"].tolist() == [False, True]
    assert versions["valid_to"].iloc[0] == pd.Timestamp("2019-01-31")
    users = pd.read_parquet(workdir / CLEAN_USERS)
    assert users.groupby(schema.USER_KEY)["is_current"].sum().max() == 1
