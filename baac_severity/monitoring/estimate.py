"""ROC-AUC estimated without labels: confidence-based performance estimation (CBPE).

The method of NannyML (https://nannyml.readthedocs.io/en/stable/how_it_works/
performance_estimation.html, "Confidence-based Performance Estimation"): when a model's
probabilities are calibrated, row i is a positive with probability p_i, so it counts as p_i of an
expected positive and 1 - p_i of an expected negative. The ROC curve drawn from those expected
counts at every threshold of the model's score, and its area, estimate the ROC-AUC the labels
would give. Here that curve is scikit-learn's weighted ROC curve over each row taken twice
(as a positive weighted p_i and as a negative weighted 1 - p_i), so ties count as sklearn counts
them. Calibration (isotonic, one-vs-rest per class) is fitted on labelled rows the model did not
train on, earlier than the rows estimated; the ranking stays the model's own score.

nannyml itself is not used: 0.13.1 resolves with pandas 3 but brings ~90 packages (a 1.8 GB
environment) and fails to import (statsmodels missing); the estimate is these few lines.

A multiclass model is estimated the way ``modeling/evaluate.py`` scores it: one-vs-rest
ROC-AUC per class, averaged with the (here expected) class prevalences as weights.
"""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

Calibration = list[IsotonicRegression]


def _columns(classes: np.ndarray) -> list[int]:
    """The probability columns estimated: the positive class of a binary model, every class
    of a multiclass one."""
    return [1] if len(classes) == 2 else list(range(len(classes)))


def fit_calibration(proba: np.ndarray, y: np.ndarray, classes: np.ndarray) -> Calibration:
    """Isotonic maps from the model's probability of each estimated class to its observed
    frequency, fitted on labelled rows (``proba``: one column per class of ``classes``)."""
    return [
        IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
            proba[:, column], (y == classes[column]).astype(float)
        )
        for column in _columns(classes)
    ]


def expected_roc_auc(scores: np.ndarray, probabilities: np.ndarray) -> float | None:
    """The ROC-AUC expected when row i is a positive with probability ``probabilities[i]``,
    ranked by ``scores``; None when no positive or no negative is expected."""
    positives = float(probabilities.sum())
    if len(scores) == 0 or positives <= 0 or positives >= len(scores):
        return None
    labels = np.r_[np.ones(len(scores)), np.zeros(len(scores))]
    weights = np.r_[probabilities, 1.0 - probabilities]
    return float(roc_auc_score(labels, np.r_[scores, scores], sample_weight=weights))


def estimate_roc_auc(
    proba: np.ndarray, classes: np.ndarray, calibration: Calibration | None
) -> float | None:
    """The estimated ROC-AUC of rows scored ``proba`` (one column per class of ``classes``),
    from their calibrated probabilities (the raw ones when ``calibration`` is None)."""
    estimates, weights = [], []
    for index, column in enumerate(_columns(classes)):
        scores = proba[:, column]
        probabilities = scores if calibration is None else calibration[index].predict(scores)
        estimate = expected_roc_auc(scores, np.clip(probabilities, 0.0, 1.0))
        if estimate is not None:
            estimates.append(estimate)
            weights.append(float(probabilities.sum()))
    if not estimates:
        return None
    return round(float(np.average(estimates, weights=weights)), 6)
