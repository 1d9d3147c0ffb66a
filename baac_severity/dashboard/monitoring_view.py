"""What the dashboard's Monitoring page shows, read from a repository's workspace files: the
out-of-time figures (``metrics/out_of_time.json``), the drift per chunk
(``metrics/drift.json``, ``reports/drift/``) and the live drift of the service log
(``reports/live/drift.json``, written by ``make monitor``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from baac_severity.config import (
    DRIFT_METRICS,
    LIVE_DRIFT,
    OUT_OF_TIME_METRICS,
    OUT_OF_TIME_PLOT,
    drift_report,
)

CHUNK_PREFIX = "chunk_"


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _per_chunk(section: dict[str, Any]) -> pd.DataFrame:
    rows = [
        {"chunk": int(key.removeprefix(CHUNK_PREFIX)), **values}
        for key, values in section.items()
        if key.startswith(CHUNK_PREFIX)
    ]
    return pd.DataFrame(rows).sort_values("chunk", ignore_index=True) if rows else pd.DataFrame()


def out_of_time(repo: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every figure per chunk (the plot file: the DVC metric keeps three of them), and the
    rest of the metric (summary, transfer, model)."""
    metrics = (_read(repo / OUT_OF_TIME_METRICS) or {}).get("out_of_time", {})
    rest = {k: v for k, v in metrics.items() if not k.startswith(CHUNK_PREFIX)}
    plot = repo / OUT_OF_TIME_PLOT
    return (pd.read_csv(plot) if plot.is_file() else pd.DataFrame()), rest


def drift_by_chunk(repo: Path) -> pd.DataFrame:
    """share_drifted and target_rate per chunk, with the path of each chunk's HTML report."""
    frame = _per_chunk((_read(repo / DRIFT_METRICS) or {}).get("drift", {}))
    if not frame.empty:
        frame["report"] = [str(drift_report(c)) for c in frame["chunk"]]
    return frame


def live_drift(repo: Path) -> dict[str, Any] | None:
    return _read(repo / LIVE_DRIFT)
