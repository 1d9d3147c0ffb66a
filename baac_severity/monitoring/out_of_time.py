"""Stage ``out-of-time``: how does a model trained on earlier data do on data that arrives later?

For each arrival chunk k from ``monitor.first_chunk`` on, a *light* model (the configured target,
features and model family, with its family's small budget ``model.light``) is fitted on the
training rows of chunks < k and scores every row of chunk k, none of which it has seen. Beside
the realized ROC-AUC, the ROC-AUC estimated from the probabilities alone, as live traffic would
allow before its labels arrive (``monitoring/estimate.py``, CBPE), with the calibration fitted on
the validation rows of chunks < k. Also the 2018 → 2024 transfer: fitted on the 2018 training
rows, scored on every 2024 row.

Writes ``plots/out_of_time.csv`` (every figure per chunk: what the Monitoring page and
``dvc plots show`` read) and the DVC metric ``metrics/out_of_time.json``, the headline only
(mean and worst ROC-AUC, the estimation's mean absolute error, the transfer), so that
``dvc exp show`` stays readable.

Incremental: each chunk's figures are cached in ``data/processed/monitor/backtest_cache/``
(a persistent DVC output, like the split registry) under a key made of everything that
determines them: the chunk, the model settings, the target, the feature columns and a hash of
the training, calibration and scored rows. When chunk 13 arrives, one new fit runs and the
figures of chunks 2-12 are read back byte for byte. The transfer model is cached the same way,
keyed by its training rows, and re-scores the 2024 rows (which grow) without a new fit.
The cache is hand-written rather than ``joblib.Memory``: joblib stores each call's duration and
time in the folder, a DVC output, which would change ``dvc.lock`` on every run.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from baac_severity.config import (
    BACKTEST_CACHE,
    OUT_OF_TIME_METRICS,
    OUT_OF_TIME_PLOT,
    TRAIN_METRICS,
)
from baac_severity.data.io import (
    atomic_path,
    read_json,
    remove_leftovers,
    write_json,
    write_text,
)
from baac_severity.modeling import evaluate
from baac_severity.modeling.train import TrainingData, load_training_data, make_model
from baac_severity.monitoring.estimate import estimate_roc_auc, fit_calibration

SOURCE_YEAR, TARGET_YEAR = 2018, 2024
FIGURES = ("roc_auc", "f1_weighted", "log_loss", "ece")
PLOT_COLUMNS = [
    "chunk",
    "roc_auc",
    "estimated_roc_auc",
    *FIGURES[1:],
    "base_rate",
    "rows",
    "train_rows",
    "test_roc_auc",
]
# Part of every cache key: a change of the estimation method invalidates the cached figures.
ESTIMATOR = "cbpe-isotonic-validation-of-earlier-chunks"


def light_model(params: DictConfig) -> dict[str, Any]:
    """The configured model with its family's budget ``model.light`` (fewer trees, fewer
    boosting iterations): the stage refits once per chunk, whatever the family."""
    config = OmegaConf.to_container(params.model, resolve=True)
    if not isinstance(config, dict):
        raise SystemExit(f"params.yaml: model must be a mapping, not {config!r}")
    settings = {str(key): value for key, value in config.items()}
    budget = settings.pop("light", None)
    if not isinstance(budget, dict):
        raise SystemExit(
            f"params.yaml: model {settings['name']!r} has no `light` budget "
            f"(conf/model/{settings['name']}.yaml): the out-of-time stage would refit the full "
            f"model once per chunk"
        )
    return {**settings, **{str(key): value for key, value in budget.items()}}


def fit_light_model(
    model_settings: dict[str, Any], x_train: pd.DataFrame, y_train: np.ndarray
) -> Any:
    """The one call into train.py's model factory: a fitted model with ``predict_proba``."""
    model = make_model(OmegaConf.create(model_settings))
    model.fit(x_train, y_train)
    return model


def class_probabilities(model: Any, frame: pd.DataFrame, classes: np.ndarray) -> np.ndarray:
    """``predict_proba`` with one column per class of ``classes``, in that order (a fold's
    training rows may lack a class: its column is 0)."""
    proba = model.predict_proba(frame)
    aligned = np.zeros((len(frame), len(classes)))
    for column, label in enumerate(model.classes_):
        aligned[:, int(np.searchsorted(classes, label))] = proba[:, column]
    return aligned


