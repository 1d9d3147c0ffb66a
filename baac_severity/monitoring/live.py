"""``make monitor``: the drift report of the service's live log against the promoted model's
training reference.

Reads the prediction log the service writes with ``bentoml.monitor``
(``baac_severity/serving/prediction_logger.py``: one JSON line per request, one list of values per
model feature), keeps the rows scored by the promoted model (``models/metadata.json``: its version;
that is everything logged since the last promotion), and compares their features with the training
rows that model was fitted on (the training split of the chunks it had,
``baac_severity.monitoring.drift`` tests). Also estimates, without labels, the ROC-AUC of the
logged traffic from its logged probabilities (CBPE, ``baac_severity.monitoring.estimate``),
calibrated on the promoted model's own validation probabilities (``models/predictions.parquet``),
and sets it beside the model's test ROC-AUC. Writes ``reports/live/drift.html`` and
``reports/live/drift.json`` and prints the report's path.

Exit status: 0 when at most ``monitor.max_share_drifted`` of the features drifted and the
estimated ROC-AUC is at most ``monitor.max_estimated_drop`` below the test ROC-AUC, 1 otherwise,
2 when there is nothing to compare (no promoted model, no logged row for it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from baac_severity.config import (
    DATASET,
    LIVE_DRIFT,
    LIVE_DRIFT_REPORT,
    PROMOTED_METADATA,
    PROMOTED_PREDICTIONS,
    load_params,
)
from baac_severity.data.io import read_json, write_json, write_text
from baac_severity.features import build_features
from baac_severity.modeling.evaluate import PROBA_PREFIX, SPLIT, TARGET
from baac_severity.monitoring import drift
from baac_severity.monitoring.drift_report import render_html
from baac_severity.monitoring.estimate import estimate_roc_auc, fit_calibration
from baac_severity.monitoring.prediction_log import DEFAULT_LOG_DIR, probability_column, read_rows

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


def estimated_performance(
    metadata: dict, predictions: pd.DataFrame | None, logged_proba: np.ndarray
) -> dict:
    """The ROC-AUC of the logged rows estimated from their probabilities (CBPE), calibrated
    on the model's validation rows (``predictions``: its per-row probabilities, with the true
    class), beside its test ROC-AUC; the estimate is None without validation probabilities."""
    labels = list(metadata["labels"])
    classes = np.arange(len(labels))
    test_roc_auc = metadata.get("metrics", {}).get("test", {}).get("roc_auc")
    estimate = None
    if predictions is not None:
        validation = predictions[predictions[SPLIT] == "validation"]
        columns = [f"{PROBA_PREFIX}{label}" for label in labels]
        calibration = fit_calibration(
            validation[columns].to_numpy(dtype=float), validation[TARGET].to_numpy(), classes
        )
        estimate = estimate_roc_auc(logged_proba, classes, calibration)
    drop = None if estimate is None or test_roc_auc is None else test_roc_auc - estimate
    return {
        "estimated_roc_auc": estimate,
        "test_roc_auc": test_roc_auc,
        "estimated_drop": None if drop is None else round(drop, 6),
    }


def estimate_alert(performance: dict, max_drop: float) -> bool:
    """True when the estimated ROC-AUC is below the test ROC-AUC by more than ``max_drop``."""
    drop = performance["estimated_drop"]
    return drop is not None and drop > max_drop


def run(
    log_dir: Path,
    max_share: float,
    every_version: bool = False,
    since: str | None = None,
    report_dir: Path = LIVE_DRIFT.parent,
    max_drop: float | None = None,
) -> int:
    """The live report; ``max_drop``: ``monitor.max_estimated_drop`` (from params.yaml when
    None)."""
    if max_drop is None:
        max_drop = float(load_params().monitor.max_estimated_drop)
    metadata = read_json(PROMOTED_METADATA)
    if metadata is None:
        print(f"monitor: no promoted model ({PROMOTED_METADATA}): run `make promote`")
        return NO_DATA_EXIT
    version = None if every_version else metadata["version"]
    probabilities = [probability_column(label) for label in metadata["labels"]]
    logged = read_rows(log_dir, [*metadata["features"], *probabilities], version, since)
    live = logged[metadata["features"]]
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
    performance = estimated_performance(
        metadata,
        pd.read_parquet(PROMOTED_PREDICTIONS) if PROMOTED_PREDICTIONS.is_file() else None,
        logged[probabilities].to_numpy(dtype=float),
    )
    html_path = report_dir / LIVE_DRIFT_REPORT.name
    write_text(render_html(report, [("live log", report.share_drifted)], max_share), html_path)
    summary = {
        "model_version": metadata["version"],
        "rows": report.current_rows,
        "share_drifted": report.share_drifted,
        "max_share_drifted": max_share,
        "drifted": report.drifted,
        **performance,
        "max_estimated_drop": max_drop,
        "report": str(html_path),
    }
    write_json(summary, report_dir / LIVE_DRIFT.name)
    drifted = report.share_drifted > max_share
    print(
        f"monitor: {'DRIFT' if drifted else 'no drift'}: {len(report.drifted)} of "
        f"{len(report.tested)} features drifted (share {report.share_drifted}, limit "
        f"{max_share}) over {report.current_rows} logged rows: "
        f"{', '.join(report.drifted) or 'none'}"
    )
    dropped = estimate_alert(performance, max_drop)
    print(
        f"monitor: {'ESTIMATED DROP' if dropped else 'estimate ok'}: estimated ROC-AUC "
        f"{performance['estimated_roc_auc']} (no label needed) against test ROC-AUC "
        f"{performance['test_roc_auc']} (limit: {max_drop} below)"
    )
    print(f"monitor: report {html_path}")
    return 1 if drifted or dropped else 0


def monitor(
    log_dir: Path | None = None,
    max_share: float | None = None,
    every_version: bool = False,
    since: str | None = None,
    report_dir: Path | None = None,
    max_drop: float | None = None,
) -> int:
    """``run`` with the defaults of ``baac monitor``: the service's ``PREDICTION_LOG_DIR``, the
    ``monitor.max_share_drifted`` and ``monitor.max_estimated_drop`` params, ``reports/live``."""
    if log_dir is None:
        log_dir = Path(os.environ.get("PREDICTION_LOG_DIR", str(DEFAULT_LOG_DIR)))
    if max_share is None:
        max_share = float(load_params().monitor.max_share_drifted)
    return run(log_dir, max_share, every_version, since, report_dir or LIVE_DRIFT.parent, max_drop)
