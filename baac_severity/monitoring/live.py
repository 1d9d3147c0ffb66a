"""``make monitor``: the drift report of the service's live log against the promoted model's
training reference.

Reads the prediction log the service writes with ``bentoml.monitor``
(``baac_severity/serving/prediction_logger.py``: one JSON line per request, one list of values per
model feature), keeps the rows scored by the promoted model (``models/metadata.json``: its version;
that is everything logged since the last promotion), and compares their features with the training
rows that model was fitted on (the training split of the chunks it had,
``baac_severity.monitoring.drift`` tests). Writes ``reports/live/drift.html`` and
``reports/live/drift.json`` and prints the report's path.

Exit status: 0 when at most ``monitor.max_share_drifted`` of the features drifted, 1 above it,
2 when there is nothing to compare (no promoted model, no logged row for it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from baac_severity.config import (
    DATASET,
    LIVE_DRIFT,
    LIVE_DRIFT_REPORT,
    PROMOTED_METADATA,
    load_params,
)
from baac_severity.data.io import read_json, write_json, write_text
from baac_severity.features import build_features
from baac_severity.monitoring import drift
from baac_severity.monitoring.prediction_log import DEFAULT_LOG_DIR, read_rows

NO_DATA_EXIT = 2


def training_reference(metadata: dict) -> pd.DataFrame:
    """The features of the rows the promoted model was trained on: the training split of the
    chunks it had (splits never change once assigned), for the years its target used."""
    snapshot, params = metadata["data_snapshot"], metadata["params"]
    dataset = pd.read_parquet(DATASET)
    rows = (dataset["dataset_split"] == "train") & (
        dataset["arrival_chunk"] <= snapshot["chunks_ingested"]
    )
    years = params["target"].get("years")
    if years:
        rows &= dataset["an"].isin(list(years))
    if metadata["unit"] != "accident":
        raise SystemExit("make monitor compares accident-level features; the model is user-level")
    frame = dataset[rows].reset_index(drop=True)
    return build_features(frame, metadata["feature_groups"])[metadata["features"]]


def run(
    log_dir: Path,
    max_share: float,
    every_version: bool = False,
    since: str | None = None,
    report_dir: Path = LIVE_DRIFT.parent,
) -> int:
    metadata = read_json(PROMOTED_METADATA)
    if metadata is None:
        print(f"monitor: no promoted model ({PROMOTED_METADATA}): run `make promote`")
        return NO_DATA_EXIT
    version = None if every_version else metadata["version"]
    live = read_rows(log_dir, metadata["features"], version, since)
    if live.empty:
        which = "any model" if version is None else f"model version {version}"
        print(f"monitor: no logged prediction of {which} in {log_dir}")
        return NO_DATA_EXIT
    report = drift.compare(
        training_reference(metadata),
        live,
        title=f"Live drift of the service log (model {metadata['version']})",
        reference_label=f"training rows of the promoted model {metadata['version']}",
        current_label=f"rows logged in {log_dir}"
        + ("" if version is None else f" by model {version}")
        + ("" if since is None else f" since {since}"),
    )
    html_path = report_dir / LIVE_DRIFT_REPORT.name
    write_text(drift.render_html(report), html_path)
    summary = {
        "model_version": metadata["version"],
        "rows": report.current_rows,
        "share_drifted": report.share_drifted,
        "max_share_drifted": max_share,
        "drifted": report.drifted,
        "report": str(html_path),
    }
    write_json(summary, report_dir / LIVE_DRIFT.name)
    verdict = "DRIFT" if report.share_drifted > max_share else "no drift"
    print(
        f"monitor: {verdict}: {len(report.drifted)} of {len(report.tested)} features drifted "
        f"(share {report.share_drifted}, limit {max_share}) over {report.current_rows} "
        f"logged rows: {', '.join(report.drifted) or 'none'}"
    )
    print(f"monitor: report {html_path}")
    return 1 if report.share_drifted > max_share else 0


def monitor(
    log_dir: Path | None = None,
    max_share: float | None = None,
    every_version: bool = False,
    since: str | None = None,
    report_dir: Path | None = None,
) -> int:
    """``run`` with the defaults of ``baac monitor``: the service's ``PREDICTION_LOG_DIR``, the
    ``monitor.max_share_drifted`` param, ``reports/live``."""
    if log_dir is None:
        log_dir = Path(os.environ.get("PREDICTION_LOG_DIR", str(DEFAULT_LOG_DIR)))
    if max_share is None:
        max_share = float(load_params().monitor.max_share_drifted)
    return run(log_dir, max_share, every_version, since, report_dir or LIVE_DRIFT.parent)
