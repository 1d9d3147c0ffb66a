"""Why a forest predicted what it did: exact tree-path contributions (Saabas' method).

In one decision tree, the probability of a class at a leaf is the probability at the root plus
the change at every split on the way down; each change is credited to the feature the split
tests. Averaged over the trees of a forest, this gives, for every row,

    bias + sum of the contributions of all features = predicted probability of each class,

exactly (up to float rounding), in probability units: ``bias`` is the forest's mean root
probability (the class frequencies the trees were grown on), and nothing is approximated.

Computed for all trees at once: the nodes of the forest are numbered in one sequence, each
row's leaf in each tree is found (``Tree.apply``), and the paths are walked up to the roots one
level at a time, adding each node's change to its parent's split feature (``np.bincount``).
Cost: docs/serving.md#explanations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from baac_severity import features
from baac_severity.data import schema
from baac_severity.serving import schemas


@dataclass(frozen=True)
class Contributions:
    """``bias[k]`` + ``values[i, :, k].sum()`` = probability of class k for row i."""

    bias: np.ndarray  # (classes,)
    values: np.ndarray  # (rows, features, classes)


class TreeContributions:
    """Tree-path contributions of a fitted forest, for the float matrix it predicts from."""

    def __init__(self, forest: RandomForestClassifier | ExtraTreesClassifier) -> None:
        self.trees = [estimator.tree_ for estimator in forest.estimators_]
        self.n_classes = int(forest.n_classes_)
        self.n_features = int(forest.n_features_in_)
        parents, changes, features, roots, offsets = [], [], [], [], [0]
        for tree in self.trees:
            # sklearn >= 1.4 keeps class fractions in ``value``: what ``predict`` returns.
            value = tree.value[:, 0, : self.n_classes]
            parent = np.full(tree.node_count, -1)
            for children in (tree.children_left, tree.children_right):
                inner = children >= 0
                parent[children[inner]] = np.flatnonzero(inner)
            has_parent = parent >= 0
            change = np.zeros_like(value)
            change[has_parent] = value[has_parent] - value[parent[has_parent]]
            parents.append(np.where(has_parent, parent + offsets[-1], -1))
            changes.append(change)
            features.append(np.where(has_parent, tree.feature[np.maximum(parent, 0)], 0))
            roots.append(value[0])
            offsets.append(offsets[-1] + tree.node_count)
        # The nodes of all trees in one numbering: a node's parent, the feature its parent
        # splits on, and the change of the class probabilities from its parent to it.
        self.parent = np.concatenate(parents)
        self.change = np.concatenate(changes)
        self.feature = np.concatenate(features)
        self.offsets = np.array(offsets[:-1])
        self.bias = np.mean(roots, axis=0)

    def __call__(self, x: np.ndarray) -> Contributions:
        """Contributions for the rows of ``x`` (the float32 matrix the trees predict from)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows = len(x)
        leaves = np.stack([tree.apply(x) for tree in self.trees]) + self.offsets[:, None]
        node, row = leaves.ravel(), np.tile(np.arange(rows), len(self.trees))
        steps, owners = [], []
        while node.size:  # from the leaves up, one level of every path at a time
            steps.append(node)
            owners.append(row)
            up = self.parent[node]
            kept = up >= 0
            node, row = up[kept], row[kept]
        nodes, owner = np.concatenate(steps), np.concatenate(owners)
        cell = owner * self.n_features + self.feature[nodes]
        size = rows * self.n_features
        values = np.stack(
            [
                np.bincount(cell, weights=self.change[nodes, k], minlength=size)
                for k in range(self.n_classes)
            ],
            axis=1,
        ).reshape(rows, self.n_features, self.n_classes)
        return Contributions(self.bias, values / len(self.trees))


