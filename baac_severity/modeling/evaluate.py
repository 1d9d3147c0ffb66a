"""Classification metrics and curves for binary and multiclass targets alike."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

CURVE_GRID = np.linspace(0.0, 1.0, 101)
# The metrics users compare across experiments, for validation and test: ROC-AUC in
# metrics/train.json (a DVC metric: a ``dvc exp show`` column), the rest in metrics/scores.json
# (a plain output the dashboard and the review read from each commit), in this order.
HEADLINE = ("roc_auc", "f1_macro", "f1_weighted", "log_loss")
# Calibration of the probabilities the service returns: in metrics/scores.json after HEADLINE.
CALIBRATION = ("ece", "brier")
CALIBRATION_BINS = 15
# The one list of metrics where lower is better, matched on the end of a metric's last dotted
# part (test.log_loss, validation.brier, model.size_mb); every other metric is better higher.
# The gate, the bootstrap verdicts, the review and the dashboard all rank with it.
LOWER_IS_BETTER = ("loss", "error", "ece", "brier", "size_mb")
# Coordinate search of the decision weights: candidate weights of a class (the first class
# keeps 1), and passes over the classes.
WEIGHT_GRID = np.geomspace(1 / 16, 16, 97)
WEIGHT_PASSES = 3

# The columns of model/predictions.parquet besides the keys (decisions.compare reads them).
SPLIT, TARGET, PROBA_PREFIX = "split", "target", "proba."


def higher_is_better(metric: str) -> bool:
    return not metric.rsplit(".", 1)[-1].endswith(LOWER_IS_BETTER)


def _rounded(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 6)


def _auc_scores(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict:
    present = np.unique(y_true)
    if len(present) < 2:  # AUCs are undefined on a single class (e.g. a tiny subset)
        return {"roc_auc": None, "pr_auc": None}
    if len(classes) == 2:
        positive = y_true == classes[1]
        return {
            "roc_auc": skm.roc_auc_score(positive, proba[:, 1]),
            "pr_auc": skm.average_precision_score(positive, proba[:, 1]),
        }
    columns = np.isin(classes, present)
    scores = proba[:, columns] / proba[:, columns].sum(axis=1, keepdims=True)
    roc = skm.roc_auc_score(
        y_true, scores, multi_class="ovr", average="weighted", labels=classes[columns]
    )
    one_hot = (y_true[:, None] == classes[columns][None, :]).astype(int)
    pr = skm.average_precision_score(one_hot, scores, average="weighted")
    return {"roc_auc": roc, "pr_auc": pr}


def _confidence(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probability, outcome) pairs of a calibration check: the positive class's probability
    and whether the row is positive (binary); the top label's probability and whether it is
    the true class (multiclass)."""
    p, y = np.asarray(p, dtype=float), np.asarray(y)
    if p.ndim == 2 and p.shape[1] == 2:
        p = p[:, 1]
    if p.ndim == 1:
        return p, (y == 1).astype(float)
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(float)


def _bins(confidence: np.ndarray, bins: int) -> np.ndarray:
    # Equal-width bins [0, 1/bins), ..., [(bins-1)/bins, 1]: a probability of 1 is in the last.
    return np.minimum((confidence * bins).astype(int), bins - 1)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error over ``bins`` equal-width bins: the row-weighted mean gap
    between the mean probability and the observed frequency of each bin.

    ``y`` holds class indices (0/1 when binary); ``p`` the positive class's probabilities
    (binary, or a two-column matrix) or a rows × classes matrix, whose top label is checked.
    """
    confidence, outcome = _confidence(y, p)
    where = _bins(confidence, bins)
    gap = np.bincount(where, confidence, bins) - np.bincount(where, outcome, bins)
    return float(np.abs(gap).sum() / max(len(confidence), 1))


def brier_score(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean squared error of the probabilities: of the positive class when binary; summed
    over the classes (the multiclass Brier score, 0 to 2) otherwise. ``y``: class indices."""
    y = np.asarray(y)
    if proba.shape[1] == 2:
        return float(np.mean((proba[:, 1] - (y == 1)) ** 2))
    one_hot = y[:, None] == np.arange(proba.shape[1])[None, :]
    return float(np.mean(((proba - one_hot) ** 2).sum(axis=1)))


def reliability_points(
    y: np.ndarray, proba: np.ndarray, bins: int = CALIBRATION_BINS
) -> pd.DataFrame:
    """The reliability diagram (``y``: class indices): per non-empty equal-width bin, the mean
    probability and the observed frequency of what ``expected_calibration_error`` checks."""
    confidence, outcome = _confidence(y, proba)
    observed, predicted = calibration_curve(outcome, confidence, n_bins=bins, strategy="uniform")
    return pd.DataFrame({"predicted": predicted, "observed": observed}).round(6)


