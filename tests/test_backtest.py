"""The out-of-time and drift stages in a real DVC repository on real 2018 data: one new fit per
arriving chunk, earlier figures byte-identical, every chunk in the metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from baac_severity.data.io import write_parquet
from baac_severity.data.schema import KEY
from baac_severity.testing.sandbox import dvc, make_pipeline_repo
from tests.helpers import file_digests

CHUNK = 1000
# A light model; the data are set up below, so the upstream stages do not run.
OVERRIDES = ["data.years=[2018]", "model.n_estimators=10", "monitor.n_estimators=10"]
CACHE = Path("data/processed/monitor/backtest_cache")


def fits(output: str) -> int:
    return int(re.search(r"out-of-time: (\d+) new fit", output).group(1))


def chunks_of(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k.startswith("chunk_")}


def small_chunks(workspace: Path, count: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first ``count`` x 1,000 real 2018 accidents of the workspace's split output, in
    arrival order, cut into chunks of 1,000 (as ``ingest.chunk_size=1000`` would), with their
    road users."""
    dataset = pd.read_parquet(workspace / "data/processed/dataset.parquet")
    dataset = dataset[dataset["an"] == 2018].sort_values(["arrival_chunk", KEY], kind="stable")
    dataset = dataset.head(count * CHUNK).reset_index(drop=True)
    dataset["arrival_chunk"] = (dataset.index // CHUNK + 1).astype("int32")
    users = pd.read_parquet(workspace / "data/processed/users.parquet")
    return dataset, users[users[KEY].isin(dataset[KEY])]


@pytest.fixture(scope="module")
def arrivals(workspace, tmp_path_factory) -> dict:
    """3 chunks, then a 4th: the stages' output and files after each run (real `dvc repro`
    of the two monitoring stages; their inputs are set up in place of the upstream stages)."""
    repo = make_pipeline_repo(tmp_path_factory.mktemp("backtest"), OVERRIDES)
    runs: dict = {"repo": repo}
    for count in (3, 4):
        dataset, users = small_chunks(workspace, count)
        write_parquet(dataset, repo / "data/processed/dataset.parquet")
        write_parquet(users, repo / "data/processed/users.parquet")
        result = dvc("repro", "-s", "out-of-time", "drift", cwd=repo)
        runs[count] = {
            "output": result.stdout,
            "dataset": dataset,
            "metrics": json.loads((repo / "metrics/out_of_time.json").read_text())["out_of_time"],
            "drift": json.loads((repo / "metrics/drift.json").read_text())["drift"],
            "plot": pd.read_csv(repo / "plots/out_of_time.csv"),
            "cache": file_digests(repo / CACHE),
            "reports": sorted(p.name for p in (repo / "reports/drift").iterdir()),
        }
    return runs


def test_an_arriving_chunk_runs_one_fit_and_keeps_earlier_figures(arrivals):
    first, second = arrivals[3], arrivals[4]
    assert fits(first["output"]) == 2  # chunks 2 and 3 (no 2024 row: no transfer)
    assert fits(second["output"]) == 1  # chunk 4 only
    assert list(chunks_of(first["metrics"])) == ["chunk_0002", "chunk_0003"]
    assert list(chunks_of(second["metrics"])) == ["chunk_0002", "chunk_0003", "chunk_0004"]
    for name, figures in chunks_of(first["metrics"]).items():
        assert second["metrics"][name] == figures
    # The cached entries of chunks 2 and 3 are the same bytes; one file was added.
    assert set(first["cache"]) < set(second["cache"])
    assert all(second["cache"][name] == digest for name, digest in first["cache"].items())
    dataset = second["dataset"]
    table = second["plot"].set_index("chunk")
    for k in (2, 3, 4):
        figures = table.loc[k]
        assert second["metrics"][f"chunk_{k:04d}"] == {
            name: pytest.approx(figures[name]) for name in ("roc_auc",)
        }
        chunk = dataset[dataset["arrival_chunk"] == k]
        earlier = dataset[(dataset["arrival_chunk"] < k) & (dataset["dataset_split"] == "train")]
        assert (figures["rows"], figures["train_rows"]) == (CHUNK, len(earlier))
        assert figures["base_rate"] == pytest.approx(chunk["severe"].mean())
        assert 0 <= figures["roc_auc"] <= 1 and 0 <= figures["ece"] <= 1
    assert second["metrics"]["model"] == {"name": "random_forest", "n_estimators": 10}
    summary = second["metrics"]["summary"]
    assert summary["worst_chunk"] in (2, 3, 4) and summary["test_roc_auc"] is not None


def test_drift_has_a_report_and_metrics_per_chunk(arrivals):
    second = arrivals[4]
    names = ["chunk_0002", "chunk_0003", "chunk_0004"]
    assert sorted(second["drift"]) == [*names, "most_drifted_chunk"]
    assert second["reports"] == ["chunk-0002.html", "chunk-0003.html", "chunk-0004.html"]
    for k in ("chunk_0002", "chunk_0003", "chunk_0004"):
        assert 0 <= second["drift"][k]["share_drifted"] <= 1
        assert 0 < second["drift"][k]["target_rate"] < 1
