"""Experiment decisions on real models, as a team works: the paired bootstrap, the promotion
gate, the registry in git, rollback, a SIGKILLed promotion, a teammate's clone that serves and
rolls back the same champion, and the chain from a running service back to the MLflow run and
the data.

Clone A (``tests/exp_repo``: real 2018 data, 20 trees) tracks its runs in a real ``mlflow
server`` on loopback and has a bare git repository and a local directory as its remotes; one
experiment with 3 trees (``worse3``, ``--temp``: the workspace keeps main's model). The tests
run in file order, each building on the last: worse3 first (no champion: no gate), then the
better workspace model (accepted), worse3 again (refused), killed, forced, rolled back; then A
pushes, B clones, pulls, serves, trains a run of its own and rolls back.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from baac_severity.config import PROMOTED_METADATA
from baac_severity.decisions import compare
from baac_severity.testing.local_service import free_port, import_model, start_service, stop_process
from baac_severity.testing.sandbox import dvc, env, make_pipeline_repo, run
from tests.exp_repo import commit
from tests.helpers import file_digests

pytestmark = pytest.mark.slow

WORSE = "worse3"
KEY = "test-key"


@pytest.fixture(scope="module")
def remotes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The team's shared places: a bare git repository and a DVC remote directory."""
    root = tmp_path_factory.mktemp("team")
    origin = root / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], root)
    return {"git": origin, "dvc": root / "dvc-remote"}


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on loopback, the team's tracking store."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--backend-store-uri", f"sqlite:///{folder / 'runs.db'}"]
    command += ["--artifacts-destination", str(folder / "artifacts")]
    with (folder / "server.log").open("w") as log:
        process = subprocess.Popen(command, cwd=folder, env=env(), stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        stop_process(process)


def wait_for(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow server not up at {url} after {timeout} s")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, remotes: dict, tracking: str) -> Path:
    """Clone A: the small pipeline reproduced (its train run in the team's MLflow server) and
    committed, with its git and DVC remotes, and the ``worse3`` experiment."""
    repo = make_pipeline_repo(tmp_path_factory.mktemp("promotion") / "a")
    dvc("remote", "add", "-d", "team", str(remotes["dvc"]), cwd=repo)
    run(["git", "remote", "add", "origin", str(remotes["git"])], repo)
    dvc("push", "-q", "data.dvc", cwd=repo)  # the raw dump in git (dvcstore/), as in this repo
    dvc("repro", "-q", "split", cwd=repo)  # meanwhile the MLflow server starts
    wait_for(tracking)
    dvc("repro", "-q", cwd=repo, MLFLOW_TRACKING_URI=tracking)
    commit(repo, "baseline run")
    args = ("exp", "run", "--temp", "-q", "-n", WORSE, "-S", "model.n_estimators=3")
    dvc(*args, cwd=repo, MLFLOW_TRACKING_URI=tracking)
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


def registry(repo: Path) -> dict:
    return json.loads((repo / "registry.json").read_text())


def aliases(repo: Path) -> dict[str, int | None]:
    found = registry(repo)
    return {"champion": found["champion"], "previous": found["previous"]}


def runs_of(tracking: str, **tags: str) -> list:
    """The MLflow runs with these tags (``model.sha256``: the run that trained a model)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name("baac-severity")
    query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    return client.search_runs([experiment.experiment_id], filter_string=query)


def champion_state(repo: Path, home: Path) -> dict:
    """Everything a promotion may change, as bytes: models/, models.dvc, the registry, the
    BentoML store."""
    return {
        "models": file_digests(repo / "models"),
        "models.dvc": (repo / "models.dvc").read_bytes(),
        "registry.json": (repo / "registry.json").read_bytes(),
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


def test_first_promotion_has_no_gate_and_starts_the_registry(
    repo: Path, home: Path, tracking: str
) -> None:
    done = promote(repo, home, "--experiment", WORSE)
    assert done.returncode == 0, done.stderr
    assert "No champion yet" in done.stdout
    meta = metadata(repo)
    assert meta["experiment"] == WORSE and meta["registry"]["version"] == 1
    assert aliases(repo) == {"champion": 1, "previous": None}
    [version] = registry(repo)["versions"]
    assert version["model_sha256"] == meta["model_sha256"]
    assert version["models_dvc"] == (repo / "models.dvc").read_text()
    # Nothing per run in the DVC-hashed metadata: the run is found by the model's hash.
    assert "mlflow_run_id" not in meta
    [trained] = runs_of(tracking, **{"model.sha256": meta["model_sha256"]})
    assert trained.data.tags["dvc.experiment"] == WORSE


def test_gate_accepts_a_better_model(repo: Path, home: Path, recorded: dict) -> None:
    done = promote(repo, home)  # the workspace: main's 20 trees
    assert done.returncode == 0, done.stderr
    meta = metadata(repo)
    assert meta["experiment"] == "workspace" and meta["promotion"]["forced"] is False
    report = (repo / meta["promotion"]["report"]).read_text()
    assert "passed the gate" in report and "95% interval" in report
    # The workspace holds the promoted run: record its params and lock with the promotion.
    record = (
        "git add params.yaml dvc.lock metrics plots models.dvc registry.json "
        f"{meta['promotion']['report']}"
    )
    assert f"record it:\n  {record} && git commit" in done.stdout
    assert aliases(repo) == {"champion": 2, "previous": 1}
    status = dvc("status", "models.dvc", cwd=repo).stdout
    assert "up to date" in status, status
    recorded["accepted"] = champion_state(repo, home)


def test_gate_refuses_a_worse_model_and_changes_nothing(repo: Path, home: Path) -> None:
    import_model(repo, home)  # the champion in the BentoML store too
    before = champion_state(repo, home)
    done = promote(repo, home, "--experiment", WORSE)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{WORSE} does not beat the champion on validation.roc_auc" in done.stderr
    assert re.search(r"\| roc_auc +\|", done.stdout) and "nothing changed" in done.stderr
    assert champion_state(repo, home) == before


def test_sigkill_during_promotion_leaves_the_champion_intact(repo: Path, home: Path) -> None:
    before = champion_state(repo, home)
    args = ("--experiment", WORSE, "--force", "--reason", "killed")
    done = promote(repo, home, *args, BAAC_PROMOTE_KILL_AT="staged")
    assert done.returncode == -9, done.stderr
    assert champion_state(repo, home) == before
    assert list(repo.glob(".models.tmp-*")), "the kill left its staged copy (hidden)"


def test_force_with_a_reason_promotes_and_records_it(
    repo: Path, home: Path, recorded: dict
) -> None:
    args = ("--experiment", WORSE, "--force", "--reason", "x: a demo")
    done = promote(repo, home, *args)
    assert done.returncode == 0, done.stderr
    assert not list(repo.glob(".models.tmp-*")), "the next run removes a killed one's leftover"
    meta = metadata(repo)
    assert meta["promotion"] == {
        "forced": True,
        "reason": "x: a demo",
        "previous_version": 2,
        "report": meta["promotion"]["report"],
    }
    report = (repo / meta["promotion"]["report"]).read_text()
    assert "Forced, reason: x: a demo" in report and "did not pass the gate" in report
    assert aliases(repo) == {"champion": 3, "previous": 2}
    assert registry(repo)["versions"][2]["reason"] == "x: a demo"
    assert promote(repo, home, "--force").returncode == 2  # no reason: a usage error
    recorded["forced"] = champion_state(repo, home)


def test_rollback_restores_the_previous_champion(repo: Path, home: Path, recorded: dict) -> None:
    done = baac(repo, home, "rollback")
    assert done.returncode == 0, done.stderr
    restored = champion_state(repo, home)
    assert restored["models"] == recorded["accepted"]["models"]
    assert restored["models.dvc"] == recorded["accepted"]["models.dvc"]
    assert aliases(repo) == {"champion": 2, "previous": 3}
    report = "reports/promotions/rollback-v2-workspace.md"
    assert f"git add models.dvc registry.json {report}" in done.stdout


def test_the_served_model_leads_back_to_its_run_and_data(
    repo: Path, home: Path, tmp_path: Path, tracking: str
) -> None:
    tag = import_model(repo, home)  # the champion after the rollback
    server = start_service(home, repo, tmp_path, API_KEY=KEY)
    try:
        served = httpx.get(f"{server.url}/model", headers={"X-API-Key": KEY}, timeout=60).json()
    finally:
        server.stop()
    assert served["registry"]["version"] == registry(repo)["champion"] == 2
    [trained] = runs_of(tracking, **{"model.sha256": served["model_sha256"]})
    assert trained.data.tags["dvc.experiment"] == served["experiment"] == "workspace"
    data_hash = hashlib.sha256((repo / "data/processed/dataset.parquet").read_bytes()).hexdigest()
    assert served["data_snapshot"]["dataset_sha256"] == data_hash
    assert trained.data.tags["data.dataset_sha256"] == data_hash
    assert served["git_sha"] == run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    # The store's own record of the model (a process-wide BentoML store may point elsewhere).
    name, tag_version = served["bentoml_model"].split(":")
    assert served["bentoml_model"] == tag
    labels = yaml.safe_load((home / "models" / name / tag_version / "model.yaml").read_text())[
        "labels"
    ]
    assert labels["registry_version"] == "2" and labels["model_sha256"] == served["model_sha256"]
    assert labels["dataset_sha256"] == data_hash and labels["experiment"] == "workspace"


def test_the_bentoml_store_reuses_a_model_and_keeps_the_newest(repo: Path, tmp_path: Path) -> None:
    """The store is derived: a sync imports the champion unless a model with its sha256 is
    there (a rollback reuses it), and keeps the newest BAAC_KEEP_MODELS plus the champion and
    previous."""
    home = tmp_path / "bentoml_home"
    stored = home / "models" / "baac-severity"

    def sync(**settings: str) -> subprocess.CompletedProcess:
        return baac(repo, home, "sync-bentoml", BAAC_ENV_FILE="/dev/null", **settings)

    # An older model, neither champion nor previous: beyond BAAC_KEEP_MODELS=1 at the end.
    other = tmp_path / "other"
    shutil.copytree(repo / "models", other)
    meta = json.loads((other / "metadata.json").read_text())
    (other / "metadata.json").write_text(json.dumps({**meta, "model_sha256": "0" * 64}))
    code = (
        "from pathlib import Path; from baac_severity.serving.bento_store import import_model; "
        f"import_model(Path('{other}'))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, env={**env(), "BENTOML_HOME": str(home)}
    )
    assert imported.returncode == 0 and (stored / ("0" * 12)).is_dir()
    first = sync()
    assert first.returncode == 0 and "the champion, imported" in first.stderr, first.stderr
    tag = first.stdout.strip()
    assert tag == f"baac-severity:{metadata(repo)['model_sha256'][:12]}"
    assert baac(repo, home, "rollback").returncode == 0  # v3: worse3
    assert "the champion, imported" in sync().stderr
    assert baac(repo, home, "rollback").returncode == 0  # v2 again: in the store already
    again = sync()
    assert again.stdout.strip() == tag and "already in the store: reused" in again.stderr
    assert len(list(stored.glob("*/model.yaml"))) == 3
    pruned = sync(BAAC_KEEP_MODELS="1")
    assert "1 older model(s) removed (1 kept): baac-severity:000000000000" in pruned.stderr
    assert len(list(stored.glob("*/model.yaml"))) == 2  # the champion and previous stay
    bad = sync(BAAC_KEEP_MODELS="0")
    assert bad.returncode == 2 and "BAAC_KEEP_MODELS" in bad.stderr, bad.stderr


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


def test_a_teammates_clone_serves_and_rolls_back_the_same_champion(
    repo: Path, remotes: dict, tracking: str, recorded: dict, tmp_path: Path
) -> None:
    """A records and pushes (git, with the registry; DVC, with every champion); B clones and
    pulls: its service answers GET /model with A's model and registry version without
    training, its own run lands in the same MLflow server, and its rollback restores A's
    previous champion byte for byte."""
    commit(repo, "Promotions, a rollback")
    run(["git", "push", "-q", "origin", "main"], repo)
    dvc("push", "-q", cwd=repo)  # every cached output: the data, the pipeline's, each champion
    b = tmp_path / "b"
    run(["git", "clone", "-q", str(remotes["git"]), str(b)], tmp_path)
    dvc("pull", "-q", cwd=b)
    assert dvc("status", cwd=b).stdout.strip().endswith("up to date.")  # nothing to retrain
    assert registry(b) == registry(repo)
    home = tmp_path / "bentoml_home"
    import_model(b, home)  # what B's `make serve` runs first
    server = start_service(home, b, tmp_path, API_KEY=KEY)
    try:
        served = httpx.get(f"{server.url}/model", headers={"X-API-Key": KEY}, timeout=60).json()
    finally:
        server.stop()
    theirs = metadata(repo)
    assert served["model_sha256"] == theirs["model_sha256"]
    assert served["registry"] == theirs["registry"] == {"name": "baac-severity", "version": 2}
    # B's own experiment is tracked in the team's store, beside A's runs.
    args = ("exp", "run", "-q", "-n", "b-leaf5", "-S", "model.min_samples_leaf=5")
    dvc(*args, cwd=b, MLFLOW_TRACKING_URI=tracking)
    experiments = {r.data.tags.get("dvc.experiment") for r in runs_of(tracking)}
    assert {"workspace", WORSE, "b-leaf5"} <= experiments
    # B's rollback: A's previous champion (v3), from the DVC remote (B's cache never had it).
    done = baac(b, home, "rollback")
    assert done.returncode == 0, done.stderr
    assert file_digests(b / "models") == recorded["forced"]["models"]
    assert (b / "models.dvc").read_bytes() == recorded["forced"]["models.dvc"]
    assert aliases(b) == {"champion": 3, "previous": 2}
