"""``baac_severity.decisions.experiments.parse_exp_show`` on ``dvc exp show --json`` answers
recorded from real runs (``tests/record_exp_show.py``), and on malformed input."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from baac_severity.data.io import git
from baac_severity.decisions import experiments as ex

FIXTURES = Path(__file__).parent / "fixtures" / "exp_show"
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@localhost",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@localhost",
}
FIXTURE_NAMES = [
    "no_experiments",
    "queued",
    "running",
    "success_failed",
    "file_error",
    "all_commits",
]


def parsed(name: str) -> pd.DataFrame:
    return ex.parse_exp_show(json.loads((FIXTURES / f"{name}.json").read_text()))


def row(frame: pd.DataFrame, name: str) -> pd.Series:
    rows = frame[frame["experiment"] == name]
    assert len(rows) == 1, f"{name}: {frame['experiment'].tolist()}"
    return rows.iloc[0]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_fixture_parses_into_the_tidy_columns(name: str) -> None:
    frame = parsed(name)
    assert list(frame.columns[: len(ex.META_COLUMNS)]) == ex.META_COLUMNS
    assert frame["rev"].is_unique
    assert frame.iloc[0]["state"] == "workspace"
    assert set(frame["state"]) <= {*ex.OWN_RESULT_STATES, "queued", "running", "failed"}


def test_no_experiments_gives_workspace_and_baseline_with_metrics_and_snapshot() -> None:
    frame = parsed("no_experiments")
    assert frame["state"].tolist() == ["workspace", "baseline"]
    main = row(frame, "main")
    assert main["baseline"] == "main" and len(main["rev"]) == 40
    assert isinstance(main["created"], pd.Timestamp)
    assert pd.isna(row(frame, "workspace")["created"])
    assert 0.5 < main["test.roc_auc"] < 1
    assert main["chunks_ingested"] == 2 and main["chunks_total"] > 2
    assert main["rows"] > 4000 and str(main["data_as_of"]).startswith("2018-")
    assert main["params.model.n_estimators"] == 20
    assert main["changed_params"] == "" and main["error"] is None
    assert row(frame, "workspace")["baseline_rev"] == main["rev"]


def test_queued_experiments_have_params_but_no_borrowed_metrics() -> None:
    frame = parsed("queued")
    done = row(frame, "exp-trees10")
    assert done["state"] == "success" and done["executor"] is None
    assert done["changed_params"] == "model.n_estimators=10"
    assert not math.isnan(done["test.roc_auc"])
    for name, value in [("exp-depth8", None), ("exp-bad", -1)]:
        queued = row(frame, name)
        assert queued["state"] == "queued" and queued["executor"] == "dvc-task"
        # dvc re-reads the metrics of the commit it was queued on: not this experiment's.
        assert pd.isna(queued["test.roc_auc"]) and pd.isna(queued["chunks_ingested"])
        assert queued["error"] is None
        if value is not None:
            assert queued["params.model.n_estimators"] == value
    assert row(frame, "exp-depth8")["changed_params"] == "model.max_depth=8"


def test_running_experiment_is_reported_running_without_results() -> None:
    frame = parsed("running")
    running = row(frame, "exp-depth8")
    assert running["state"] == "running"
    assert pd.isna(running["test.roc_auc"]) and running["error"] is None
    assert row(frame, "exp-bad")["state"] == "queued"


def test_success_and_failed_experiments() -> None:
    frame = parsed("success_failed")
    depth = row(frame, "exp-depth8")
    assert depth["state"] == "success" and depth["executor"] == "dvc-task"
    # Kept as the integer it is, although the baseline's max_depth is null.
    assert depth["params.model.max_depth"] == 8 and isinstance(depth["params.model.max_depth"], int)
    assert depth["test.roc_auc"] != row(frame, "main")["test.roc_auc"]
    failed = row(frame, "exp-bad")
    assert failed["state"] == "failed"
    assert "Experiment run failed" in failed["error"]
    assert pd.isna(failed["test.roc_auc"]) and failed["changed_params"] == "model.n_estimators=-1"


def test_unreadable_metrics_file_becomes_an_error_not_a_crash() -> None:
    frame = parsed("file_error")
    main = row(frame, "main")
    assert "metrics/train.json" in main["error"] and "Corrupted" in main["error"]
    assert "test.roc_auc" not in frame.columns or pd.isna(main["test.roc_auc"])
    # The other metrics files of the same commit still count.
    assert main["chunks_ingested"] == 2


def test_all_commits_keeps_each_experiment_with_its_baseline() -> None:
    frame = parsed("all_commits")
    baselines = frame[frame["state"] == "baseline"]
    assert len(baselines) >= 3
    assert "main" in set(baselines["experiment"])
    unnamed = baselines[baselines["experiment"] != "main"]
    assert all(len(name) == 7 for name in unnamed["experiment"])  # short sha
    assert row(frame, "exp-repaired")["baseline"] == "main"
    older = row(frame, "exp-trees10")
    assert older["baseline"] in set(unnamed["experiment"])
    assert older["baseline_rev"].startswith(older["baseline"])
    assert row(frame, "exp-repaired")["changed_params"] == "model.n_estimators=15"


@pytest.mark.parametrize(
    "records",
    [
        None,
        [],
        "not a list",
        [None, 1, "x"],
        [{"rev": "workspace"}],
        [{"rev": "workspace", "data": None, "error": {"type": "X", "msg": "boom"}}],
        [{"rev": "abc", "name": "main", "data": {"metrics": {"m.json": "oops"}, "params": []}}],
        [
            {
                "rev": "abc",
                "data": {},
                "experiments": [
                    None,
                    {"name": "e", "revs": [{"rev": "def", "error": "failed", "data": None}]},
                    {"name": "f", "revs": None, "executor": "odd"},
                ],
            }
        ],
    ],
)
def test_malformed_input_never_raises(records) -> None:
    frame = ex.parse_exp_show(records)
    assert list(frame.columns[: len(ex.META_COLUMNS)]) == ex.META_COLUMNS


def test_error_only_revision_is_a_failed_row() -> None:
    records = [
        {
            "rev": "abc1234",
            "name": "main",
            "data": {"params": {}, "metrics": {}},
            "experiments": [
                {"name": "e", "revs": [{"rev": "def5678", "name": "e", "error": {"msg": "x"}}]}
            ],
        }
    ]
    frame = ex.parse_exp_show(records)
    failed = row(frame, "e")
    assert failed["state"] == "failed" and failed["error"] == "x"
    assert failed["baseline"] == "main"


def test_flatten_keeps_cells_scalar() -> None:
    flat = ex.flatten({"a": {"b": 1, "c": [1, 2]}, "d": None})
    assert flat == {"a.b": 1, "a.c": "[1, 2]", "d": None}


def test_helpers_best_row_and_direction() -> None:
    frame = parsed("success_failed")
    # The baseline competes: here main beats every experiment (the recorded issue).
    best = ex.best_row(frame, "validation.roc_auc")
    assert best["experiment"] == "main"
    with_results = frame[frame["state"].isin(ex.OWN_RESULT_STATES)]
    assert best["validation.roc_auc"] == with_results["validation.roc_auc"].max()
    lowest = with_results["test.log_loss"].min()
    assert ex.best_row(frame, "test.log_loss")["test.log_loss"] == lowest
    assert ex.best_row(frame, "no.such.metric") is None
    ranked = ex.ranking(frame, "validation.roc_auc")
    assert "exp-bad" not in set(ranked["experiment"])  # failed: no results of its own
    # The workspace holding exp-trees10's results (after `dvc exp run`) is ranked once.
    assert list(ranked["experiment"]) == ["main", "exp-depth8", "exp-trees10"]
    tie = parsed("no_experiments")  # the workspace holds main's results
    assert list(ex.ranking(tie, "validation.roc_auc")["experiment"]) == ["main"]
    edited = tie.assign(**{"test.roc_auc": [0.9, 0.7]})  # a workspace of its own: ranked
    assert list(ex.ranking(edited, "validation.roc_auc")["experiment"]) == ["main", "workspace"]
    assert ex.higher_is_better("test.roc_auc") and not ex.higher_is_better("test.log_loss")
    assert ex.metric_columns(frame)[0] == "test.roc_auc"
    assert "chunks_ingested" not in ex.metric_columns(frame)


def test_repo_state_follows_head_and_experiment_refs(tmp_path: Path) -> None:
    def in_repo(*args: str) -> None:
        git(tmp_path, *args, check=True, env=GIT_ENV)

    in_repo("init", "-q", "-b", "main")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "roc.csv").write_text("class,fpr,tpr\nsevere,0,0\n")
    in_repo("add", "-A")
    in_repo("commit", "-qm", "first")
    state = ex.repo_state(tmp_path)
    assert ex.repo_state(tmp_path) == state
    in_repo("update-ref", "refs/exps/ab/cdef/exp-1", "HEAD")  # a finished experiment appears
    assert ex.repo_state(tmp_path) != state
    roc = ex.read_plot(tmp_path, "HEAD", "plots/roc.csv")
    assert roc is not None and list(roc.columns) == ["class", "fpr", "tpr"]
    assert ex.read_plot(tmp_path, "HEAD", "plots/missing.csv") is None
    assert ex.read_plot(tmp_path, "workspace", "plots/roc.csv") is not None
