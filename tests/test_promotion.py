"""Experiment decisions on real models: the paired bootstrap, the promotion gate, the MLflow
registry, rollback, a SIGKILLed promotion, and the chain from a running service back to the
MLflow run and the data.

One throwaway repository for the module (``tests/exp_repo.baseline_repo``: real 2018 data,
20 trees) plus one experiment with 3 trees (``worse3``, run with ``--temp`` so the workspace
keeps main's model). The tests run in file order, each promotion building on the last:
worse3 first (no champion: no gate), then the better workspace model (accepted), worse3
again (refused), killed, forced, rolled back.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from baac_severity.config import PROMOTED_METADATA
from baac_severity.decisions import compare
from baac_severity.testing.local_service import import_model, start_service
from baac_severity.testing.sandbox import dvc, env
from tests.exp_repo import baseline_repo
from tests.helpers import file_digests

pytestmark = pytest.mark.slow

WORSE = "worse3"
KEY = "test-key"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = baseline_repo(tmp_path_factory.mktemp("promotion"))
    dvc("exp", "run", "--temp", "-q", "-n", WORSE, "-S", "model.n_estimators=3", cwd=repo)
    return repo


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bentoml_home")


@pytest.fixture(scope="module")
def recorded() -> dict:
    """What earlier steps of the scenario leave for later ones."""
    return {}


def baac(repo: Path, home: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    """The ``baac`` command of the repository's own code."""
    variables = {**env(), "BENTOML_HOME": str(home), **extra_env}
    return subprocess.run(
        [sys.executable, "-m", "baac_severity.cli", *args],
        cwd=repo,
        env=variables,
        capture_output=True,
        text=True,
        timeout=300,
    )


