"""CBPE (baac_severity/monitoring/estimate.py) on synthetic data whose ROC-AUC is known.

Binormal scores: a positive's score is N(d, 1), a negative's N(0, 1), so the ROC-AUC is
Phi(d / sqrt(2)) and the calibrated probability of a score s is exactly
sigmoid(logit(prevalence) + d s - d^2 / 2).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, logit
from sklearn.metrics import roc_auc_score

from baac_severity.monitoring.estimate import estimate_roc_auc, expected_roc_auc, fit_calibration

BINARY = np.array([0, 1])


def binormal(rng: np.random.Generator, n: int, separation: float, prevalence: float):
    """(scores, calibrated probabilities, labels) of n rows."""
    labels = (rng.uniform(size=n) < prevalence).astype(int)
    scores = rng.normal(size=n) + separation * labels
    probability = expit(logit(prevalence) + separation * scores - separation**2 / 2)
    return scores, probability, labels


def as_proba(positive: np.ndarray) -> np.ndarray:
    return np.column_stack([1 - positive, positive])


@pytest.mark.parametrize(("separation", "prevalence"), [(0.8, 0.4), (1.3, 0.4), (1.3, 0.15)])
def test_calibrated_probabilities_estimate_the_known_roc_auc(separation, prevalence):
    rng = np.random.default_rng(7)
    _, probability, labels = binormal(rng, 40_000, separation, prevalence)
    truth = stats.norm.cdf(separation / np.sqrt(2))
    estimate = estimate_roc_auc(as_proba(probability), BINARY, None)
    realized = roc_auc_score(labels, probability)
    assert estimate == pytest.approx(truth, abs=0.006)
    assert estimate == pytest.approx(realized, abs=0.01)


def timid(probability: np.ndarray) -> np.ndarray:
    """Probabilities squeezed towards 0.5: the ranking is kept, the confidence is not."""
    return 0.5 + 0.4 * (probability - 0.5)


def test_isotonic_calibration_on_earlier_rows_repairs_timid_probabilities():
    """A model whose probabilities are squeezed towards 0.5 (as a small forest's are): the raw
    estimate is far below the truth, calibrated on other labelled rows it is close."""
    rng = np.random.default_rng(11)
    truth = stats.norm.cdf(1.2 / np.sqrt(2))
    _, earlier_probability, earlier_labels = binormal(rng, 20_000, 1.2, 0.35)
    _, current_probability, _ = binormal(rng, 20_000, 1.2, 0.35)
    calibration = fit_calibration(as_proba(timid(earlier_probability)), earlier_labels, BINARY)
    raw = estimate_roc_auc(as_proba(timid(current_probability)), BINARY, None)
    calibrated = estimate_roc_auc(as_proba(timid(current_probability)), BINARY, calibration)
    assert truth - raw > 0.05
    assert calibrated == pytest.approx(truth, abs=0.01)


def test_the_estimate_follows_a_shift_of_the_population():
    """Fewer separable rows arrive (a weaker separation): the estimate drops with the truth."""
    rng = np.random.default_rng(3)
    _, strong, _ = binormal(rng, 20_000, 1.4, 0.4)
    _, weak, _ = binormal(rng, 20_000, 0.7, 0.4)
    drop = estimate_roc_auc(as_proba(strong), BINARY, None) - estimate_roc_auc(
        as_proba(weak), BINARY, None
    )
    expected = stats.norm.cdf(1.4 / np.sqrt(2)) - stats.norm.cdf(0.7 / np.sqrt(2))
    assert drop == pytest.approx(expected, abs=0.015)


def test_multiclass_is_the_prevalence_weighted_one_vs_rest_estimate():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(30_000, 3)) * np.array([1.5, 1.0, 2.0])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in proba[:5000]])
    proba = proba[:5000]
    estimate = estimate_roc_auc(proba, np.array([0, 1, 2]), None)
    realized = roc_auc_score(labels, proba, multi_class="ovr", average="weighted")
    assert estimate == pytest.approx(realized, abs=0.02)


def test_no_expected_positive_gives_no_estimate():
    assert expected_roc_auc(np.array([0.1, 0.2]), np.zeros(2)) is None
    assert expected_roc_auc(np.array([]), np.array([])) is None
    assert estimate_roc_auc(as_proba(np.zeros(3)), BINARY, None) is None
