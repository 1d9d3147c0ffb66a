"""Save and load the trained model bundle (joblib) with a scikit-learn version check, and
check that the bundle's recorded feature schema is what ``baac_severity/features.py`` produces."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from baac_severity import features
from baac_severity.data.io import atomic_path
from baac_severity.modeling import evaluate


class ModelVersionError(RuntimeError):
    """The model was saved by another scikit-learn version; unpickling it would be unsafe."""


class FeatureSchemaError(RuntimeError):
    """The model was trained on features that the current feature module does not produce."""


@dataclass
class ModelBundle:
    model: Any
    features: list[str]
    classes: np.ndarray
    labels: list[str]
    target: str
    unit: str
    feature_groups: list[str]
    sklearn_version: str = field(default=sklearn.__version__)
    # features.feature_schema of the training matrix. A bundle pickled before this field
    # existed has no such attribute and reads the class default, None.
    feature_schema: dict | None = None
    # Per-class probability weights chosen on validation (train.decision_weights): the
    # decided class is the largest probability times its weight. None: the largest one.
    decision_weights: np.ndarray | None = None

    def predict_proba(self, matrix) -> np.ndarray:
        return self.model.predict_proba(matrix[self.features])

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """The decided class of each row of ``proba``, as a column index."""
        return evaluate.predicted_indices(proba, self.decision_weights)

    def recorded_schema(self) -> dict:
        """The recorded feature schema; for an older bundle, what it knows: names and order."""
        if self.feature_schema is not None:
            return self.feature_schema
        columns = [{"name": name} for name in self.features]
        return {
            "unit": self.unit,
            "groups": self.feature_groups,
            "columns": columns,
            "unused": None,
        }


def feature_schema_problems(bundle: ModelBundle) -> list[str]:
    """Why the current feature module cannot feed this model; empty when it can."""
    recorded = bundle.recorded_schema()
    problems = features.compare_schema(recorded).lines()
    names = [column["name"] for column in recorded["columns"]]
    if names != list(bundle.features) or recorded["unit"] != bundle.unit:
        problems.append("the recorded feature schema does not describe the model's input columns")
    fitted = getattr(bundle.model, "feature_names_in_", None)
    if fitted is not None and list(fitted) != list(bundle.features):
        problems.append("the model was fitted on other columns than the bundle lists")
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


def save_model(bundle: ModelBundle, target: str | Path) -> int:
    """Write the bundle atomically; returns its size in bytes."""
    with atomic_path(target, ".joblib") as tmp:
        # compress=3 keeps a 100-tree forest well under 20 MB at little load-time cost.
        joblib.dump(bundle, tmp, compress=3)
    return Path(target).stat().st_size


def load_model_bytes(data: bytes, source: str | Path) -> ModelBundle:
    """A bundle from the bytes of a model file (an experiment's, read from the DVC cache)."""
    return _checked(joblib.load(io.BytesIO(data)), source)


def load_model(path: str | Path) -> ModelBundle:
    return _checked(joblib.load(path), path)


def _checked(bundle: object, path: str | Path) -> ModelBundle:
    if not isinstance(bundle, ModelBundle):
        raise ModelVersionError(f"{path} is not a model bundle of this project")
    if bundle.sklearn_version != sklearn.__version__:
        raise ModelVersionError(
            f"{path} was saved with scikit-learn {bundle.sklearn_version}, "
            f"this environment has {sklearn.__version__}: retrain with `dvc repro train`"
        )
    return bundle
