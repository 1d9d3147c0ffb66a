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


def baac_terms(names: list[str]) -> list[str]:
    """Each feature's BAAC source, as documented in ``baac_severity.features.FEATURES``."""
    sources = {feature.name: feature.source for feature in features.FEATURES}
    return [sources.get(name, name) for name in names]


def top(
    contributions: Contributions,
    x: np.ndarray,
    names: list[str],
    classes: np.ndarray,
    labels: list[str],
    count: int,
) -> list[dict[str, Any]]:
    """Per row, the ``count`` largest contributions (absolute value) to the probability of
    ``classes[i]`` (an index into the model's classes), with the bias and the rest."""
    terms = baac_terms(names)
    explanations = []
    for i, k in enumerate(classes.tolist()):
        row = contributions.values[i, :, k]
        order = np.argsort(-np.abs(row), kind="stable")[:count]
        listed = [
            {
                "feature": names[j],
                "baac": terms[j],
                "value": None if np.isnan(x[i, j]) else float(x[i, j]),
                "contribution": float(row[j]),
            }
            for j in order.tolist()
        ]
        explanations.append(
            {
                "label": labels[k],
                "bias": float(contributions.bias[k]),
                "contributions": listed,
                "rest": float(row.sum() - row[order].sum()),
            }
        )
    return explanations
