"""The out-of-time and drift stages in a real DVC repository on real 2018 data: one new fit per
arriving chunk, earlier figures byte-identical, every chunk in the plot files and the headline
alone in the DVC metrics."""

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
OVERRIDES = [
    "data.years=[2018]",
    "model.n_estimators=10",
    "model.light.n_estimators=10",
]
CACHE = Path("data/processed/monitor/backtest_cache")


def fits(output: str) -> int:
    return int(re.search(r"out-of-time: (\d+) new fit", output).group(1))


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
            "drift_plot": pd.read_csv(repo / "plots/drift_share.csv"),
            "cache": file_digests(repo / CACHE),
            "reports": sorted(p.name for p in (repo / "reports/drift").iterdir()),
        }
    return runs


def test_an_arriving_chunk_runs_one_fit_and_keeps_earlier_figures(arrivals):
    first, second = arrivals[3], arrivals[4]
    assert fits(first["output"]) == 2  # chunks 2 and 3 (no 2024 row: no transfer)
    assert fits(second["output"]) == 1  # chunk 4 only
    assert first["plot"]["chunk"].tolist() == [2, 3]
    assert second["plot"]["chunk"].tolist() == [2, 3, 4]
    pd.testing.assert_frame_equal(second["plot"].head(2), first["plot"])
    # The cached entries of chunks 2 and 3 are the same bytes; one file was added.
    assert set(first["cache"]) < set(second["cache"])
    assert all(second["cache"][name] == digest for name, digest in first["cache"].items())
    dataset = second["dataset"]
    table = second["plot"].set_index("chunk")
    for k in (2, 3, 4):
        figures = table.loc[k]
        chunk = dataset[dataset["arrival_chunk"] == k]
        earlier = dataset[(dataset["arrival_chunk"] < k) & (dataset["dataset_split"] == "train")]
        assert (figures["rows"], figures["train_rows"]) == (CHUNK, len(earlier))
        assert figures["base_rate"] == pytest.approx(chunk["severe"].mean())
        assert 0 <= figures["roc_auc"] <= 1 and 0 <= figures["ece"] <= 1
        # Isotonic calibration keeps the model's ranking: the estimate is at least chance.
        assert 0.5 <= figures["estimated_roc_auc"] <= 1
    # The DVC metric is the headline only, computed from the plot file.
    metrics = second["metrics"]
    assert set(metrics) == {"mean_roc_auc", "worst_roc_auc", "worst_chunk", "estimate_mae"}
    assert metrics["mean_roc_auc"] == pytest.approx(table["roc_auc"].mean(), abs=1e-6)
    assert metrics["worst_roc_auc"] == table["roc_auc"].min()
    assert table.loc[metrics["worst_chunk"], "roc_auc"] == metrics["worst_roc_auc"]
    errors = (table["estimated_roc_auc"] - table["roc_auc"]).abs()
    assert metrics["estimate_mae"] == pytest.approx(errors.mean(), abs=1e-6)


def test_drift_has_a_report_per_chunk_and_the_headline_in_its_metric(arrivals):
    second = arrivals[4]
    assert second["reports"] == ["chunk-0002.html", "chunk-0003.html", "chunk-0004.html"]
    plot = second["drift_plot"].set_index("chunk")
    assert plot.index.tolist() == [2, 3, 4]
    assert plot["share_drifted"].between(0, 1).all()
    assert plot["target_rate"].between(0, 1, inclusive="neither").all()
    assert second["drift"] == {
        "highest_share": plot["share_drifted"].max(),
        "most_drifted_chunk": int(plot["share_drifted"].idxmax()),
    }
