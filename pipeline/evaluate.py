"""Classification metrics and curves for binary and multiclass targets alike."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn import metrics as skm

CURVE_GRID = np.linspace(0.0, 1.0, 101)
# The metrics users compare across experiments: the keys of metrics/train.json (a DVC metric,
# one ``dvc exp show`` column each, in this order) for validation and test.
HEADLINE = ("roc_auc", "f1_macro", "f1_weighted", "log_loss")


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


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, labels: list[str]
) -> dict:
    """Accuracy, precision/recall/F1 (weighted, macro, per class), ROC-AUC, PR-AUC, log loss."""
    y_true = np.asarray(y_true)
    predicted = classes[np.argmax(proba, axis=1)]
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


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    """ECE: the mean |observed rate - mean predicted probability| over ``bins`` equal-width
    probability bins, weighted by the share of rows in each bin.

    ``y`` holds 0/1 outcomes and ``p`` the predicted probability that ``y`` is 1 (for a
    multiclass model: whether the top class was right, and its probability).
    """
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if len(y) == 0:
        raise ValueError("expected_calibration_error: no rows")
    # Bin i holds (i/bins, (i+1)/bins]; p = 0 goes to the first bin.
    index = np.clip(np.ceil(p * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    gap = np.abs(np.bincount(index, y, bins) - np.bincount(index, p, bins))
    return float(gap[count > 0].sum() / len(y))


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
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, labels: list[str]
) -> pd.DataFrame:
    """One row per (actual, predicted) pair with its ``count``, zeros included.

    A few rows instead of one per test example: the plot file stays small, and the
    ``confusion_counts`` DVC template (.dvc/plots/) sums ``count`` where DVC's counts rows.
    """
    predicted = classes[np.argmax(proba, axis=1)]
    matrix = skm.confusion_matrix(y_true, predicted, labels=classes)
    return pd.DataFrame(
        [
            {"actual": labels[i], "predicted": labels[j], "count": int(matrix[i, j])}
            for i in range(len(classes))
            for j in range(len(classes))
        ]
    )
