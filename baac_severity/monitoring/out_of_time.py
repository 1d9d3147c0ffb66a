"""Stage ``out-of-time``: how does a model trained on earlier data do on data that arrives later?

For each arrival chunk k from ``monitor.first_chunk`` on, a model with the configured target,
features and model (a forest gets ``monitor.n_estimators`` trees) is fitted on the training rows
of chunks < k and scores every row of chunk k, none of which it has seen. Also the 2018 → 2024
transfer: fitted on the 2018 training rows, scored on every 2024 row. Writes
``metrics/out_of_time.json`` (``out_of_time.chunk_NNNN.*``, a summary with the in-sample test
ROC-AUC of ``metrics/train.json`` for reference, ``out_of_time.transfer_2018_2024``) and
``plots/out_of_time.csv``.

Incremental: each chunk's figures are cached in ``data/processed/monitor/backtest_cache/``
(a persistent DVC output, like the split registry) under a key made of everything that
determines them: the chunk, the model settings, the target, the feature columns and a hash of
the training rows and of the scored rows. When chunk 13 arrives, one new fit runs and the
figures of chunks 2-12 are read back byte for byte. The transfer model is cached the same way,
keyed by its training rows, and re-scores the 2024 rows (which grow) without a new fit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from baac_severity.config import (
    BACKTEST_CACHE,
    OUT_OF_TIME_METRICS,
    OUT_OF_TIME_PLOT,
    TRAIN_METRICS,
    chunk_key,
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

SOURCE_YEAR, TARGET_YEAR = 2018, 2024
FIGURES = ("roc_auc", "f1_weighted", "log_loss", "ece")
# Every key of the DVC metric is a `dvc exp show` column, and DVC 3 collapses the table from the
# right: past ~110 columns even the first metric (validation.roc_auc) is cut at 160 characters.
# So the metric keeps the ROC-AUC per chunk (and a few transfer figures); every figure of every
# chunk is in the plot file, which `dvc plots show` and the dashboard's Monitoring page read.
METRIC_FIGURES = ("roc_auc",)
TRANSFER_FIGURES = ("roc_auc", "ece", "rows")
PLOT_COLUMNS = ["chunk", *FIGURES, "base_rate", "rows", "train_rows", "test_roc_auc"]


def light_model(params: DictConfig) -> dict[str, Any]:
    """The configured model, with ``monitor.n_estimators`` trees for a forest (the stage
    refits once per chunk); other models as configured."""
    config = OmegaConf.to_container(params.model, resolve=True)
    if not isinstance(config, dict):
        raise SystemExit(f"params.yaml: model must be a mapping, not {config!r}")
    settings = {str(key): value for key, value in config.items()}
    if "n_estimators" in settings:
        settings["n_estimators"] = int(params.monitor.n_estimators)
    return settings


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
    rows or scored rows (e.g. road users before 2019)."""
    train = (data.split == "train") & (data.chunk < chunk)
    scored = data.chunk == chunk
    if not train.any() or not scored.any():
        return None
    x_train, y_train, x_scored, y_scored = _fold(data, train, scored)
    key = cache_key(
        chunk=chunk,
        model=settings,
        **context,
        train=rows_digest(x_train, y_train),
        scored=rows_digest(x_scored, y_scored),
    )
    path = cache.path(f"chunk-{chunk:04d}", key, ".json")
    if path.exists():
        return read_json(path)
    model = fit_light_model(settings, x_train, y_train)
    cache.fits += 1
    result = figures(
        y_scored, class_probabilities(model, x_scored, data.classes), data, len(y_train)
    )
    write_json(result, path)
    return result


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


def summary(chunks: dict[int, dict], test_roc_auc: float | None) -> dict:
    scores = {k: f["roc_auc"] for k, f in chunks.items() if f["roc_auc"] is not None}
    if not scores:
        return {"test_roc_auc": test_roc_auc}
    worst = min(scores, key=lambda k: (scores[k], k))
    return {
        "mean_roc_auc": round(float(np.mean(list(scores.values()))), 6),
        "worst_chunk": worst,
        "worst_roc_auc": scores[worst],
        "test_roc_auc": test_roc_auc,
    }


def run(params: DictConfig, cache_folder: Path = BACKTEST_CACHE) -> dict:
    remove_leftovers(cache_folder, OUT_OF_TIME_METRICS, OUT_OF_TIME_PLOT)
    cache_folder.mkdir(parents=True, exist_ok=True)
    groups = list(params.features.groups)
    data = load_training_data(params.target, groups)
    settings = light_model(params)
    context = {"target": OmegaConf.to_container(params.target, resolve=True), "groups": groups}
    cache = Cache(cache_folder)
    chunks = {}
    for k in sorted(int(c) for c in np.unique(data.chunk) if c >= params.monitor.first_chunk):
        result = chunk_figures(data, k, settings, context, cache)
        if result is not None:
            chunks[k] = result
            print(f"out-of-time: chunk {k}: roc_auc {result['roc_auc']} ({result['rows']} rows)")
    transfer = transfer_figures(data, settings, context, cache)
    cache.prune()
    test_roc_auc = read_json(TRAIN_METRICS, default={}).get("test", {}).get("roc_auc")
    metrics: dict = {
        "model": {key: settings[key] for key in ("name", "n_estimators") if key in settings},
        **{chunk_key(k): {n: f[n] for n in METRIC_FIGURES} for k, f in chunks.items()},
        "summary": summary(chunks, test_roc_auc),
    }
    if transfer is not None:
        metrics["transfer_2018_2024"] = {n: transfer[n] for n in TRANSFER_FIGURES}
        print(
            f"out-of-time: 2018 -> 2024 transfer: roc_auc {transfer['roc_auc']}, f1_weighted "
            f"{transfer['f1_weighted']}, ece {transfer['ece']}, {transfer['rows']} rows"
        )
    write_json({"out_of_time": metrics}, OUT_OF_TIME_METRICS)
    plot = pd.DataFrame(
        [{"chunk": k, **f, "test_roc_auc": test_roc_auc} for k, f in chunks.items()],
        columns=PLOT_COLUMNS,
    )
    write_text(plot.to_csv(index=False), OUT_OF_TIME_PLOT)
    print(f"out-of-time: {cache.fits} new fit(s), {len(chunks)} chunk(s) evaluated")
    return metrics
