"""What the dashboard's Monitoring page shows, read from a repository's workspace files: the
out-of-time figures per chunk (``plots/out_of_time.csv``: realized and estimated ROC-AUC) and
their headline (``metrics/out_of_time.json``), the drift per chunk (``plots/drift_share.csv``,
``plots/drift_features.csv``, ``reports/drift/``) and the live report of the service log
(``reports/live/drift.json``, written by ``make monitor``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from baac_severity.config import (
    DRIFT_FEATURES,
    DRIFT_PLOT,
    LIVE_DRIFT,
    OUT_OF_TIME_METRICS,
    OUT_OF_TIME_PLOT,
    drift_report,
)

PERFORMANCE_SERIES = {
    "roc_auc": "realized (labels)",
    "estimated_roc_auc": "estimated (no label)",
    "test_roc_auc": "test (in-sample period)",
}


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def out_of_time(repo: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every figure per chunk (the plot file), with the estimation error, and the headline
    (the DVC metric: mean and worst ROC-AUC, estimation error, transfer)."""
    chunks = _csv(repo / OUT_OF_TIME_PLOT)
    if not chunks.empty and "estimated_roc_auc" in chunks:
        chunks["estimate_error"] = (chunks["estimated_roc_auc"] - chunks["roc_auc"]).round(6)
    return chunks, (_read(repo / OUT_OF_TIME_METRICS) or {}).get("out_of_time", {})


def performance_long(chunks: pd.DataFrame) -> pd.DataFrame:
    """The ROC-AUC series of ``out_of_time`` in long form (chunk, series, roc_auc): one line
    per series on a chart."""
    present = [c for c in PERFORMANCE_SERIES if c in chunks]
    frame = chunks.melt(id_vars="chunk", value_vars=present, var_name="series")
    frame["series"] = frame["series"].map(PERFORMANCE_SERIES)
    return frame.rename(columns={"value": "roc_auc"}).dropna()


def drift_by_chunk(repo: Path) -> pd.DataFrame:
    """share_drifted, its limit and the severe rate per chunk, with each chunk's report."""
    frame = _csv(repo / DRIFT_PLOT)
    if not frame.empty:
        frame["report"] = [str(drift_report(c)) for c in frame["chunk"]]
    return frame


def worst_chunk(frame: pd.DataFrame) -> int | None:
    """The chunk with the highest drift share (the earliest on a tie): the report to open."""
    if frame.empty:
        return None
    return int(
        frame.sort_values(["share_drifted", "chunk"], ascending=[False, True])["chunk"].iloc[0]
    )


def worst_features(repo: Path, top: int = 10) -> pd.DataFrame:
    """The features that drifted in the most chunks (then the largest statistic): feature,
    chunks drifted, of how many, the chunks, and the largest statistic."""
    tests = _csv(repo / DRIFT_FEATURES)
    if tests.empty:
        return tests
    drifted = tests[tests["drifted"]]
    table = (
        drifted.groupby("feature")
        .agg(
            chunks_drifted=("chunk", "size"),
            chunks=("chunk", lambda c: ", ".join(str(k) for k in sorted(c))),
            largest_statistic=("statistic", "max"),
        )
        .reset_index()
    )
    table.insert(2, "of_chunks", tests["chunk"].nunique())
    table = table.sort_values(
        ["chunks_drifted", "largest_statistic", "feature"], ascending=[False, False, True]
    )
    return table.head(top).reset_index(drop=True)


def live_report(repo: Path) -> dict[str, Any] | None:
    return _read(repo / LIVE_DRIFT)
