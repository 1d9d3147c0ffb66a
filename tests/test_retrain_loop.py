"""Compare like with like, and the retraining loop of docs/monitoring.md, from a fresh clone.

One module scenario on real DVC (small: 2018 data, chunks of 2,000 accidents, 20 trees):

1. a fresh ``git clone`` of a project repository fetches its raw data (``dvc pull``), trains
   the champion on the first 2 chunks (``dvc repro``), promotes it and commits (``main``);
2. an experiment on the same snapshot (gradient boosting) and ``make retrain``, which ingests
   chunk 3 as ``dvc exp run --temp``: the gate compares the 3-chunk challenger with the
   champion on the validation rows both scored, and promotes it;
3. the review, the dashboard's data and the dashboard rank the same-snapshot experiment and
   set the 3-chunk one apart, with the reason;
4. with ``promotion.min_delta`` out of reach, ``make retrain`` is refused and the workspace
   is left exactly as it was.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from streamlit.testing.v1 import AppTest

from baac_severity.config import ROOT
from baac_severity.decisions import comparable, compare, review
from baac_severity.decisions import experiments as ex
from baac_severity.testing.sandbox import dvc, env, make_pipeline_repo, run
from tests.helpers import file_digests

pytestmark = pytest.mark.slow

DASHBOARD = ROOT / "baac_severity" / "dashboard" / "app.py"
SAME_SNAPSHOT = "hgb"
CHALLENGER = "retrain-chunk-0003"


def commit(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", message], repo)


def python(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """A project command in the clone, as make runs it (the clone's own code)."""
    variables = {**env(), "BENTOML_HOME": str(repo / "bentoml_home")}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=repo, env=variables, capture_output=True, text=True
    )


def fresh_clone(origin: Path, dest: Path) -> Path:
    """``git clone`` + ``make data``: the raw data pulled from the origin's DVC storage."""
    run(["git", "clone", "-q", str(origin), str(dest)], dest.parent)
    dvc("remote", "modify", "--local", "embedded", "url", str(origin / ".dvc" / "cache"), cwd=dest)
    dvc("pull", "-q", "data.dvc", cwd=dest)
    return dest


def workspace_state(repo: Path) -> dict:
    """What a refused retrain must leave as it was."""
    return {
        "params.yaml": (repo / "params.yaml").read_bytes(),
        "dvc.lock": (repo / "dvc.lock").read_bytes(),
        "model": file_digests(repo / "model"),
        "models": file_digests(repo / "models"),
        "git status": run(["git", "status", "--porcelain"], repo).stdout,
    }


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict:
    origin = make_pipeline_repo(tmp_path_factory.mktemp("origin") / "repo")
    repo = fresh_clone(origin, tmp_path_factory.mktemp("clone") / "repo")
    dvc("repro", "-q", cwd=repo)
    commit(repo, "champion: the first 2 chunks")
    promoted = python(repo, "baac_severity.cli", "promote")
    assert promoted.returncode == 0, promoted.stderr
    assert "no default DVC remote: this champion stays in this clone's" in promoted.stdout
    commit(repo, "promote the 2-chunk champion")
    sets = ["-S", "model=hist_gradient_boosting", "-S", "model.max_iter=40"]
    dvc("exp", "run", "--temp", "-q", "-n", SAME_SNAPSHOT, *sets, cwd=repo)
    champion = json.loads((repo / "models" / "metadata.json").read_text())
    champion_predictions = pd.read_parquet(repo / "models" / "predictions.parquet")
    retrain = python(repo, "baac_severity.cli", "retrain")
    return {
        "repo": repo,
        "baseline": run(["git", "rev-parse", "HEAD"], repo).stdout.strip(),
        "champion": (champion, champion_predictions),
        "retrain": retrain,
    }


