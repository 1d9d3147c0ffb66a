"""The saved model: a plain scikit-learn estimator (``make_model``'s fitted ``Pipeline``) in a
joblib file, and beside it the JSON metadata that says how to use it (``model_info.json`` in
``model/``, ``metadata.json`` once promoted): its input columns, classes, labels, target, feature
schema and decision weights. Nothing in the joblib file names a class of this project, so the
model loads with scikit-learn alone, whatever this package becomes.

``ModelBundle`` is the pair in memory, built on load; it is never saved as such.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from baac_severity import features
from baac_severity.data.io import atomic_path
from baac_severity.modeling import evaluate

# The metadata keys a model needs to be used; the rest of the JSON (metrics, params, data
# snapshot, promotion record) describes where it comes from.
USAGE_KEYS = (
    "features",
    "classes",
    "labels",
    "target",
    "unit",
    "feature_groups",
    "feature_schema",
    "sklearn_version",
    "decision_weights",
)


class ModelVersionError(RuntimeError):
    """The model was saved by another scikit-learn version; unpickling it would be unsafe."""


class FeatureSchemaError(RuntimeError):
    """The model was trained on features that the current feature module does not produce."""


@dataclass(frozen=True)
class ModelBundle:
    """A fitted estimator and the metadata saved beside it."""

    model: Any
    features: list[str]
    classes: np.ndarray
    labels: list[str]
    target: str
    unit: str
    feature_groups: list[str]
    feature_schema: dict
    sklearn_version: str = sklearn.__version__
    # Per-class probability weights chosen on validation (train.decision_weights): the
    # decided class is the largest probability times its weight. None: the largest one.
    decision_weights: np.ndarray | None = None

    @classmethod
    def from_metadata(cls, model: Any, metadata: dict) -> ModelBundle:
        weights = metadata.get("decision_weights")
        return cls(
            model=model,
            features=list(metadata["features"]),
            classes=np.asarray(metadata["classes"]),
            labels=list(metadata["labels"]),
            target=metadata["target"],
            unit=metadata["unit"],
            feature_groups=list(metadata["feature_groups"]),
            feature_schema=metadata["feature_schema"],
            sklearn_version=metadata["sklearn_version"],
            decision_weights=None if weights is None else np.asarray(weights, dtype=float),
        )

    def metadata(self) -> dict:
        """The JSON-ready usage metadata (``USAGE_KEYS``) of this model."""
        weights = self.decision_weights
        return {
            "features": list(self.features),
            "classes": [int(c) for c in self.classes],
            "labels": list(self.labels),
            "target": self.target,
            "unit": self.unit,
            "feature_groups": list(self.feature_groups),
            "feature_schema": self.feature_schema,
            "sklearn_version": self.sklearn_version,
            # Unrounded: JSON floats read back exactly, so decisions are the training's own.
            "decision_weights": None if weights is None else [float(w) for w in weights],
        }

    def predict_proba(self, matrix) -> np.ndarray:
        return self.model.predict_proba(matrix[self.features])

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """The decided class of each row of ``proba``, as a column index."""
        return evaluate.predicted_indices(proba, self.decision_weights)


def feature_schema_problems(bundle: ModelBundle) -> list[str]:
    """Why the current feature module cannot feed this model; empty when it can."""
    recorded = bundle.feature_schema
    problems = features.compare_schema(recorded).lines()
    names = [column["name"] for column in recorded["columns"]]
    if names != list(bundle.features) or recorded["unit"] != bundle.unit:
        problems.append("the recorded feature schema does not describe the model's input columns")
    fitted = getattr(bundle.model, "feature_names_in_", None)
    if fitted is not None and list(fitted) != list(bundle.features):
        problems.append("the model was fitted on other columns than its metadata lists")
    return problems


def check_feature_schema(bundle: ModelBundle, source: str | Path) -> None:
    """Raise FeatureSchemaError listing every difference, if there is any."""
    problems = feature_schema_problems(bundle)
    if problems:
        listed = "".join(f"\n  - {problem}" for problem in problems)
        raise FeatureSchemaError(
            f"{source}: the model's feature schema differs from "
            f"baac_severity/features.py:{listed}\n"
            "retrain it with `dvc repro train`"
        )


def save_model(model: Any, target: str | Path) -> int:
    """Write the fitted estimator atomically; returns its size in bytes."""
    with atomic_path(target, ".joblib") as tmp:
        # compress=3 keeps a 100-tree forest well under 20 MB at little load-time cost.
        joblib.dump(model, tmp, compress=3)
    return Path(target).stat().st_size


def load_model(model_path: str | Path, metadata_path: str | Path) -> ModelBundle:
    """The model file and the metadata JSON beside it."""
    metadata = json.loads(Path(metadata_path).read_text())
    _check_version(metadata, model_path)
    return ModelBundle.from_metadata(joblib.load(model_path), metadata)


def load_model_bytes(data: bytes, metadata: dict, source: str | Path) -> ModelBundle:
    """A model from the bytes of its file (an experiment's, read from the DVC cache)."""
    _check_version(metadata, source)
    return ModelBundle.from_metadata(joblib.load(io.BytesIO(data)), metadata)


def _check_version(metadata: dict, source: str | Path) -> None:
    """Refuse before unpickling: the metadata says which scikit-learn wrote the model."""
    saved = metadata.get("sklearn_version")
    if saved != sklearn.__version__:
        raise ModelVersionError(
            f"{source} was saved with scikit-learn {saved}, "
            f"this environment has {sklearn.__version__}: retrain with `dvc repro train`"
        )
