"""End to end with real ``dvc`` commands in temporary copies of this repository.

Runs the real pipeline on a reduced configuration (real 2018 data, chunks of 2,000 accidents,
20 trees) so that the whole file stays within a couple of minutes on 2 cores.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

from baac_severity.config import MODEL_FILE, ROOT, compose
from baac_severity.data import schema
from baac_severity.modeling import evaluate
from baac_severity.testing.sandbox import dvc, make_pipeline_repo
from tests.helpers import lock_hashes

pytestmark = pytest.mark.skipif(
    not (ROOT / "data" / "raw").is_dir(), reason="data/raw missing: run `make data`"
)
REPORTED = ["roc_auc", "f1_weighted", "f1_macro"]


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory) -> Path:
    repo = make_pipeline_repo(tmp_path_factory.mktemp("small"))
    dvc("repro", cwd=repo)
    return repo


def test_committed_params_equal_the_composed_conf():
    """Plain `dvc repro` reads params.yaml as it stands, so it must match conf/."""
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert committed == compose([], ROOT / "conf")


def test_repro_trains_and_reports_the_test_metrics(small_repo):
    shown = json.loads(dvc("metrics", "show", "--json", cwd=small_repo).stdout)
    # The DVC metrics are what `dvc exp show` compares: headline metrics and the data snapshot.
    # The model's metrics come first (a narrow terminal keeps them), the monitoring ones last.
    assert list(shown[""]["data"]) == [
        "metrics/train.json",
        "metrics/data.json",
        "metrics/out_of_time.json",
        "metrics/drift.json",
    ]
    first = shown[""]["data"]["metrics/train.json"]["data"]
    # ROC-AUC of validation (the selection) and test, then the size: the first columns.
    assert first == {
        "validation": {"roc_auc": first["validation"]["roc_auc"]},
        "test": {"roc_auc": first["test"]["roc_auc"]},
        "model": {"size_mb": first["model"]["size_mb"]},
    }
    # The other scores: a plain output, not a DVC metric (one `dvc exp show` column per key).
    scores = json.loads((small_repo / "metrics" / "scores.json").read_text())
    rest = [m for m in (*evaluate.HEADLINE, *evaluate.CALIBRATION) if m != "roc_auc"]
    assert list(scores["validation"]) == list(scores["test"]) == rest
    metrics = {s: {**first[s], **scores[s]} for s in ("validation", "test")}
    for name in REPORTED:
        assert 0.5 < metrics["test"][name] <= 1.0, name
    assert shown[""]["data"]["metrics/data.json"]["data"]["chunks_ingested"] == 2
    details = json.loads((small_repo / "model" / "evaluation.json").read_text())
    assert details["test"]["roc_auc"] == metrics["test"]["roc_auc"]
    assert details["test_by_year"]["2018"]["rows"] == details["test"]["rows"]
    assert (small_repo / MODEL_FILE).stat().st_size < 20e6


def test_second_repro_is_up_to_date(small_repo):
    result = dvc("repro", cwd=small_repo)
    assert "Data and pipelines are up to date" in result.stdout


def test_plots_show_renders_every_declared_plot(small_repo, tmp_path):
    dvc("plots", "show", "-o", str(tmp_path / "plots"), cwd=small_repo)
    page = (tmp_path / "plots" / "index.html").read_text()
    for title in ("ROC", "Precision-recall", "Confusion matrix", "Feature importance"):
        assert title in page, title
    assert "importance.png" in page


def test_temp_experiments_land_in_the_main_mlflow_store(small_repo):
    """`dvc exp run --temp` runs in a copy under .dvc/tmp/exps; MLflow must still use the
    repository's own store."""
    dvc("exp", "run", "--temp", "-S", "model.n_estimators=7", cwd=small_repo)
    with sqlite3.connect(small_repo / "mlflow.db") as store:
        values = {
            row[0]
            for row in store.execute("SELECT value FROM params WHERE key = 'model.n_estimators'")
        }
    assert {"20", "7"} <= values
    assert not list((small_repo / ".dvc" / "tmp").rglob("mlflow.db"))


def test_split_is_stable_as_chunks_arrive_and_runs_are_deterministic(tmp_path):
    """ingest.chunks=3 then 12 keeps every early accident's split; the incremental path and a
    fresh full run give the same dvc.lock hashes for every data output."""
    incremental = make_pipeline_repo(tmp_path / "incremental")
    dvc("exp", "run", "split", "-S", "ingest.chunks=3", cwd=incremental)
    early = pd.read_parquet(incremental / "data/processed/dataset.parquet")
    assert early["arrival_chunk"].max() == 3 and len(early) == 3 * 2000
    dvc("exp", "run", "split", "-S", "ingest.chunks=12", cwd=incremental)
    later = pd.read_parquet(incremental / "data/processed/dataset.parquet")
    assert len(later) == 12 * 2000
    moved = later.set_index(schema.KEY)["dataset_split"].reindex(early[schema.KEY])
    assert (moved.to_numpy() == early["dataset_split"].to_numpy()).all()

    fresh = make_pipeline_repo(tmp_path / "fresh", overrides=None)
    dvc("exp", "run", "split", "-S", "ingest.chunks=12", cwd=fresh)
    assert lock_hashes(incremental) == lock_hashes(fresh)