def promote(repo: Path, home: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    return baac(repo, home, "promote", *args, **extra_env)


def metadata(repo: Path) -> dict:
    return json.loads((repo / PROMOTED_METADATA).read_text())


def mlflow_client(repo: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{repo / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def aliases(repo: Path) -> dict[str, str]:
    client = mlflow_client(repo)
    found = client.get_registered_model("baac-severity").aliases
    return {alias: str(version) for alias, version in found.items()}


def champion_state(repo: Path, home: Path) -> dict:
    """Everything a promotion may change, as bytes: models/, models.dvc, the BentoML store."""
    return {
        "models": file_digests(repo / "models"),
        "models.dvc": (repo / "models.dvc").read_bytes(),
        "bentoml": file_digests(home),
    }


# --- the paired bootstrap, on the real predictions of the train stage ---------------------


def test_identical_predictions_give_an_interval_of_exactly_zero(repo: Path) -> None:
    predictions = compare.read_predictions(repo, None)
    result = compare.compare_predictions(predictions, predictions.copy(), {"n": 200, "seed": 1})
    assert result.rows == (predictions["split"] == "test").sum() > 500
    for interval in result.intervals.values():
        assert (interval.low, interval.high, interval.delta) == (0.0, 0.0, 0.0)
        assert interval.verdict == compare.NO_DIFFERENCE


def test_point_estimates_are_the_train_stage_metrics(repo: Path) -> None:
    predictions = compare.read_predictions(repo, None)
    result = compare.compare_predictions(predictions, predictions, {"n": 1})
    # The train stage's DVC metrics: ROC-AUC in train.json, the other scores in scores.json.
    files = [repo / "metrics" / name for name in ("train.json", "scores.json")]
    test = {k: v for f in files for k, v in json.loads(f.read_text())["test"].items()}
    for metric, interval in result.intervals.items():
        assert interval.champion == pytest.approx(test[metric], abs=2e-6)  # float32 file


def test_a_clearly_better_model_gets_an_interval_above_zero(repo: Path) -> None:
    real = compare.read_predictions(repo, None)
    # The champion: the same scores dealt out to the wrong rows (a model without skill).
    shuffled = real.copy()
    columns = [c for c in real if c.startswith(compare.PROBA_PREFIX)]
    order = np.random.default_rng(0).permutation(len(real))
    shuffled[columns] = real[columns].to_numpy()[order]
    result = compare.compare_predictions(shuffled, real, {"n": 1000, "seed": 7})
    roc = result.intervals["roc_auc"]
    assert roc.low > 0.1 and roc.verdict == "better"
    assert result.intervals["log_loss"].high < 0  # lower is better: better too
    assert result.intervals["log_loss"].verdict == "better"


def test_weighted_metrics_match_sklearn_for_multiclass() -> None:
    from baac_severity.modeling import evaluate

    rng = np.random.default_rng(3)
    target = rng.integers(0, 4, 3000)
    proba = rng.dirichlet(np.ones(4), 3000) + np.eye(4)[target] * 0.3
    proba /= proba.sum(axis=1, keepdims=True)
    ours = compare.WeightedMetrics(target, proba)(np.ones((3000, 1)))
    labels = ["a", "b", "c", "d"]
    theirs = evaluate.classification_metrics(target, proba, np.arange(4), labels)
    for metric in compare.HEADLINE:
        assert ours[metric][0] == pytest.approx(theirs[metric], abs=5e-7)  # rounded to 6


def test_road_users_are_resampled_by_accident() -> None:
    clusters = np.repeat(np.arange(50), 3)  # three users per accident
    for weights in compare.resample_weights(clusters, 30, seed=5):
        by_accident = weights.reshape(50, 3, -1)
        assert (by_accident == by_accident[:, :1]).all()
        assert (weights.sum(axis=0) == 150).all()


# --- the gate and the registry, in scenario order ---------------------------------------


def test_first_promotion_has_no_gate_and_registers_the_run(repo: Path, home: Path) -> None:
    done = promote(repo, home, "--experiment", WORSE, "--no-bentoml")
    assert done.returncode == 0, done.stderr
    assert "No champion yet" in done.stdout
    meta = metadata(repo)
    assert meta["experiment"] == WORSE and meta["registry"]["version"] == "1"
    run = mlflow_client(repo).get_run(meta["mlflow_run_id"])
    assert run.data.tags["model.sha256"] == meta["model_sha256"]
    assert run.data.tags["dvc.experiment"] == WORSE
    assert aliases(repo) == {"champion": "1"}


def test_gate_accepts_a_better_model(repo: Path, home: Path, recorded: dict) -> None:
    done = promote(repo, home)  # the workspace: main's 20 trees
    assert done.returncode == 0, done.stderr
    meta = metadata(repo)
    assert meta["experiment"] == "workspace" and meta["promotion"]["forced"] is False
    report = (repo / meta["promotion"]["report"]).read_text()
    assert "passed the gate" in report and "95% interval" in report
    # The workspace holds the promoted run: record its params and lock with the promotion.
    record = f"git add params.yaml dvc.lock metrics plots models.dvc {meta['promotion']['report']}"
    assert f"record it:\n  {record} && git commit" in done.stdout
    assert aliases(repo) == {"champion": "2", "previous": "1"}
    status = dvc("status", "models.dvc", cwd=repo).stdout
    assert "up to date" in status, status
    recorded["accepted"] = champion_state(repo, home)


def test_gate_refuses_a_worse_model_and_changes_nothing(repo: Path, home: Path) -> None:
    import_model(repo, home)  # the champion in the BentoML store too
    before = champion_state(repo, home)
    registry = (repo / "mlflow.db").read_bytes()
    done = promote(repo, home, "--experiment", WORSE)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{WORSE} does not beat the champion on validation.roc_auc" in done.stderr
    assert re.search(r"\| roc_auc +\|", done.stdout) and "nothing changed" in done.stderr
    assert champion_state(repo, home) == before
    assert (repo / "mlflow.db").read_bytes() == registry


def test_sigkill_during_promotion_leaves_the_champion_intact(repo: Path, home: Path) -> None:
    before = champion_state(repo, home)
    args = ("--experiment", WORSE, "--force", "--reason", "killed")
    done = promote(repo, home, *args, BAAC_PROMOTE_KILL_AT="staged")
    assert done.returncode == -9, done.stderr
    assert champion_state(repo, home) == before
    assert aliases(repo) == {"champion": "2", "previous": "1"}
    assert list(repo.glob(".models.tmp-*")), "the kill left its staged copy (hidden)"


def test_force_with_a_reason_promotes_and_records_it(repo: Path, home: Path) -> None:
    args = ("--experiment", WORSE, "--force", "--reason", "x: a demo", "--no-bentoml")
    done = promote(repo, home, *args)
    assert done.returncode == 0, done.stderr
    assert not list(repo.glob(".models.tmp-*")), "the next run removes a killed one's leftover"
    meta = metadata(repo)
    assert meta["promotion"] == {
        "forced": True,
        "reason": "x: a demo",
        "previous_version": "2",
        "report": meta["promotion"]["report"],
    }
    report = (repo / meta["promotion"]["report"]).read_text()
    assert "Forced, reason: x: a demo" in report and "did not pass the gate" in report
    assert aliases(repo) == {"champion": meta["registry"]["version"], "previous": "2"}
    assert promote(repo, home, "--force").returncode == 2  # no reason: a usage error


def test_rollback_restores_the_previous_champion(repo: Path, home: Path, recorded: dict) -> None:
    forced = metadata(repo)["registry"]["version"]
    done = baac(repo, home, "rollback", "--no-bentoml")
    assert done.returncode == 0, done.stderr
    restored = champion_state(repo, home)
    assert restored["models"] == recorded["accepted"]["models"]
    assert restored["models.dvc"] == recorded["accepted"]["models.dvc"]
    assert aliases(repo) == {"champion": "2", "previous": forced}
    assert "git add models.dvc reports/promotions/rollback-v2-workspace.md" in done.stdout


def test_the_served_model_leads_back_to_its_run_and_data(
    repo: Path, home: Path, tmp_path: Path
) -> None:
    import_model(repo, home)  # the champion after the rollback
    server = start_service(home, repo, tmp_path, API_KEY=KEY)
    try:
        served = httpx.get(f"{server.url}/model", headers={"X-API-Key": KEY}, timeout=60).json()
    finally:
        server.stop()
    client = mlflow_client(repo)
    version = client.get_model_version_by_alias("baac-severity", "champion")
    assert served["registry"]["version"] == str(version.version) == "2"
    assert served["mlflow_run_id"] == version.run_id
    run = client.get_run(served["mlflow_run_id"])
    assert run.data.tags["model.sha256"] == served["model_sha256"]
    assert run.data.tags["dvc.experiment"] == served["experiment"] == "workspace"
    data_hash = hashlib.sha256((repo / "data/processed/dataset.parquet").read_bytes()).hexdigest()
    assert served["data_snapshot"]["dataset_sha256"] == data_hash
    assert run.data.tags["data.dataset_sha256"] == data_hash
    assert (
        served["git_sha"]
        == subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=repo, text=True).strip()
    )
    # The store's own record of the model (a process-wide BentoML store may point elsewhere).
    name, tag_version = served["bentoml_model"].split(":")
    labels = yaml.safe_load((home / "models" / name / tag_version / "model.yaml").read_text())[
        "labels"
    ]
    assert labels["mlflow_run_id"] == version.run_id and labels["registry_version"] == "2"
    assert labels["dataset_sha256"] == data_hash and labels["experiment"] == "workspace"


def test_review_says_no_experiment_beats_main(repo: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "baac_severity.cli", "review", "--no-plots"],
        cwd=repo,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = done.stdout
    assert "**No experiment beats main** on validation.roc_auc" in report
    assert "make promote" not in report and "dvc exp apply" not in report
    ranking = report.split("## Ranking")[1].split("##")[0]
    assert ranking.index("**main**") < ranking.index(WORSE)
    assert f"95% percentile intervals of {WORSE} − main" in report
    rows = pd.read_parquet(repo / "model" / "predictions.parquet")
    assert f"on the {(rows['split'] == 'test').sum():,} test rows" in report
