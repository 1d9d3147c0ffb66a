"""The BentoML model store, derived from the champion on demand: ``baac sync-bentoml`` (run by
``make serve``) makes sure the champion (``models/``) is in the store as
``baac-severity:<model version>`` (the first 12 hex digits of the model file's sha256), reusing
it when a promotion or rollback brings back a model already there, and prunes the store to the
newest ``BAAC_KEEP_MODELS`` models (default 5; the champion and the registry's ``previous``
are always kept), since every new champion adds 13 MB for good otherwise.

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
    PROMOTED_DIR,
    PROMOTED_METADATA,
    PROMOTED_MODEL,
    ROOT,
)
from baac_severity.decisions import registry


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


def model_tag(model_sha256: str) -> str:
    """A model's tag in the store: the same model always gets the same tag."""
    return f"{MODEL_NAME}:{model_sha256[:12]}"


def import_model(models_dir: Path = PROMOTED_DIR) -> str:
    """Import a promoted model folder into the store; returns its tag."""
    import bentoml

    metadata = json.loads((models_dir / METADATA_FILENAME).read_text())
    with bentoml.models.create(
        model_tag(metadata["model_sha256"]),
        labels=trace_labels(metadata),
        metadata=_without_nulls(metadata),
    ) as model:
        shutil.copyfile(models_dir / MODEL_FILENAME, Path(model.path) / MODEL_FILENAME)
        shutil.copyfile(models_dir / METADATA_FILENAME, Path(model.path) / METADATA_FILENAME)
    return str(model.tag)


def stored_sha256(tag: str) -> str | None:
    """The model file hash of the stored model ``tag``, None if the store does not have it."""
    import bentoml

    try:
        return str(bentoml.models.get(tag).info.metadata.get("model_sha256"))
    except bentoml.exceptions.NotFound:
        return None


def prune(keep: int, kept_tags: set[str]) -> list[str]:
    """Delete the ``baac-severity`` models beyond the ``keep`` newest, never ``kept_tags``;
    returns the deleted tags."""
    import bentoml

    newest_first = sorted(
        bentoml.models.list(MODEL_NAME), key=lambda m: m.info.creation_time, reverse=True
    )
    removed = [str(model.tag) for model in newest_first[keep:] if str(model.tag) not in kept_tags]
    for tag in removed:
        bentoml.models.delete(tag)
    return removed


def sync(keep: int) -> tuple[str, str]:
    """The champion in the store (imported only if it is not there), the store pruned to the
    ``keep`` newest models plus the champion and ``previous``; returns (the champion's tag,
    what was done in words)."""
    if not PROMOTED_METADATA.is_file() or not PROMOTED_MODEL.is_file():
        raise FileNotFoundError(
            f"no champion in {PROMOTED_DIR}/: run `make run` (or `dvc pull "
            f"{PROMOTED_DIR}.dvc` for a teammate's champion)"
        )
    bentoml_home()
    sha256 = json.loads(PROMOTED_METADATA.read_text())["model_sha256"]
    tag = model_tag(sha256)
    if stored_sha256(tag) == sha256:
        done = "the champion, already in the store: reused"
    else:
        import_model()
        done = "the champion, imported"
    models = registry.load()
    previous = models.get(models.previous)
    kept = {tag} | ({model_tag(previous.model_sha256)} if previous else set())
    removed = prune(keep, kept)
    if removed:
        done += f"; {len(removed)} older model(s) removed ({keep} kept): {', '.join(removed)}"
    return tag, f"{tag}: {done} (BENTOML_HOME={bentoml_home()})"