def figures(y: np.ndarray, proba: np.ndarray, data: TrainingData, train_rows: int) -> dict:
    """ROC-AUC, F1 (weighted), log loss, ECE, base rate (share of the last, most severe
    class) and rows of one scored set."""
    metrics = evaluate.classification_metrics(y, proba, data.classes, data.labels)
    return {
        **{name: metrics[name] for name in FIGURES},
        "base_rate": round(float(np.mean(y == data.classes[-1])), 6),
        "rows": len(y),
        "train_rows": train_rows,
    }


def rows_digest(frame: pd.DataFrame, target: np.ndarray) -> str:
    """A hash of rows: their feature values (column names included) and targets."""
    digest = hashlib.sha256(json.dumps(list(frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(np.ascontiguousarray(target, dtype=np.int64).tobytes())
    return digest.hexdigest()


def cache_key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Cache:
    """Cached figures and models, one file per key; entries this run did not use are removed
    at the end, so the folder holds exactly what the current inputs determine."""

    folder: Path
    fits: int = 0

    def __post_init__(self) -> None:
        self.used: set[str] = set()

    def path(self, name: str, key: str, suffix: str) -> Path:
        path = self.folder / f"{name}-{key[:20]}{suffix}"
        self.used.add(path.name)
        return path

    def prune(self) -> None:
        for path in self.folder.glob("*"):
            if path.name not in self.used:
                path.unlink()


def _fold(
    data: TrainingData, train: np.ndarray, scored: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    """Training and scored rows, without the features that have no value in training (such a
    column carries nothing, and gradient boosting refuses it)."""
    x_train = data.features[train]
    kept = x_train.columns[x_train.notna().any()]
    return x_train[kept], data.target[train], data.features.loc[scored, kept], data.target[scored]


def chunk_figures(
    data: TrainingData, chunk: int, settings: dict[str, Any], context: dict, cache: Cache
) -> dict | None:
    """Figures of chunk ``chunk``, from the cache or from one new fit; None without training
    rows or scored rows (e.g. road users before 2019). Beside the realized ROC-AUC, the one
    estimated from the probabilities alone (``monitoring/estimate.py``), calibrated on the
    validation rows of the same earlier chunks (none of which the model trained on)."""
    earlier = data.chunk < chunk
    train, calibration = earlier & (data.split == "train"), earlier & (data.split == "validation")
    scored = data.chunk == chunk
    if not train.any() or not scored.any():
        return None
    x_train, y_train, x_scored, y_scored = _fold(data, train, scored)
    x_calibration = data.features.loc[calibration, x_train.columns]
    y_calibration = data.target[calibration]
    key = cache_key(
        chunk=chunk,
        model=settings,
        **context,
        estimator=ESTIMATOR,
        train=rows_digest(x_train, y_train),
        calibration=rows_digest(x_calibration, y_calibration),
        scored=rows_digest(x_scored, y_scored),
    )
    path = cache.path(f"chunk-{chunk:04d}", key, ".json")
    if path.exists():
        return read_json(path)
    model = fit_light_model(settings, x_train, y_train)
    cache.fits += 1
    proba = class_probabilities(model, x_scored, data.classes)
    result = figures(y_scored, proba, data, len(y_train))
    result["estimated_roc_auc"] = estimated_roc_auc(
        model, proba, x_calibration, y_calibration, data
    )
    write_json(result, path)
    return result


def estimated_roc_auc(
    model: Any,
    proba: np.ndarray,
    x_calibration: pd.DataFrame,
    y_calibration: np.ndarray,
    data: TrainingData,
) -> float | None:
    """CBPE's estimate of the ROC-AUC of rows scored ``proba``, calibrated on the labelled rows
    ``x_calibration``; from the raw probabilities when they hold a single class or none."""
    calibration = None
    if len(np.unique(y_calibration)) > 1:
        calibration_proba = class_probabilities(model, x_calibration, data.classes)
        calibration = fit_calibration(calibration_proba, y_calibration, data.classes)
    return estimate_roc_auc(proba, data.classes, calibration)


def transfer_figures(
    data: TrainingData, settings: dict[str, Any], context: dict, cache: Cache
) -> dict | None:
    """Fitted on the 2018 training rows, scored on every 2024 row; None without either."""
    train = (data.split == "train") & (data.year == SOURCE_YEAR)
    scored = data.year == TARGET_YEAR
    if not train.any() or not scored.any():
        return None
    x_train, y_train, x_scored, y_scored = _fold(data, train, scored)
    key = cache_key(transfer=True, model=settings, **context, train=rows_digest(x_train, y_train))
    path = cache.path("transfer", key, ".joblib")
    if path.exists():
        model = joblib.load(path)
    else:
        model = fit_light_model(settings, x_train, y_train)
        cache.fits += 1
        with atomic_path(path, ".joblib") as tmp:
            joblib.dump(model, tmp, compress=3)
    proba = class_probabilities(model, x_scored, data.classes)
    return figures(y_scored, proba, data, len(y_train))


def summary(chunks: dict[int, dict], transfer: dict | None) -> dict:
    """The headline (the DVC metric): mean and worst realized ROC-AUC over the chunks, the mean
    absolute error of the estimated ROC-AUC, and the transfer's ROC-AUC."""
    headline: dict[str, Any] = {}
    scores = {k: f["roc_auc"] for k, f in chunks.items() if f["roc_auc"] is not None}
    if scores:
        worst = min(scores, key=lambda k: (scores[k], k))
        headline |= {
            "mean_roc_auc": round(float(np.mean(list(scores.values()))), 6),
            "worst_roc_auc": scores[worst],
            "worst_chunk": worst,
        }
    errors = [
        abs(f["estimated_roc_auc"] - f["roc_auc"])
        for f in chunks.values()
        if f["roc_auc"] is not None and f.get("estimated_roc_auc") is not None
    ]
    if errors:
        headline["estimate_mae"] = round(float(np.mean(errors)), 6)
    if transfer is not None:
        headline["transfer_roc_auc"] = transfer["roc_auc"]
    return headline


def progress(chunks: list[int]) -> tqdm:
    """A progress bar of the refits on a terminal (stderr); silent in logs and under DVC's
    captured output."""
    return tqdm(
        chunks, desc="out-of-time", unit="chunk", file=sys.stderr, disable=not sys.stderr.isatty()
    )


def run(params: DictConfig, cache_folder: Path = BACKTEST_CACHE) -> dict:
    remove_leftovers(cache_folder, OUT_OF_TIME_METRICS, OUT_OF_TIME_PLOT)
    cache_folder.mkdir(parents=True, exist_ok=True)
    groups = list(params.features.groups)
    data = load_training_data(params.target, groups)
    settings = light_model(params)
    context = {"target": OmegaConf.to_container(params.target, resolve=True), "groups": groups}
    cache = Cache(cache_folder)
    chunks = {}
    arrivals = sorted(int(c) for c in np.unique(data.chunk) if c >= params.monitor.first_chunk)
    for k in progress(arrivals):
        result = chunk_figures(data, k, settings, context, cache)
        if result is not None:
            chunks[k] = result
            tqdm.write(  # above the progress bar, which print() would break
                f"out-of-time: chunk {k}: roc_auc {result['roc_auc']}, estimated "
                f"{result['estimated_roc_auc']} ({result['rows']} rows)"
            )
    transfer = transfer_figures(data, settings, context, cache)
    cache.prune()
    if transfer is not None:
        print(
            f"out-of-time: 2018 -> 2024 transfer: roc_auc {transfer['roc_auc']}, f1_weighted "
            f"{transfer['f1_weighted']}, ece {transfer['ece']}, {transfer['rows']} rows"
        )
    metrics = summary(chunks, transfer)
    write_json({"out_of_time": metrics}, OUT_OF_TIME_METRICS)
    test_roc_auc = read_json(TRAIN_METRICS, default={}).get("test", {}).get("roc_auc")
    plot = pd.DataFrame(
        [{"chunk": k, **f, "test_roc_auc": test_roc_auc} for k, f in chunks.items()],
        columns=PLOT_COLUMNS,
    )
    write_text(plot.to_csv(index=False), OUT_OF_TIME_PLOT)
    print(
        f"out-of-time: {cache.fits} new fit(s), {len(chunks)} chunk(s) evaluated; light model "
        f"{settings}; estimated ROC-AUC mean absolute error {metrics.get('estimate_mae')}"
    )
    return metrics