def test_retrain_promotes_a_challenger_better_on_the_rows_both_scored(scenario: dict) -> None:
    repo, retrain = scenario["repo"], scenario["retrain"]
    print(retrain.stdout, retrain.stderr)  # the demo's output (pytest -rP)
    assert retrain.returncode == 0, retrain.stdout + retrain.stderr
    assert "--temp" in retrain.stdout and "promoted, and applied to the workspace" in retrain.stdout
    assert "validation rows both scored" in retrain.stdout
    # The gate ran while the workspace still held the champion's run: no commit suggested
    # before `dvc exp apply`.
    assert f"holds another run than {CHALLENGER}" in retrain.stdout
    metadata = json.loads((repo / "models" / "metadata.json").read_text())
    assert metadata["experiment"] == CHALLENGER
    assert metadata["data_snapshot"]["chunks_ingested"] == 3
    # dvc exp apply: the workspace describes the promoted run.
    assert yaml.safe_load((repo / "params.yaml").read_text())["ingest"]["chunks"] == 3
    model_info = json.loads((repo / "model" / "model_info.json").read_text())
    assert model_info["data_snapshot"] == metadata["data_snapshot"]


def test_the_gate_scores_both_models_on_the_champions_validation_rows(scenario: dict) -> None:
    repo = scenario["repo"]
    settings = compare.promotion_settings(repo)
    challenger = (
        json.loads((repo / "models" / "metadata.json").read_text()),
        pd.read_parquet(repo / "models" / "predictions.parquet"),
    )
    champion_info, champion_rows = scenario["champion"]
    scores = comparable.selection_scores(settings, scenario["champion"], challenger)
    validation = int((champion_rows["split"] == "validation").sum())
    assert scores.problem is None
    assert f"compared on the {validation:,} validation rows both scored" in scores.basis
    assert "trained on 3 of" in scores.basis and "champion: 2 of" in scores.basis
    # On the champion's own rows, its score is the one it recorded; the challenger's is not
    # its recorded one (measured on its larger validation set).
    assert scores.champion == pytest.approx(champion_info["metrics"]["validation"]["roc_auc"])
    assert scores.challenger != challenger[0]["metrics"]["validation"]["roc_auc"]
    same = comparable.selection_scores(settings, scenario["champion"], scenario["champion"])
    assert "same data snapshot" in same.basis


def test_review_ranks_the_same_snapshot_and_sets_the_other_apart(scenario: dict) -> None:
    repo, baseline = scenario["repo"], scenario["baseline"]
    _, text = review.review(repo, [], baseline, repo / "reports" / "r.md", plots=True)
    report = re.sub(r" {2,}", " ", text)  # tabulate pads the cells: compare words
    ranking = report.split("## Ranking", 1)[1].split("## Best", 1)[0]
    ranked, apart = ranking.split("**Not ranked: another data snapshot.**")
    assert f"| {SAME_SNAPSHOT} |" in ranked and CHALLENGER not in ranked
    assert f"| {CHALLENGER} |" in apart
    assert (
        "trained on 3 of" in apart and "2 of" in apart and "not comparable on validation" in apart
    )
    best = report.split("## Best", 1)[1].split("##", 1)[0]
    assert CHALLENGER not in best
    # Importance: the forest and the gradient boosting are both permutation importances on
    # the same validation rows, so they are compared; nothing is set apart.
    assert "Feature importance not compared" not in report
    assert (repo / "reports" / f"review-{review.slug(baseline, [])}-importance.png").is_file()


