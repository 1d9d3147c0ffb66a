"""Corrupted raw data through the real ``dvc repro`` and ``dvc exp run``: the run fails with the
stage's message and every earlier output and tracked file stays byte-identical (``data.dvc``,
``dvc.lock``, ``metrics/*``, the chunks).

One small pipeline repository (``baac_severity/testing/sandbox.py``) serves every case: its raw
dump is 40 accidents of 2018 (the published old format) and 30 of 2024 with the caracteristiques
written as the published 2019+ CSV, so that each fatal corruption class of
``tests/test_raw_corruption.py`` applies to a real raw file. New raw data enters the way
data/README.md says, ``dvc add data/raw``; then ``dvc repro`` refuses it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from baac_severity.testing.sandbox import dvc, make_pipeline_repo, run
from tests.test_bad_input import tree
from tests.test_raw_corruption import (
    FATAL,
    RAW,
    Fatal,
    duplicate_line,
    edit,
    new_format_caracteristiques,
    old_lieux,
    small_2018,
    small_2024,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not RAW.is_dir(), reason="data/raw missing: run `make data`"),
]
# ingest-chunk only (the later stages are not what this is about): 16 accidents a chunk.
OVERRIDES = ["ingest.chunk_size=16", "ingest.chunks=all", "model.n_estimators=5"]
OLD_FILE = Path("data/raw/2018/lieux-2018.csv")  # what old_lieux builds
NEW_FILE = Path("data/raw/2024/caract-2024.csv")  # what new_format_caracteristiques builds
TARGETS = {old_lieux: OLD_FILE, new_format_caracteristiques: NEW_FILE}


def small_raw_dump(raw: Path) -> None:
    shutil.rmtree(raw)
    small_2018(raw)
    small_2024(raw, accidents=30)["caracteristiques"].unlink()
    new_format_caracteristiques(raw / "2024", rows=30)


def recorded(repo: Path) -> dict[str, bytes]:
    """What a failed run must not change: data.dvc, dvc.lock, params.yaml, metrics/, chunks."""
    files = {name: (repo / name).read_bytes() for name in ("data.dvc", "dvc.lock", "params.yaml")}
    for folder in ("metrics", "data/chunks"):
        files |= {f"{folder}/{name}": data for name, data in tree(repo / folder).items()}
    return files


class Sandbox:
    """The repository, its intact raw files and a way back to them after each case."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.intact = {path: (repo / path).read_bytes() for path in TARGETS.values()}

    def restore(self) -> None:
        for path, data in self.intact.items():
            (self.repo / path).write_bytes(data)
        run(["git", "checkout", "--", "data.dvc", "params.yaml"], self.repo)

    def git_status(self) -> str:
        return run(["git", "status", "--porcelain"], self.repo).stdout


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Iterator[Sandbox]:
    repo = make_pipeline_repo(tmp_path_factory.mktemp("dvc-bad-data"), OVERRIDES)
    small_raw_dump(repo / "data" / "raw")
    dvc("add", "-q", "data/raw", cwd=repo)
    dvc("repro", "-q", "ingest-chunk", cwd=repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "small raw dump, ingested"], repo)
    box = Sandbox(repo)
    assert (repo / "metrics" / "progress.json").is_file()
    assert box.git_status() == ""
    yield box


def corrupt(sandbox: Sandbox, case: Fatal) -> Path:
    path = sandbox.repo / TARGETS[case.build]
    case.corrupt(path)
    return path


def assert_refused(result, sandbox: Sandbox, case: Fatal, path: Path) -> None:
    assert result.returncode != 0, result.stdout
    where = f"ingest-chunk: bad input: {TARGETS[case.build]}, line {case.line(path)}: "
    assert where in result.stderr and case.problem in result.stderr, result.stderr


@pytest.mark.parametrize("case", FATAL, ids=[case.id for case in FATAL])
def test_dvc_repro_refuses_corrupt_raw_data_and_changes_nothing(sandbox, case):
    path = corrupt(sandbox, case)
    dvc("add", "-q", "data/raw", cwd=sandbox.repo)  # the user records the new raw data
    before = recorded(sandbox.repo)
    try:
        result = dvc("repro", cwd=sandbox.repo, check=False)
        assert_refused(result, sandbox, case, path)
        assert recorded(sandbox.repo) == before
    finally:
        sandbox.restore()
    assert sandbox.git_status() == ""  # data.dvc, dvc.lock and the metrics as committed


def test_dvc_exp_run_refuses_corrupt_raw_data_and_changes_nothing(sandbox):
    case = next(case for case in FATAL if case.id == "new-too-many-fields")
    path = corrupt(sandbox, case)
    dvc("add", "-q", "data/raw", cwd=sandbox.repo)
    before = recorded(sandbox.repo)
    try:
        result = dvc("exp", "run", cwd=sandbox.repo, check=False)
        assert_refused(result, sandbox, case, path)
        after = recorded(sandbox.repo)
        # `dvc exp run` recomposes params.yaml from conf/ (the same values; in the repository
        # the same bytes too, which DVC wrote, but the sandbox's were written by PyYAML).
        assert yaml.safe_load(after.pop("params.yaml")) == yaml.safe_load(before.pop("params.yaml"))
        assert after == before
        assert dvc("exp", "list", "--name-only", cwd=sandbox.repo).stdout.strip() == ""
    finally:
        sandbox.restore()
    assert sandbox.git_status() == ""


def test_raw_data_not_recorded_in_data_dvc_is_refused(sandbox):
    """Changed raw files without `dvc add`: data.dvc is not rewritten to them (DVC would, for
    a stage depending on data/raw) and the stage refuses to read them, naming the fix."""
    edit(sandbox.repo / OLD_FILE, duplicate_line(3))  # valid data: only the record is missing
    before = recorded(sandbox.repo)
    try:
        assert "up to date" in dvc("status", "ingest-chunk", cwd=sandbox.repo).stdout
        result = dvc("repro", "-f", "ingest-chunk", cwd=sandbox.repo, check=False)
        assert result.returncode != 0
        message = "ingest-chunk: bad input: data/raw: differs from what data.dvc records"
        assert message in result.stderr and "dvc add data/raw" in result.stderr, result.stderr
        assert recorded(sandbox.repo) == before
    finally:
        sandbox.restore()
    assert sandbox.git_status() == ""


def test_quarantined_rows_go_through_dvc_repro_counted(sandbox):
    """The quarantined classes are not fatal: recorded with `dvc add`, they are ingested and
    counted (rows read = kept + quarantined), and the metrics say so."""
    edit(sandbox.repo / OLD_FILE, duplicate_line(3))
    dvc("add", "-q", "data/raw", cwd=sandbox.repo)
    try:
        dvc("repro", "ingest-chunk", cwd=sandbox.repo)
        progress = json.loads((sandbox.repo / "metrics" / "progress.json").read_text())
        assert progress["quarantine"]["lieux"] == {"duplicate_row": 1}
        assert progress["tables"]["lieux"]["quarantined"] == 1
    finally:
        sandbox.restore()
        dvc("repro", "-q", "ingest-chunk", cwd=sandbox.repo)  # back: the quarantine goes
    assert sandbox.git_status() == ""  # the same outputs as before, byte for byte
