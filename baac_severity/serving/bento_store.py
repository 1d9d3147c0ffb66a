"""The BentoML model store, derived from the champion on demand: ``baac sync-bentoml`` (run by
``make serve``) imports ``models/`` as a new ``baac-severity`` model when the store's latest is
another one, and keeps only the newest ``BAAC_KEEP_MODELS`` of them (every promotion or
rollback would otherwise add 13 MB for good).

The source of truth is ``models/`` and ``registry.json`` (``decisions/registry.py``): a store
can be deleted and rebuilt from them at any time. The labels tie a served model to its
registry version, experiment, commit and data snapshot.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from baac_severity.config import (
    METADATA_FILENAME,
    MODEL_FILENAME,
    MODEL_NAME,
    PROMOTED_METADATA,
    PROMOTED_MODEL,
    ROOT,
)

KEEP_ENV = "BAAC_KEEP_MODELS"
DEFAULT_KEEP = 3


def bentoml_home() -> Path:
    """``$BENTOML_HOME``, by default ``bentoml_home/`` in the repository (git-ignored)."""
    home = Path(os.environ.setdefault("BENTOML_HOME", str(ROOT / "bentoml_home")))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    return home


def _without_nulls(value: Any) -> Any:
    """BentoML metadata accepts basic types only: drop the entries that are null."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value if v is not None]
    return value


def trace_labels(metadata: dict) -> dict[str, str]:
    """What ties a served model to its registry version, experiment, commit and data."""
    values = {
        "target": metadata.get("target"),
        "experiment": metadata.get("experiment"),
        "registry_version": (metadata.get("registry") or {}).get("version"),
        "model_sha256": metadata.get("model_sha256"),
        "git_sha": metadata.get("git_sha"),
        "dataset_sha256": (metadata.get("data_snapshot") or {}).get("dataset_sha256"),
    }
    return {key: str(value) for key, value in values.items() if value is not None}


def import_model(models_dir: Path = PROMOTED_MODEL.parent) -> str:
    """Import a promoted model folder into the store as a new model; returns its tag."""
    bentoml_home()
    import bentoml

    metadata = json.loads((models_dir / METADATA_FILENAME).read_text())
    with bentoml.models.create(
        MODEL_NAME, labels=trace_labels(metadata), metadata=_without_nulls(metadata)
    ) as model:
        shutil.copyfile(models_dir / MODEL_FILENAME, Path(model.path) / MODEL_FILENAME)
        shutil.copyfile(models_dir / METADATA_FILENAME, Path(model.path) / METADATA_FILENAME)
    return str(model.tag)


def latest() -> tuple[str, str] | None:
    """(tag, model file sha256) of the store's latest ``baac-severity``, None if none."""
    bentoml_home()
    import bentoml

    try:
        model = bentoml.models.get(f"{MODEL_NAME}:latest")
    except bentoml.exceptions.NotFound:
        return None
    return str(model.tag), str(model.info.metadata.get("model_sha256"))


def prune(keep: int) -> list[str]:
    """Delete all but the ``keep`` newest ``baac-severity`` models; returns their tags."""
    import bentoml

    stored = sorted(bentoml.models.list(MODEL_NAME), key=lambda m: m.info.creation_time)
    removed = [str(model.tag) for model in stored[: max(len(stored) - keep, 0)]]
    for tag in removed:
        bentoml.models.delete(tag)
    return removed


def sync() -> str:
    """The champion as the store's latest model (imported only if it is not), the store pruned
    to the newest ``$BAAC_KEEP_MODELS`` (default 3); returns the champion's tag, then what was
    done, in words."""
    if not PROMOTED_METADATA.is_file() or not PROMOTED_MODEL.is_file():
        raise FileNotFoundError(
            f"no champion in {PROMOTED_MODEL.parent}/: run `make run` (or `dvc pull "
            f"{PROMOTED_MODEL.parent}.dvc` for a teammate's champion)"
        )
    keep = int(os.environ.get(KEEP_ENV, DEFAULT_KEEP))
    if keep < 1:
        raise ValueError(f"{KEEP_ENV} must be at least 1, not {keep}")
    metadata = json.loads(PROMOTED_METADATA.read_text())
    stored = latest()
    if stored is not None and stored[1] == metadata["model_sha256"]:
        done = f"{stored[0]}: the champion, already the store's latest"
    else:
        done = f"{import_model()}: the champion, imported"
    removed = prune(keep)
    if removed:
        done += f"; {len(removed)} older model(s) removed, {keep} kept: {', '.join(removed)}"
    return f"{done} (BENTOML_HOME={bentoml_home()})"
