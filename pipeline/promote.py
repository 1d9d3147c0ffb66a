"""Promote a trained model: ``models/`` (tracked by ``models.dvc``) and the BentoML store.

``python -m pipeline.promote`` takes the workspace model (``model/``);
``--experiment NAME`` takes the model of a DVC experiment, read from the DVC cache at that
experiment's commit, without touching the workspace. It writes ``models/model.joblib`` and
``models/metadata.json`` (git sha, experiment, metrics, feature schema, params, data snapshot),
runs ``dvc add models``, and imports both files into the BentoML model store as
``baac-severity`` with the same metadata, for ``app/service.py``.

It refuses (exit code 2, nothing written) a model that the current code could not serve as it
was trained: a feature schema that differs from ``pipeline/features.py``, another
scikit-learn version, or, for the workspace model, training data that ``data/processed`` no
longer holds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.io import write_json
from pipeline.paths import DATASET, DATASET_USERS, MODEL_FILE, MODEL_INFO, PROMOTED_DIR, ROOT

if TYPE_CHECKING:
    from pipeline.model_store import ModelBundle

BENTO_MODEL_NAME = "baac-severity"
PROMOTED_MODEL = PROMOTED_DIR / "model.joblib"
PROMOTED_METADATA = PROMOTED_DIR / "metadata.json"


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()


def experiment_commit(name: str) -> str:
    """The commit of a DVC experiment, from its git ref (refs/exps/<baseline>/<name>)."""
    refs = git("for-each-ref", "--format=%(refname) %(objectname)", "refs/exps").splitlines()
    matches = [
        sha for ref, sha in (line.split() for line in refs) if ref.rsplit("/", 1)[-1] == name
    ]
    if not matches:
        known = sorted({line.split()[0].rsplit("/", 1)[-1] for line in refs})
        raise SystemExit(f"no experiment named {name!r}; known experiments: {known or 'none'}")
    return matches[0]


def read_model_files(experiment: str | None) -> tuple[bytes, dict, str]:
    """(model bytes, model_info, git revision) of the workspace or an experiment."""
    if experiment is None:
        if not MODEL_FILE.exists():
            raise SystemExit(f"{MODEL_FILE} not found: run `dvc repro` first")
        return MODEL_FILE.read_bytes(), json.loads(MODEL_INFO.read_text()), git("rev-parse", "HEAD")
    import dvc.api

    rev = experiment_commit(experiment)
    model = dvc.api.read(str(MODEL_FILE), repo=str(ROOT), rev=rev, mode="rb")
    info = json.loads(dvc.api.read(str(MODEL_INFO), repo=str(ROOT), rev=rev))
    return model, info, rev


class StaleDataError(RuntimeError):
    """The workspace model was trained on other data than ``data/processed`` holds now."""


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
    # Imported here: scikit-learn takes seconds to import, and `import_into_bentoml` (used
    # by the tests and the benchmark to fill a BentoML home) does not need it.
    from pipeline.model_store import check_feature_schema, load_model_bytes

    source = MODEL_FILE if experiment is None else f"experiment {experiment}: {MODEL_FILE}"
    bundle = load_model_bytes(model, source)
    check_feature_schema(bundle, source)
    if experiment is None:
        check_training_data(info)
    return bundle


def build_metadata(
    model: bytes, info: dict, rev: str, experiment: str | None, feature_schema: dict | None
) -> dict:
    model_sha = hashlib.sha256(model).hexdigest()
    dirty = experiment is None and bool(git("status", "--porcelain", "--untracked-files=no"))
    return {
        "version": model_sha[:12],
        "model_sha256": model_sha,
        "git_sha": rev,
        "git_dirty": dirty,
        "experiment": experiment or "workspace",
        "target": info["target"],
        "unit": info["unit"],
        "model_name": info["model_name"],
        "classes": info["classes"],
        "labels": info["labels"],
        "features": info["features"],
        "feature_groups": info["feature_groups"],
        "feature_schema": feature_schema,
        "sklearn_version": info["sklearn_version"],
        "metrics": info["metrics"],
        "params": info["params"],
        "data_snapshot": info["data_snapshot"],
    }


def bentoml_home() -> Path:
    home = Path(os.environ.setdefault("BENTOML_HOME", str(ROOT / "bentoml_home")))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    return home


def without_nulls(value):
    """BentoML metadata accepts basic types only: drop the entries that are null."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value if v is not None]
    return value


def import_into_bentoml(metadata: dict) -> str:
    bentoml_home()
    import bentoml

    labels = {"target": metadata["target"], "experiment": metadata["experiment"]}
    with bentoml.models.create(
        BENTO_MODEL_NAME, labels=labels, metadata=without_nulls(metadata)
    ) as model:
        shutil.copyfile(PROMOTED_MODEL, Path(model.path) / "model.joblib")
        shutil.copyfile(PROMOTED_METADATA, Path(model.path) / "metadata.json")
    return str(model.tag)


def promote(experiment: str | None, track_with_dvc: bool = True, bentoml: bool = True) -> dict:
    model, info, rev = read_model_files(experiment)
    bundle = checked_bundle(model, info, experiment)  # before anything is written
    metadata = build_metadata(model, info, rev, experiment, bundle.feature_schema)
    PROMOTED_DIR.mkdir(exist_ok=True)
    tmp = PROMOTED_MODEL.with_suffix(".tmp")
    tmp.write_bytes(model)
    os.replace(tmp, PROMOTED_MODEL)
    write_json(metadata, PROMOTED_METADATA)
    if track_with_dvc:
        subprocess.run(
            [sys.executable, "-m", "dvc", "add", "-q", str(PROMOTED_DIR)], check=True, cwd=ROOT
        )
    tag = import_into_bentoml(metadata) if bentoml else None
    print(
        f"promoted {metadata['experiment']} ({metadata['model_name']}, target "
        f"{metadata['target']}, version {metadata['version']}, test roc_auc "
        f"{metadata['metrics']['test']['roc_auc']}) -> {PROMOTED_DIR}/"
        + (f" and BentoML model {tag}" if tag else "")
    )
    return metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.promote",
        description="Promote the workspace model or a DVC experiment's model into models/ "
        "(tracked by models.dvc) and the BentoML model store.",
    )
    parser.add_argument(
        "--experiment", "-e", help="DVC experiment name (see `dvc exp show`); default: workspace"
    )
    parser.add_argument("--no-dvc", action="store_true", help="skip `dvc add models`")
    parser.add_argument("--no-bentoml", action="store_true", help="skip the BentoML import")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    from pipeline.model_store import FeatureSchemaError, ModelVersionError

    try:
        promote(args.experiment, track_with_dvc=not args.no_dvc, bentoml=not args.no_bentoml)
    except (FeatureSchemaError, ModelVersionError, StaleDataError) as error:
        print(f"promote: refusing to promote: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
