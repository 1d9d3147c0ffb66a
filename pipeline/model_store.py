"""Save and load the trained model bundle (joblib) with a scikit-learn version check."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from pipeline.io import atomic_path


class ModelVersionError(RuntimeError):
    """The model was saved by another scikit-learn version; unpickling it would be unsafe."""


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

    def predict_proba(self, matrix) -> np.ndarray:
        return self.model.predict_proba(matrix[self.features])


def save_model(bundle: ModelBundle, target: str | Path) -> int:
    """Write the bundle atomically; returns its size in bytes."""
    with atomic_path(target, ".joblib") as tmp:
        # compress=3 keeps a 100-tree forest well under 20 MB at little load-time cost.
        joblib.dump(bundle, tmp, compress=3)
    return Path(target).stat().st_size


def load_model(path: str | Path) -> ModelBundle:
    bundle = joblib.load(path)
    if not isinstance(bundle, ModelBundle):
        raise ModelVersionError(f"{path} is not a model bundle of this project")
    if bundle.sklearn_version != sklearn.__version__:
        raise ModelVersionError(
            f"{path} was saved with scikit-learn {bundle.sklearn_version}, "
            f"this environment has {sklearn.__version__}: retrain with `dvc repro train`"
        )
    return bundle
