"""What a promotion compares: the challenger (the workspace model or a DVC experiment's, read
from the DVC cache at the experiment's commit without touching the workspace) and the
champion in ``models/``, each with its per-row predictions.

A challenger is checked before anything is written: a model that the current code could not
serve as it was trained (another feature schema, another scikit-learn) or, for the workspace
model, trained on other data than ``data/processed`` holds, is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from baac_severity.config import (
    DATASET,
    DATASET_USERS,
    MODEL_FILE,
    MODEL_INFO,
    PROMOTED_METADATA,
    PROMOTED_MODEL,
    PROMOTED_PREDICTIONS,
    ROOT,
)
from baac_severity.data.io import git_text
from baac_severity.decisions import compare

if TYPE_CHECKING:
    from baac_severity.modeling.model_store import ModelBundle


class StaleDataError(RuntimeError):
    """The workspace model was trained on other data than ``data/processed`` holds now."""


def experiment_commit(name: str) -> str:
    """The commit of a DVC experiment, from its git ref (refs/exps/<baseline>/<name>)."""
    refs = git_text(
        ROOT, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps"
    ).splitlines()
    matches = [
        sha for ref, sha in (line.split() for line in refs) if ref.rsplit("/", 1)[-1] == name
    ]
    if not matches:
        known = sorted({line.split()[0].rsplit("/", 1)[-1] for line in refs})
        raise SystemExit(f"no experiment named {name!r}; known experiments: {known or 'none'}")
    return matches[0]


@dataclass
class Candidate:
    """A model to promote: its bytes, ``model_info.json``, git revision and predictions."""

    model: bytes
    info: dict
    rev: str
    experiment: str | None
    predictions_file: bytes | None  # model/predictions.parquet, None for an older model

    @property
    def predictions(self) -> pd.DataFrame | None:
        if self.predictions_file is None:
            return None
        return pd.read_parquet(io.BytesIO(self.predictions_file))

    @property
    def name(self) -> str:
        return self.experiment or "workspace"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model).hexdigest()


def read_model_files(experiment: str | None) -> tuple[bytes, dict, str]:
    """(model bytes, model_info, git revision) of the workspace or an experiment."""
    if experiment is None:
        if not MODEL_FILE.exists():
            raise SystemExit(f"{MODEL_FILE} not found: run `dvc repro` first")
        return (
            MODEL_FILE.read_bytes(),
            json.loads(MODEL_INFO.read_text()),
            git_text(ROOT, "rev-parse", "HEAD"),
        )
    import dvc.api

    rev = experiment_commit(experiment)
    model = dvc.api.read(str(MODEL_FILE), repo=str(ROOT), rev=rev, mode="rb")
    info = json.loads(dvc.api.read(str(MODEL_INFO), repo=str(ROOT), rev=rev))
    return model, info, rev


def read_candidate(experiment: str | None) -> Candidate:
    model, info, rev = read_model_files(experiment)
    try:
        predictions = compare.read_predictions_bytes(".", None if experiment is None else rev)
    except compare.CompareError:
        predictions = None  # a model trained before predictions were written
    return Candidate(model, info, rev, experiment, predictions)


@dataclass
class Champion:
    """The promoted model in ``models/``: its metadata and per-row predictions."""

    metadata: dict
    predictions: pd.DataFrame | None = field(default=None)


def current_champion() -> Champion | None:
    if not PROMOTED_METADATA.is_file() or not PROMOTED_MODEL.is_file():
        return None
    predictions = None
    if PROMOTED_PREDICTIONS.is_file():
        predictions = pd.read_parquet(PROMOTED_PREDICTIONS)
    return Champion(json.loads(PROMOTED_METADATA.read_text()), predictions)


def check_training_data(info: dict) -> None:
    """The workspace model's data snapshot must be the data in ``data/processed``: otherwise
    its metadata would describe a model that ``dvc repro`` no longer produces."""
    snapshot = info["data_snapshot"]
    for path, recorded in (
        (DATASET, snapshot["dataset_sha256"]),
        (DATASET_USERS, snapshot["users_sha256"]),
    ):
        if not path.exists():
            continue  # a workspace without the split outputs: nothing to compare with
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != recorded:
            raise StaleDataError(
                f"{MODEL_FILE} was trained on {path} with sha256 {recorded[:16]}…, "
                f"the file now has sha256 {actual[:16]}…: run `dvc repro train` first"
            )


def checked_bundle(model: bytes, info: dict, experiment: str | None) -> ModelBundle:
    """The model, loaded and checked against the current code (and data, for the workspace)."""
    # Imported here: scikit-learn takes seconds to import, and `baac rollback` does not need it.
    from baac_severity.modeling.model_store import check_feature_schema, load_model_bytes

    source = MODEL_FILE if experiment is None else f"experiment {experiment}: {MODEL_FILE}"
    bundle = load_model_bytes(model, info, source)
    check_feature_schema(bundle, source)
    if experiment is None:
        check_training_data(info)
    return bundle
