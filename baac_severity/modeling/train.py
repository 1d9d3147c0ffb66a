"""Stage ``train``: fit the configured model, evaluate it, and write model, metrics and plots.

Fits on ``train`` rows only; reports on ``validation`` and ``test`` (and on test rows per data
year). Params: ``target`` (severe | severity | grav), ``model`` (random_forest |
hist_gradient_boosting), ``features.groups``. Each run is also tracked in MLflow.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import jinja2
import matplotlib

matplotlib.use("Agg")  # headless: the stage runs in CI and in DVC queue workers
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import get_scorer
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from tqdm import tqdm

from baac_severity.config import (
    DATA_SUMMARY,
    DATASET,
    DATASET_USERS,
    EVALUATION,
    LOGS_DIR,
    MODEL_CARD,
    MODEL_FILE,
    MODEL_INFO,
    PLOTS_DIR,
    PREDICTIONS_FILE,
    SCORE_METRICS,
    TRAIN_METRICS,
)
from baac_severity.data import schema
from baac_severity.data.io import read_json, write_json, write_parquet, write_text
from baac_severity.features import ACCIDENT, USER, build_features, feature_schema, location_encoder
from baac_severity.modeling import evaluate, tracking
from baac_severity.modeling.model_store import ModelBundle, save_model

log = logging.getLogger("baac_severity.modeling.train")
MODELS = {
    # Every core: a machine's core count is not a parameter of the experiment, and the trees
    # are the same whatever the threads (each has its own seed).
    "random_forest": partial(RandomForestClassifier, n_jobs=-1),
    "hist_gradient_boosting": HistGradientBoostingClassifier,
}
CALIBRATIONS = ("none", "isotonic", "sigmoid")
CALIBRATION_FOLDS = 5
DECISIONS = ("f1_macro", "none")
PROGRESS_STEPS = 10  # a forest is grown in this many batches of trees, one log line each
IMPORTANCE_SAMPLE = 2000  # validation rows; with 2 repeats about a fifth of the fit time
IMPORTANCE_REPEATS = 2
TOP_IMPORTANCES = 20  # features drawn in plots/importance.png, as in the DVC plot
TARGET_LABELS = {
    "severe": schema.SEVERE_LABELS,
    "severity": schema.SEVERITY_LABELS,
    "grav": schema.SEVERITY_LABELS,
}


@dataclass
class TrainingData:
    features: pd.DataFrame
    target: np.ndarray
    split: np.ndarray
    year: np.ndarray
    classes: np.ndarray
    labels: list[str]
    chunk: np.ndarray  # arrival chunk of each row (of its accident for a user-level target)
    keys: pd.DataFrame  # num_acc (and user_id for a road-user target) of each row

    def part(self, name: str) -> tuple[pd.DataFrame, np.ndarray]:
        rows = self.split == name
        return self.features[rows], self.target[rows]


def _years_filter(frame: pd.DataFrame, years) -> pd.DataFrame:
    return frame if not years else frame[frame["an"].isin(list(years))]


def load_training_data(target: DictConfig, groups: list[str]) -> TrainingData:
    accidents = pd.read_parquet(DATASET)
    if target.unit == USER:
        users = _years_filter(pd.read_parquet(DATASET_USERS), target.get("years"))
        users = users[users["grav"].notna()].reset_index(drop=True)
        features = build_features(accidents, groups, USER, users)
        values = users["grav"].map(schema.GRAV_TO_SEVERITY).to_numpy(dtype=int)
        chunks = accidents.set_index(schema.KEY)["arrival_chunk"]
        frame = users.assign(arrival_chunk=users[schema.KEY].map(chunks))
    elif target.unit == ACCIDENT:
        frame = _years_filter(accidents, target.get("years"))
        frame = frame[frame[target.name].notna()].reset_index(drop=True)
        features = build_features(frame, groups)
        values = frame[target.name].to_numpy(dtype=int)
    else:
        raise SystemExit(f"target.unit must be {ACCIDENT!r} or {USER!r}, not {target.unit!r}")
    classes = np.unique(values)
    labels = [TARGET_LABELS[target.name][c] for c in classes]
    return TrainingData(
        features,
        values,
        frame["dataset_split"].to_numpy(dtype=str),
        frame["an"].to_numpy(dtype=int),
        classes,
        labels,
        frame["arrival_chunk"].to_numpy(dtype=int),
        frame[[schema.KEY, schema.USER_KEY] if target.unit == USER else [schema.KEY]],
    )


def drop_empty_features(data: TrainingData) -> list[str]:
    """Drop features with no value in the training rows (e.g. `col` when training on 2018
    only): they carry nothing, and gradient boosting refuses an all-missing column."""
    train_rows = data.features[data.split == "train"]
    empty = [column for column in train_rows if train_rows[column].isna().all()]
    data.features = data.features.drop(columns=empty)
    return empty


def make_model(config: DictConfig) -> Pipeline:
    """The estimator that params ``model`` describe, fitted-able on ``build_features`` frames.

    A ``Pipeline`` of two steps: ``encode`` (``features.location_encoder``: the out-of-fold
    target encodings of the location keys, then every other column as is) and ``model`` (the
    estimator; with ``calibration`` isotonic or sigmoid, a ``CalibratedClassifierCV`` that
    cross-fits the calibration on the training rows and keeps one estimator refitted on all
    of them). ``model["encode"].transform(frame)`` is the matrix the estimator receives.
    """
    settings = cast(dict[str, Any], OmegaConf.to_container(config, resolve=True))
    name = settings.pop("name")
    calibration = settings.pop("calibration", "none")
    settings.pop("light", None)  # the out-of-time stage's budget, not a hyperparameter
    if name not in MODELS:
        raise SystemExit(f"model.name must be one of {sorted(MODELS)}, not {name!r}")
    if calibration not in CALIBRATIONS:
        raise SystemExit(f"model.calibration must be one of {CALIBRATIONS}, not {calibration!r}")
    seed = settings.get("random_state")
    estimator = MODELS[name](**settings)
    if calibration != "none":
        folds = StratifiedKFold(CALIBRATION_FOLDS, shuffle=True, random_state=seed)
        estimator = CalibratedClassifierCV(estimator, method=calibration, cv=folds, ensemble=False)
    return Pipeline([("encode", location_encoder(seed)), ("model", estimator)])


def fit_model(model: Pipeline, features: pd.DataFrame, target: np.ndarray) -> Pipeline:
    """``model.fit``, logging its progress: a forest grows in ``PROGRESS_STEPS`` batches of
    trees (warm start draws the same tree seeds as one fit, so the forest is the same)."""
    started = time.perf_counter()
    encoded = model["encode"].fit_transform(features, target)
    log.info("location encodings fitted (%.1f s)", time.perf_counter() - started)
    estimator = model["model"]
    if not isinstance(estimator, RandomForestClassifier):
        estimator.fit(encoded, target)
        log.info("%s fitted (%.1f s)", type(estimator).__name__, time.perf_counter() - started)
        return model
    total = estimator.n_estimators
    for step in range(1, PROGRESS_STEPS + 1):
        trees = max(1, round(total * step / PROGRESS_STEPS))
        estimator.set_params(n_estimators=trees, warm_start=True).fit(encoded, target)
        log.info("trees %d/%d fitted (%.1f s)", trees, total, time.perf_counter() - started)
    estimator.set_params(warm_start=False)
    return model


def feature_importance(model: Pipeline, data: TrainingData) -> pd.DataFrame:
    """Permutation importance of the input columns, for every model family alike: the drop
    of validation ROC-AUC when a column is shuffled, on the same sample of validation rows
    (so that runs on one snapshot compare; impurity importance exists for forests only and
    is not on the same scale)."""
    x_val, y_val = data.part("validation")
    sample = np.random.default_rng(0).permutation(len(x_val))[:IMPORTANCE_SAMPLE]
    scoring = "roc_auc" if len(data.classes) == 2 else "roc_auc_ovr_weighted"
    scorer = get_scorer(scoring)
    calls = 1 + IMPORTANCE_REPEATS * x_val.shape[1]  # the baseline, then each permutation
    # A bar on a terminal only (disable=None): minutes for a slow model, silent in logs.
    with tqdm(total=calls, desc="permutation importance", unit="score", disable=None) as bar:

        def counted(estimator: Pipeline, x: pd.DataFrame, y: np.ndarray) -> float:
            bar.update()
            return float(scorer(estimator, x, y))

        result = permutation_importance(
            model,
            x_val.iloc[sample],
            y_val[sample],
            scoring=counted,
            n_repeats=IMPORTANCE_REPEATS,
            random_state=0,
            n_jobs=1,
        )
    # The method, not the row count: runs on other snapshots score other validation rows
    # (at most IMPORTANCE_SAMPLE), and their importances still compare.
    method = f"permutation ({scoring} drop on validation rows)"
    table = pd.DataFrame(
        {"feature": data.features.columns, "importance": np.round(result.importances_mean, 6)}
    ).assign(method=method)
    return table.sort_values(["importance", "feature"], ascending=[False, True], kind="stable")


def plot_importance(importance: pd.DataFrame, target: Path, top: int = TOP_IMPORTANCES) -> None:
    shown = importance.head(top).iloc[::-1]
    figure, axis = plt.subplots(figsize=(7, 0.28 * len(shown) + 1))
    axis.barh(shown["feature"], shown["importance"], color="#3b6ea8")
    axis.set_xlabel(importance["method"].iloc[0])
    axis.set_title(f"Top {len(shown)} features")
    figure.tight_layout()
    figure.savefig(target, dpi=90, metadata={"Software": None})  # no version/date metadata
    plt.close(figure)


def evaluate_model(
    model: Pipeline, data: TrainingData, weights: np.ndarray | None = None
) -> tuple[dict, dict[str, np.ndarray]]:
    """Metrics of the validation and test rows (and of the test rows per year), the predicted
    class being the largest of the probabilities times ``weights``; and each split's raw
    probabilities."""
    results, probabilities = {}, {}
    for split in ("validation", "test"):
        features, target = data.part(split)
        proba = model.predict_proba(features)
        results[split] = evaluate.classification_metrics(
            target, proba, data.classes, data.labels, weights
        )
        probabilities[split] = proba
    test_years = data.year[data.split == "test"]
    _, test_target = data.part("test")
    results["test_by_year"] = {
        str(year): evaluate.classification_metrics(
            test_target[test_years == year],
            probabilities["test"][test_years == year],
            data.classes,
            data.labels,
            weights,
        )
        for year in np.unique(test_years)
    }
    return results, probabilities


def write_predictions(data: TrainingData, probas: dict[str, np.ndarray]) -> None:
    """Per-row validation and test probabilities, for paired comparisons between models."""
    rows = [np.flatnonzero(data.split == split) for split in probas]
    order = np.concatenate(rows)
    table = evaluate.predictions_table(
        data.keys.iloc[order],
        data.split[order],
        np.searchsorted(data.classes, data.target[order]),
        np.concatenate(list(probas.values())),
        data.labels,
    )
    write_parquet(table, PREDICTIONS_FILE)


def decision_weights(
    decision: DictConfig, model: Pipeline, data: TrainingData
) -> np.ndarray | None:
    """Per-class probability weights chosen on the validation rows (``decision.optimise``);
    None for a binary target, whose calibrated probabilities are decided at 0.5."""
    if decision.optimise not in DECISIONS:
        raise SystemExit(f"decision.optimise must be one of {DECISIONS}, not {decision.optimise!r}")
    if decision.optimise == "none" or len(data.classes) < 3:
        return None
    features, target = data.part("validation")
    proba = model.predict_proba(features)
    weights = evaluate.macro_f1_weights(np.searchsorted(data.classes, target), proba)
    log.info("decision weights (validation macro F1): %s", np.round(weights, 4).tolist())
    return weights


def write_plots(
    data: TrainingData,
    test_proba: np.ndarray,
    importance: pd.DataFrame,
    weights: np.ndarray | None,
) -> None:
    _, y_test = data.part("test")
    args = (y_test, test_proba, data.classes, data.labels)
    PLOTS_DIR.mkdir(exist_ok=True)
    write_text(evaluate.roc_points(*args).to_csv(index=False), PLOTS_DIR / "roc.csv")
    pr = evaluate.precision_recall_points(*args)
    write_text(pr.to_csv(index=False), PLOTS_DIR / "precision_recall.csv")
    confusion = evaluate.confusion_counts(*args, weights)
    write_text(confusion.to_csv(index=False), PLOTS_DIR / "confusion.csv")
    reliability = evaluate.reliability_points(np.searchsorted(data.classes, y_test), test_proba)
    write_text(reliability.to_csv(index=False), PLOTS_DIR / "calibration.csv")
    write_text(importance.to_csv(index=False), PLOTS_DIR / "importance.csv")
    plot_importance(importance, PLOTS_DIR / "importance.png")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_snapshot(data: TrainingData) -> dict:
    summary = read_json(DATA_SUMMARY, default={})
    return {
        "dataset_sha256": file_sha256(DATASET),
        "users_sha256": file_sha256(DATASET_USERS),
        "chunks_ingested": summary.get("chunks_ingested"),
        "chunks_total": summary.get("chunks_total"),
        "as_of": summary.get("data_as_of"),
        "rows": {
            split: int((data.split == split).sum()) for split in ("train", "validation", "test")
        },
        "years": sorted(int(y) for y in np.unique(data.year)),
        "class_balance": {
            label: round(float((data.target == c).mean()), 4)
            for c, label in zip(data.classes, data.labels, strict=True)
        },
    }


def headline_metrics(metrics: dict) -> tuple[dict, dict]:
    """The two metrics files of the train stage: what users compare.

    Every key of a DVC metrics file is a column of ``dvc exp show``, before any param, and a
    narrow terminal keeps only the first ones. ``metrics/train.json`` (the DVC metric) holds
    what decides (validation ROC-AUC), what is reported (test ROC-AUC) and the model size;
    ``metrics/scores.json`` (a plain output, read from each commit by the dashboard and the
    review) the other headline scores and calibration. The
    rest (accuracy, PR-AUC, precision/recall, per class, per year) is in
    ``model/evaluation.json``.
    """
    splits = ("validation", "test")
    first = {s: {"roc_auc": metrics[s]["roc_auc"]} for s in splits}
    rest = (*evaluate.HEADLINE, *evaluate.CALIBRATION)
    scores = {s: {k: metrics[s][k] for k in rest if k != "roc_auc"} for s in splits}
    return {**first, "model": {"size_mb": metrics["model"]["size_mb"]}}, scores


def model_card(info: dict, metrics: dict) -> str:
    """``model/model_card.md``: the template ``templates/model_card.md.j2`` filled in."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("baac_severity.modeling"),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,  # a missing key fails the stage, not a blank card
        autoescape=False,  # Markdown, not HTML
    )
    return environment.get_template("model_card.md.j2").render(info=info, metrics=metrics)