# Readable names of the features that are not a BAAC field of their own; a code feature is
# named by its field (``schemas.FIELD_LABELS``) and a count of vehicles by its own name.
FEATURE_WORDS = {
    "month": "month",
    "month_sin": "time of year (sine)",
    "month_cos": "time of year (cosine)",
    "day_of_week": "day of week",
    "dow_sin": "day of week (sine)",
    "dow_cos": "day of week (cosine)",
    "hour": "hour",
    "hour_sin": "time of day (sine)",
    "hour_cos": "time of day (cosine)",
    "dep_code": "department",
    "overseas": "overseas department",
    "commune": "commune",
    "grid_cell": "0.1° grid cell",
    "n_vehicles": "vehicles",
    "n_users": "road users",
    "n_pedestrians": "pedestrians",
    "n_passengers": "passengers",
    "min_age": "youngest user's age",
    "max_age": "oldest user's age",
    "share_protected": "share of occupants with protective equipment",
    "age": "age",
    "protected": "protective equipment",
}
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
YES_NO = {0: "no", 1: "yes"}
ACTP_CODE = {value: code for code, value in features.ACTP_VALUES.items()}


def baac_terms(names: list[str]) -> list[str]:
    """Each feature's BAAC source, as documented in ``baac_severity.features.FEATURES``, in
    plain text (the documentation's Markdown emphasis dropped)."""
    sources = {feature.name: feature.source.replace("**", "") for feature in features.FEATURES}
    return [sources.get(_key_of(name), name) for name in names]


def _key_of(name: str) -> str:
    """The feature an estimator input comes from: "commune_2" (the encoding of commune for
    class 2 of a multiclass target) -> "commune"."""
    base = name.rsplit("_", 1)[0]
    return base if base in features.TARGET_ENCODED and name[len(base) + 1 :].isdigit() else name


def _code_text(field: str, code: int) -> str:
    if field == "actp":
        code_text = ACTP_CODE.get(code, str(code))
        return schema.ACTP_CODES.get(code_text, f"code {code_text}")
    return schema.CODES[field].get(code, f"code {code}")


def describe(name: str, value: float | None, prior: float | None = None) -> str:
    """A feature's value in the user's words: "road category: departmental road",
    "speed limit (km/h): 30", "commune risk 0.41 (prior 0.37)"."""
    key = _key_of(name)
    field = key.removeprefix("veh_")
    words = FEATURE_WORDS.get(key) or schemas.FIELD_LABELS.get(field) or key.replace("_", " ")
    if key.startswith("veh_") and "vehicle" not in words:
        words = f"vehicle's {words}"
    if prior is not None:  # a target-encoded key: the training's severity rate of that place
        shown = "unknown" if value is None else f"{value:.2f}"
        return f"{words} risk {shown} (prior {prior:.2f})"
    if value is None:
        return f"{words}: not filled in"
    whole = int(value) if float(value).is_integer() else None
    if whole is not None and (field in schema.CODES or field == "actp"):
        return f"{words}: {_code_text(field, whole)}"
    if key == "day_of_week" and whole is not None and 0 <= whole < len(DAYS):
        return f"{words}: {DAYS[whole]}"
    if key in ("overseas", "protected") and whole in YES_NO:
        return f"{words}: {YES_NO[whole]}"
    if key in features.COUNTED_CODES:
        return f"{key.removeprefix('n_').replace('_', ' ')}: {whole}"
    if whole is not None:
        return f"{words}: {whole}"
    return f"{words}: {value:.2f}"


def top(
    contributions: Contributions,
    x: np.ndarray,
    names: list[str],
    classes: np.ndarray,
    labels: list[str],
    count: int,
    priors: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Per row, the ``count`` largest contributions (absolute value) to the probability of
    ``classes[i]`` (an index into the model's classes), with the bias and the rest.
    ``priors``: the training prior of each target-encoded input (its value for an unseen key)."""
    terms = baac_terms(names)
    priors = priors or {}
    explanations = []
    for i, k in enumerate(classes.tolist()):
        row = contributions.values[i, :, k]
        order = np.argsort(-np.abs(row), kind="stable")[:count]
        listed = []
        for j in order.tolist():
            value = None if np.isnan(x[i, j]) else float(x[i, j])
            listed.append(
                {
                    "feature": names[j],
                    "description": describe(names[j], value, priors.get(names[j])),
                    "baac": terms[j],
                    "value": value,
                    "contribution": float(row[j]),
                }
            )
        explanations.append(
            {
                "label": labels[k],
                "bias": float(contributions.bias[k]),
                "contributions": listed,
                "rest": float(row.sum() - row[order].sum()),
            }
        )
    return explanations