def test_dashboard_data_and_page_flag_the_other_snapshot(scenario: dict, monkeypatch) -> None:
    repo, baseline = scenario["repo"], scenario["baseline"]
    frame = ex.load_experiments(repo)
    base = frame[(frame["rev"] == baseline) & (frame["state"] == "baseline")].iloc[0]
    selection = comparable.select(frame, base, compare.promotion_settings(repo))
    assert SAME_SNAPSHOT in set(selection.ranked["experiment"])
    apart = selection.apart.set_index("experiment")
    assert CHALLENGER in apart.index
    assert apart.loc[CHALLENGER, comparable.REASON].startswith("trained on 3 of")
    monkeypatch.setenv("BAAC_DASHBOARD_REPO", str(repo))
    monkeypatch.delenv("BAAC_DASHBOARD_EXP_SHOW", raising=False)
    at = AppTest.from_file(str(DASHBOARD), default_timeout=120)
    at.run()
    assert not at.exception
    assert any("another data snapshot" in w.value for w in at.warning)
    # Static tables (numbers as shown), indexed by the experiment's name.
    tables = [table.value for table in at.table]
    ranking = next(t for t in tables if any(str(c).startswith("Δ vs") for c in t.columns))
    assert SAME_SNAPSHOT in set(ranking.index)
    assert CHALLENGER not in set(ranking.index)
    shown_apart = next(t for t in tables if "why" in t.columns)
    assert CHALLENGER in set(shown_apart.index)


def test_importance_is_one_method_for_every_family(scenario: dict) -> None:
    repo = scenario["repo"]
    commits = ex.load_experiments(repo).set_index("experiment")["rev"]
    methods = {
        name: set(ex.read_plot(repo, commits[name], "plots/importance.csv")["method"])
        for name in (SAME_SNAPSHOT, CHALLENGER)
    }
    assert methods[SAME_SNAPSHOT] == methods[CHALLENGER]
    assert next(iter(methods[SAME_SNAPSHOT])).startswith("permutation")


def test_importances_by_other_methods_are_not_subtracted() -> None:
    forest = pd.DataFrame({"feature": ["a", "b"], "importance": [0.6, 0.4], "method": "impurity"})
    boosting = pd.DataFrame(
        {"feature": ["a", "b"], "importance": [0.02, 0.01], "method": "permutation"}
    )
    same = forest.assign(importance=[0.5, 0.5])
    tables = {"main": forest, "hgb": boosting, "leaf20": same}
    differences, apart = comparable.importance_differences(tables, "main")
    assert list(differences.columns) == ["leaf20"]
    assert differences["leaf20"].round(6).to_dict() == {"a": -0.1, "b": 0.1}
    assert set(apart) == {"hgb"} and "not comparable" in apart["hgb"]


def test_a_refused_retrain_leaves_the_workspace_as_it_was(scenario: dict) -> None:
    repo = scenario["repo"]
    commit(repo, "retrain on chunk 3")
    # A gain nobody can reach: the team's policy, not an experiment's params.
    policy = repo / "conf" / "promotion.yaml"
    text = policy.read_text()
    assert "min_delta: 0.0" in text
    policy.write_text(text.replace("min_delta: 0.0", "min_delta: 0.5"))
    commit(repo, "promotion.min_delta 0.5")
    before = workspace_state(repo)
    refused = python(repo, "baac_severity.cli", "retrain")
    print(refused.stdout, refused.stderr)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "not promoted" in refused.stdout and "promotion.min_delta = 0.5" in refused.stderr
    assert workspace_state(repo) == before
    experiments = ex.load_experiments(repo)
    assert "retrain-chunk-0004" in set(experiments["experiment"])  # kept, under its name


def test_snapshot_rule_names_what_differs() -> None:
    base = comparable.Snapshot(12, 12, (671280, "2024-12-31"), {"data.years": None})
    assert comparable.difference(base, base, "main") is None
    six = comparable.Snapshot(6, 12, (300000, "2018-12-31"), {"data.years": None})
    assert comparable.difference(six, base, "main") == (
        "trained on 6 of 12 chunks (main: 12 of 12 chunks): not comparable on validation"
    )
    only_2018 = comparable.Snapshot(12, 12, (671280, "2024-12-31"), {"data.years": "[2018]"})
    assert "data.years=[2018] (main: ?)" in str(comparable.difference(only_2018, base, "main"))
    # 12 and 12.0 (a float column of dvc exp show) are the same number of chunks.
    assert (
        comparable.difference(comparable.Snapshot(12.0, 12.0, base.fingerprint, {}), base, "m")
        is None
    )