def configure_logging() -> None:
    LOGS_DIR.mkdir(exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    for handler in (logging.FileHandler(LOGS_DIR / "train.log"), logging.StreamHandler()):
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def log_to_mlflow(info: dict, metrics: dict, params: DictConfig, bundle: ModelBundle, sample):
    def log_run(mlflow) -> None:
        from mlflow.models import infer_signature

        flat = pd.json_normalize(OmegaConf.to_container(params, resolve=True), sep=".")
        mlflow.log_params({k: str(v) for k, v in flat.iloc[0].items()})
        for split in ("validation", "test"):
            mlflow.log_metrics(
                {f"{split}.{k}": v for k, v in metrics[split].items() if isinstance(v, float)}
            )
        mlflow.set_tags(
            {
                "data.dataset_sha256": info["data_snapshot"]["dataset_sha256"],
                "data.chunks_ingested": str(info["data_snapshot"]["chunks_ingested"]),
                "model.size_mb": str(info["model_size_mb"]),
                # How `make promote` finds this run again: the model file's hash (the run id
                # is random, so no DVC output of this stage may carry it) and the experiment.
                "model.sha256": file_sha256(MODEL_FILE),
                "dvc.experiment": os.environ.get("DVC_EXP_NAME", "workspace"),
            }
        )
        for artifact in (MODEL_INFO, MODEL_CARD, PLOTS_DIR / "importance.png", EVALUATION):
            mlflow.log_artifact(str(artifact))
        signature = infer_signature(sample, bundle.model.predict_proba(sample))
        mlflow.sklearn.log_model(
            bundle.model,
            name="model",
            signature=signature,
            input_example=sample.head(3),
            # Our own pickle, like model.joblib (skops loads it only with sklearn's Tree trusted).
            serialization_format="cloudpickle",
            # Explicit requirements skip MLflow's slow environment inference.
            pip_requirements=[f"scikit-learn=={bundle.sklearn_version}", "pandas", "numpy"],
        )

    return tracking.track(log_run)


def train(params: DictConfig) -> dict:
    groups = list(params.features.groups)
    data = load_training_data(params.target, groups)
    dropped = drop_empty_features(data)
    if dropped:
        log.info("dropped features without any value in train: %s", ", ".join(dropped))
    model = make_model(params.model)
    x_train, y_train = data.part("train")
    log.info("fitting %s on %d rows x %d features", params.model.name, *x_train.shape)
    started = time.perf_counter()
    fit_model(model, x_train, y_train)
    fit_seconds = time.perf_counter() - started
    weights = decision_weights(params.decision, model, data)
    metrics, probabilities = evaluate_model(model, data, weights)
    started = time.perf_counter()
    importance = feature_importance(model, data)
    log.info(
        "permutation importance %.1f s (fit %.1f s)", time.perf_counter() - started, fit_seconds
    )
    bundle = ModelBundle(
        model=model,
        features=list(data.features.columns),
        classes=data.classes,
        labels=data.labels,
        target=params.target.name,
        unit=params.target.unit,
        feature_groups=groups,
        feature_schema=feature_schema(
            data.features.dtypes.astype(str).to_dict(), params.target.unit, groups
        ),
        decision_weights=weights,
    )
    size = save_model(model, MODEL_FILE)
    metrics["model"] = {"size_mb": round(size / 1e6, 2), "features": len(bundle.features)}
    model_metrics, score_metrics = headline_metrics(metrics)
    write_json(model_metrics, TRAIN_METRICS, sort_keys=False)
    write_json(score_metrics, SCORE_METRICS, sort_keys=False)
    write_json(metrics, EVALUATION)
    write_plots(data, probabilities["test"], importance, weights)
    write_predictions(data, probabilities)
    info = {
        **bundle.metadata(),  # what loading the model needs (model_store.USAGE_KEYS)
        "model_name": params.model.name,
        "model_size_mb": round(size / 1e6, 2),
        "params": OmegaConf.to_container(params, resolve=True),
        "data_snapshot": data_snapshot(data),
        "metrics": {"validation": metrics["validation"], "test": metrics["test"]},
    }
    write_json(info, MODEL_INFO)
    write_text(model_card(info, metrics), MODEL_CARD)
    run_id = log_to_mlflow(info, metrics, params, bundle, x_train.head(50))
    test = metrics["test"]
    log.info(
        "run=%s fit %.1f s; model %.1f MB; test roc_auc=%s f1_weighted=%s f1_macro=%s "
        "accuracy=%s precision_weighted=%s recall_weighted=%s",
        run_id,
        fit_seconds,
        size / 1e6,
        test["roc_auc"],
        test["f1_weighted"],
        test["f1_macro"],
        test["accuracy"],
        test["precision_weighted"],
        test["recall_weighted"],
    )
    return metrics


def print_test_metrics(metrics: dict) -> None:
    print(f"test metrics ({metrics['test']['rows']} rows, model {metrics['model']['size_mb']} MB):")
    names = ("roc_auc", "pr_auc", "accuracy", "f1_weighted", "f1_macro", "log_loss", "ece", "brier")
    for name in names:
        print(f"  test.{name:<12} {metrics['test'][name]}")
