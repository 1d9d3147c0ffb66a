"""Metrics and curve files on synthetic scores whose right answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from baac_severity.modeling import evaluate

CLASSES = np.array([0, 1])
LABELS = ["not_severe", "severe"]


def binary_case(signal: float, rows: int = 4000, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    score = np.clip(signal * y + (1 - signal) * rng.random(rows), 0, 1)
    return y, np.column_stack([1 - score, score])


def test_perfect_scores_give_perfect_metrics_and_curves():
    y, proba = binary_case(signal=1.0)
    metrics = evaluate.classification_metrics(y, proba, CLASSES, LABELS)
    assert metrics["roc_auc"] == metrics["pr_auc"] == metrics["accuracy"] == 1.0
    assert metrics["per_class"]["severe"]["support"] == int(y.sum())
    pr = evaluate.precision_recall_points(y, proba, CLASSES, LABELS)
    assert (pr["precision"] == 1.0).all()
    roc = evaluate.roc_points(y, proba, CLASSES, LABELS)
    assert roc.loc[roc["fpr"] == 0.0, "tpr"].iloc[0] == 1.0


def test_random_scores_give_chance_level_curves():
    y, proba = binary_case(signal=0.0)
    metrics = evaluate.classification_metrics(y, proba, CLASSES, LABELS)
    assert metrics["roc_auc"] == pytest.approx(0.5, abs=0.03)
    pr = evaluate.precision_recall_points(y, proba, CLASSES, LABELS)
    # At full recall, precision is the positive rate; it never exceeds chance by much.
    assert pr.loc[pr["recall"] == 1.0, "precision"].iloc[0] == pytest.approx(y.mean(), abs=0.01)
    assert pr.loc[pr["recall"] >= 0.2, "precision"].max() < 0.6
    assert pr["precision"].is_monotonic_decreasing


def test_multiclass_metrics_and_one_curve_per_class():
    rng = np.random.default_rng(1)
    classes = np.array([1, 2, 3])
    y = rng.choice(classes, 3000)
    proba = rng.dirichlet([1, 1, 1], 3000)
    proba[np.arange(3000), y - 1] += 1.0  # informative
    proba /= proba.sum(axis=1, keepdims=True)
    labels = ["light_injury", "hospitalised", "killed"]
    metrics = evaluate.classification_metrics(y, proba, classes, labels)
    assert 0.6 < metrics["roc_auc"] <= 1.0 and 0 < metrics["f1_macro"] <= 1.0
    assert set(metrics["per_class"]) == set(labels)
    assert set(evaluate.roc_points(y, proba, classes, labels)["class"]) == set(labels)
    confusion = evaluate.confusion_counts(y, proba, classes, labels)
    assert len(confusion) == len(labels) ** 2 and confusion["count"].sum() == 3000
    per_actual = confusion.groupby("actual")["count"].sum()
    expected = {label: int((y == c).sum()) for c, label in zip(classes, labels, strict=True)}
    assert per_actual.to_dict() == expected


def test_auc_is_undefined_on_a_single_class():
    y = np.ones(10, dtype=int)
    proba = np.column_stack([np.zeros(10), np.ones(10)])
    metrics = evaluate.classification_metrics(y, proba, CLASSES, LABELS)
    assert metrics["roc_auc"] is None and metrics["accuracy"] == 1.0


def test_expected_calibration_error_is_the_mean_gap_per_bin():
    # Every row at 0.8 and positive: one bin, a gap of 0.2.
    y = np.ones(100, dtype=int)
    assert evaluate.expected_calibration_error(y, np.full(100, 0.8)) == pytest.approx(0.2)
    # Two-column matrices read as the positive class; a probability of 1 falls in the last bin.
    proba = np.column_stack([np.zeros(100), np.ones(100)])
    assert evaluate.expected_calibration_error(y, proba) == 0.0
    # Outcomes drawn from the probabilities themselves: calibrated up to sampling noise;
    # the same outcomes with squared probabilities are not.
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    drawn = (rng.random(p.size) < p).astype(int)
    assert evaluate.expected_calibration_error(drawn, p) < 0.005
    assert evaluate.expected_calibration_error(drawn, p**2) > 0.1


def test_multiclass_calibration_checks_the_top_label():
    proba = np.tile([0.6, 0.3, 0.1], (10, 1))
    y = np.array([0] * 6 + [1] * 4)  # the top label is right 6 times in 10
    assert evaluate.expected_calibration_error(y, proba) == pytest.approx(0.0)
    assert evaluate.brier_score(y, proba) == pytest.approx(
        (6 * (0.4**2 + 0.3**2 + 0.1**2) + 4 * (0.6**2 + 0.7**2 + 0.1**2)) / 10
    )
    points = evaluate.reliability_points(y, proba)
    assert points[["predicted", "observed"]].values.tolist() == [[0.6, 0.6]]


def test_decision_weights_raise_macro_f1_on_a_rare_class():
    """A rare class whose probability never leads: argmax never predicts it, the chosen
    weights do, and macro F1 rises."""
    rng = np.random.default_rng(0)
    y = rng.choice(3, 6000, p=[0.6, 0.35, 0.05])
    proba = rng.dirichlet([4, 3, 1], len(y))
    proba[np.arange(len(y)), y] += 0.3
    proba[:, 2] *= 0.3
    proba /= proba.sum(axis=1, keepdims=True)
    classes, labels = np.arange(3), ["a", "b", "c"]
    plain = evaluate.classification_metrics(y, proba, classes, labels)
    assert plain["per_class"]["c"]["recall"] == 0.0
    weights = evaluate.macro_f1_weights(y, proba)
    assert weights[0] == 1.0 and weights[2] > 1.0
    weighted = evaluate.classification_metrics(y, proba, classes, labels, weights)
    assert weighted["f1_macro"] > plain["f1_macro"] + 0.1
    assert weighted["roc_auc"] == plain["roc_auc"]  # probabilities untouched