def predicted_indices(proba: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The decided class (column index) of each row: the largest probability times its class
    weight (the raw probability without weights)."""
    return np.argmax(proba if weights is None else proba * weights, axis=1)


def _macro_f1(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    confusion = np.bincount(y * n_classes + predicted, minlength=n_classes**2)
    confusion = confusion.reshape(n_classes, n_classes)
    hits = np.diag(confusion)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)
    f1 = np.divide(2 * hits, denominator, out=np.zeros(n_classes), where=denominator > 0)
    return float(np.mean(f1))


def macro_f1_weights(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Per-class probability weights that maximise the macro F1 of ``predicted_indices`` on
    (``y`` class indices, ``proba``): coordinate search over ``WEIGHT_GRID``, the first class
    fixed at 1. Deterministic; ties keep the smaller change (the first best candidate)."""
    n_classes = proba.shape[1]
    weights = np.ones(n_classes)
    best = _macro_f1(y, predicted_indices(proba, weights), n_classes)
    for _ in range(WEIGHT_PASSES):
        for k in range(1, n_classes):
            for candidate in WEIGHT_GRID:
                trial = weights.copy()
                trial[k] = candidate
                score = _macro_f1(y, predicted_indices(proba, trial), n_classes)
                if score > best:
                    best, weights = score, trial
    return weights


def classification_metrics(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    labels: list[str],
    weights: np.ndarray | None = None,
) -> dict:
    """Accuracy, precision/recall/F1 (weighted, macro, per class) of the classes decided with
    ``weights``; ROC-AUC, PR-AUC, log loss, expected calibration error and Brier score of
    the probabilities."""
    y_true = np.asarray(y_true)
    predicted = classes[predicted_indices(proba, weights)]
    result: dict = {"rows": len(y_true), "accuracy": skm.accuracy_score(y_true, predicted)}
    for average in ("weighted", "macro"):
        precision, recall, f1, _ = skm.precision_recall_fscore_support(
            y_true, predicted, labels=classes, average=average, zero_division=0
        )
        result |= {
            f"precision_{average}": precision,
            f"recall_{average}": recall,
            f"f1_{average}": f1,
        }
    result |= _auc_scores(y_true, proba, classes)
    result["log_loss"] = skm.log_loss(y_true, np.clip(proba, 1e-15, 1), labels=classes)
    indices = np.searchsorted(classes, y_true)
    result["ece"] = expected_calibration_error(indices, proba, CALIBRATION_BINS)
    result["brier"] = brier_score(indices, proba)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, predicted, labels=classes, zero_division=0
    )
    result["per_class"] = {
        label: {
            "precision": _rounded(precision[i]),
            "recall": _rounded(recall[i]),
            "f1": _rounded(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    return {k: (_rounded(v) if not isinstance(v, dict | int) else v) for k, v in result.items()}


def _curve_targets(y_true: np.ndarray, classes: np.ndarray, labels: list[str]):
    """(label, is_positive, class column) pairs: the positive class only when binary."""
    if len(classes) == 2:
        return [(labels[1], y_true == classes[1], 1)]
    return [(labels[i], y_true == c, i) for i, c in enumerate(classes) if (y_true == c).any()]


def _curves(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    labels: list[str],
    axes: tuple[str, str],
    on_grid: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> pd.DataFrame:
    """One curve per class, sampled on ``CURVE_GRID`` (small, stable plot files)."""
    x_name, y_name = axes
    frames = [
        pd.DataFrame({"class": label, x_name: CURVE_GRID, y_name: on_grid(positive, proba[:, i])})
        for label, positive, i in _curve_targets(y_true, classes, labels)
    ]
    return pd.concat(frames, ignore_index=True).round(6)


def _tpr_on_grid(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    fpr, tpr, _ = skm.roc_curve(positive, scores)
    return np.interp(CURVE_GRID, fpr, tpr)


def _precision_on_grid(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Interpolated precision: the best precision at recall ≥ r."""
    precision, recall, _ = skm.precision_recall_curve(positive, scores)
    return np.array(
        [precision[recall >= r].max() if (recall >= r).any() else 0.0 for r in CURVE_GRID]
    )


def roc_points(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, labels: list[str]
) -> pd.DataFrame:
    return _curves(y_true, proba, classes, labels, ("fpr", "tpr"), _tpr_on_grid)


def precision_recall_points(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, labels: list[str]
) -> pd.DataFrame:
    return _curves(y_true, proba, classes, labels, ("recall", "precision"), _precision_on_grid)


def confusion_counts(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    labels: list[str],
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per (actual, predicted) pair with its ``count``, zeros included; the predicted
    class is the decision rule's (``predicted_indices``).

    A few rows instead of one per test example: the plot file stays small, and the
    ``confusion_counts`` DVC template (.dvc/plots/) sums ``count`` where DVC's counts rows.
    """
    predicted = classes[predicted_indices(proba, weights)]
    matrix = skm.confusion_matrix(y_true, predicted, labels=classes)
    return pd.DataFrame(
        [
            {"actual": labels[i], "predicted": labels[j], "count": int(matrix[i, j])}
            for i in range(len(classes))
            for j in range(len(classes))
        ]
    )


def predictions_table(
    keys: pd.DataFrame, split: np.ndarray, target: np.ndarray, proba: np.ndarray, labels: list[str]
) -> pd.DataFrame:
    """The rows of ``model/predictions.parquet``: keys, split, true class, probabilities."""
    table = keys.reset_index(drop=True).astype("string")
    table[SPLIT] = pd.Series(split, dtype="string")
    table[TARGET] = np.asarray(target, dtype=np.int8)
    for column, label in enumerate(labels):
        table[f"{PROBA_PREFIX}{label}"] = np.asarray(proba[:, column], dtype=np.float32)
    return table
