"""`dvc exp show` stays readable in a terminal, and the scores left out of it still reach the
dashboard and the review.

DVC renders one column per metric key, param key and dep, keeps the first column of each kind,
and collapses from the right whatever does not fit, every column costing at least one character
of border. So the number of columns, not their content, decides whether ``test.roc_auc`` (the
second metric) survives at 160 characters: this runs the real ``dvc exp show`` on this
repository's dvc.yaml, params.yaml, lock and metrics (the workspace and its commit; an
experiment's tree label widens the first column, and ``make exps`` is that view).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from baac_severity.config import ROOT, SCORE_METRICS
from baac_severity.data.io import git
from baac_severity.decisions import experiments as ex
from tests.test_exp_show_parser import GIT_ENV

# What `dvc exp show` reads: the pipeline, its params and lock, the metrics and the code deps.
COPIED = ["dvc.yaml", "dvc.lock", "params.yaml", "data.dvc", "conf", "metrics", "baac_severity"]


def repo_copy(dest: Path) -> Path:
    dest.mkdir()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest / name)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "pipeline"]):
        git(dest, *args, check=True, env=GIT_ENV)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=dest, check=True)
    return dest


def exp_show(repo: Path, columns: int) -> str:
    env = {**os.environ, "COLUMNS": str(columns), "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--no-pager"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def headers(table: str) -> list[str]:
    line = next(row for row in table.splitlines() if "Experiment" in row)
    return re.split(r"\s{2,}", line.strip())


def test_validation_and_test_roc_auc_show_in_full_at_160_columns(tmp_path: Path) -> None:
    repo = repo_copy(tmp_path / "repo")
    shown = headers(exp_show(repo, 160))
    assert shown[:4] == ["Experiment", "Created", "validation.roc_auc", "test.roc_auc"], shown
    # The check can fail: at 120 characters DVC collapses test.roc_auc into an ellipsis.
    assert "test.roc_auc" not in headers(exp_show(repo, 120))


def test_scores_are_read_from_each_commit_and_the_workspace(tmp_path: Path) -> None:
    """metrics/scores.json is not a DVC metric: ``load_experiments`` reads it from the commit
    of each row (an experiment is a commit) and from the workspace's file."""
    repo = tmp_path / "scores"
    (repo / "metrics").mkdir(parents=True)
    git(repo, "init", "-q", check=True)
    scores = repo / SCORE_METRICS
    scores.write_text(json.dumps({"test": {"f1_macro": 0.7, "log_loss": 0.5}}))
    git(repo, "add", "-A", check=True)
    git(repo, "commit", "-qm", "first", check=True, env=GIT_ENV)
    first = git(repo, "rev-parse", "HEAD", check=True).stdout.decode().strip()
    scores.write_text(json.dumps({"test": {"f1_macro": 0.8, "log_loss": 0.4}}))
    frame = pd.DataFrame(
        {
            "experiment": ["workspace", "first", "queued"],
            "rev": ["workspace", first, "0" * 40],
            "state": ["workspace", "success", "queued"],
        }
    )
    read = ex.read_scores(repo, frame)
    assert read == {
        "workspace": {"test": {"f1_macro": 0.8, "log_loss": 0.4}},
        first: {"test": {"f1_macro": 0.7, "log_loss": 0.5}},
    }
    added = ex.with_scores(frame, read)
    assert added["test.f1_macro"].tolist()[:2] == [0.8, 0.7]
    assert pd.isna(added["test.f1_macro"].iloc[2])  # a queued run has no results of its own
    # Outside a git repository the commits cannot be read: no scores, no error.
    assert ex.read_scores(tmp_path, frame) == {}
    assert ex.add_scores(frame, repo)["test.f1_macro"].tolist()[:2] == [0.8, 0.7]
