"""A model whose recorded feature schema differs from ``baac_severity/features.py`` is refused by
``baac promote`` and by the service at start-up.

The tampered models are the real promoted model (a fresh clone first runs the small real
pipeline) with the schema recorded in its metadata altered: a feature renamed, one removed, a
category set changed, two features swapped.

The promoted model file is plain scikit-learn: a process that cannot import this project loads it
and gets the same probabilities.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from baac_severity import features
from baac_severity.config import (
    DATASET,
    DATASET_USERS,
    MODEL_FILE,
    MODEL_INFO,
    PROMOTED_DIR,
    PROMOTED_METADATA,
    PROMOTED_MODEL,
    ROOT,
)
from baac_severity.decisions import candidate, promote
from baac_severity.modeling.model_store import ModelBundle, feature_schema_problems, load_model
from baac_severity.testing.local_service import SERVICE, environment, free_port, import_model
from baac_severity.testing.sandbox import run

RENAMED, REMOVED, RECODED = "lum", "n_vehicles", "lum"  # features every model has (2018 too)


@pytest.fixture(scope="module")
def real_bundle(workspace) -> ModelBundle:
    """The promoted model and the schema its metadata records."""
    return load_model(workspace / PROMOTED_MODEL, workspace / PROMOTED_METADATA)


def tampered(bundle: ModelBundle, how: str) -> ModelBundle:
    """The model with its recorded schema altered; the fitted estimator itself is shared."""
    schema = copy.deepcopy(bundle.feature_schema)
    columns = schema["columns"]
    names = [column["name"] for column in columns]
    if how == "renamed":
        columns[names.index(RENAMED)]["name"] = f"{RENAMED}_v2"
    elif how == "removed":
        del columns[names.index(REMOVED)]
    elif how == "recoded":
        columns[names.index(RECODED)]["categories"].remove(5)
    elif how == "swapped":
        first, second = names.index("month"), names.index("hour")
        columns[first], columns[second] = columns[second], columns[first]
    return dataclasses.replace(bundle, feature_schema=schema)


def test_the_real_model_matches_the_feature_module(real_bundle):
    assert feature_schema_problems(real_bundle) == []
    recorded = {c["name"]: c for c in real_bundle.feature_schema["columns"]}
    assert recorded["lum"]["categories"] == [1, 2, 3, 4, 5]
    assert recorded["n_cars"]["categories"] == [7]  # the catv codes it counts
    assert recorded["lat"]["categories"] is None


INCONSISTENT = "the recorded feature schema does not describe the model's input columns"


@pytest.mark.parametrize(
    ("how", "expected", "consistent"),
    [
        (
            "renamed",
            [
                f"missing feature '{RENAMED}_v2': the model takes it",
                f"extra feature '{RENAMED}': the module produces it",
            ],
            False,
        ),
        ("removed", [f"extra feature '{REMOVED}': the module produces it"], False),
        (
            "recoded",
            [
                f"feature '{RECODED}': categories [1, 2, 3, 4] in the model, [1, 2, 3, 4, 5] in "
                "the module (added [5], removed [])"
            ],
            True,
        ),
        (
            "swapped",
            ["feature order differs from position 0: 'hour' in the model, 'month' in the module"],
            False,
        ),
    ],
)
def test_the_diff_names_each_difference(real_bundle, how, expected, consistent):
    bundle = tampered(real_bundle, how)
    lines = features.compare_schema(bundle.feature_schema).lines()
    assert len(lines) == len(expected)
    for line, prefix in zip(lines, expected, strict=True):
        assert line.startswith(prefix), (line, prefix)
    # The recorded names no longer being the model's input columns is a problem of its own.
    assert feature_schema_problems(bundle) == lines + ([] if consistent else [INCONSISTENT])


def test_metadata_listing_other_columns_than_the_fitted_model_is_refused(real_bundle):
    names = ["hour", *[n for n in real_bundle.features if n != "hour"]]
    reordered = dataclasses.replace(real_bundle, features=names)
    assert "the model was fitted on other columns than its metadata lists" in (
        feature_schema_problems(reordered)
    )


# A stand-in for an environment without the project: any import of it fails.
WITHOUT_PROJECT = """
import importlib.abc, sys
class NoProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "baac_severity":
            raise ImportError(f"{name}: the project is not importable here")
sys.meta_path.insert(0, NoProject())
try:
    import baac_severity
except ImportError:
    pass
else:
    raise SystemExit("baac_severity is importable")
import joblib, numpy as np, pandas as pd
model = joblib.load(sys.argv[1])
estimator = model.steps[-1][1]
if "n_jobs" in estimator.get_params():  # threads would add the trees in any order
    estimator.set_params(n_jobs=1)
np.save(sys.argv[3], model.predict_proba(pd.read_parquet(sys.argv[2])))
"""


def test_the_promoted_model_loads_and_predicts_without_the_project(
    real_bundle, workspace, tmp_path
):
    """``python -I`` (no current directory, no PYTHONPATH) with every ``baac_severity`` import
    refused: joblib and scikit-learn alone load the promoted model, and its probabilities on
    real feature rows are this process's."""
    dataset = pd.read_parquet(workspace / DATASET)
    rows = dataset[dataset["dataset_split"] == "test"].head(300).reset_index(drop=True)
    if real_bundle.unit == features.ACCIDENT:
        matrix = features.build_features(rows, real_bundle.feature_groups)
    else:
        users = pd.read_parquet(workspace / DATASET_USERS)
        users = users[users["num_acc"].isin(rows["num_acc"])].reset_index(drop=True)
        matrix = features.build_features(rows, real_bundle.feature_groups, features.USER, users)
    matrix = matrix[real_bundle.features]
    matrix.to_parquet(tmp_path / "rows.parquet")
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            WITHOUT_PROJECT,
            str(workspace / PROMOTED_MODEL),
            str(tmp_path / "rows.parquet"),
            str(tmp_path / "proba.npy"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    outside = np.load(tmp_path / "proba.npy")
    estimator = real_bundle.model.steps[-1][1]
    if "n_jobs" in estimator.get_params():
        estimator.set_params(n_jobs=1)
    assert outside.shape == (len(matrix), len(real_bundle.classes))
    np.testing.assert_array_equal(outside, real_bundle.predict_proba(matrix))


def code_copy(dest: Path, bundle: ModelBundle, workspace: Path) -> Path:
    """A git repository with the project's code, a model/ holding the promoted model with the
    metadata of ``bundle`` and a promoted models/ whose bytes the refusal must leave alone."""
    files = subprocess.run(
        ["git", "ls-files", "baac_severity"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    (dest / MODEL_FILE).parent.mkdir()
    shutil.copyfile(workspace / PROMOTED_MODEL, dest / MODEL_FILE)
    metadata = json.loads((workspace / PROMOTED_METADATA).read_text())
    (dest / MODEL_INFO).write_text(json.dumps({**metadata, **bundle.metadata()}))
    shutil.copytree(workspace / PROMOTED_DIR, dest / PROMOTED_DIR)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "test repository"], dest)
    return dest


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_promote_refuses_a_tampered_model_and_writes_nothing(real_bundle, workspace, tmp_path):
    repo = code_copy(tmp_path / "repo", tampered(real_bundle, "renamed"), workspace)
    before = snapshot(repo / PROMOTED_DIR)
    home = tmp_path / "bentoml_home"
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "baac_severity.cli",
            "promote",
        ],  # with `dvc add`
        cwd=repo,
        env=environment(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(f"promote refused in {time.perf_counter() - started:.1f} s:\n{result.stderr}")
    assert result.returncode == 2
    assert result.stderr.startswith("promote: refusing to promote: model/model.joblib: ")
    assert "the model's feature schema differs from baac_severity/features.py" in result.stderr
    assert f"missing feature '{RENAMED}_v2'" in result.stderr
    assert f"extra feature '{RENAMED}'" in result.stderr
    assert "retrain it with `dvc repro train`" in result.stderr
    assert snapshot(repo / PROMOTED_DIR) == before
    assert not (repo / "models.dvc").exists() and not (repo / "registry.json").exists()


def test_promote_accepts_the_real_model_and_records_its_schema(
    real_bundle, workspace, tmp_path, monkeypatch
):
    """The control: the same set-up with the untampered model is promoted (as a first
    promotion: the gate against a champion is tests/test_promotion.py's)."""
    repo = code_copy(tmp_path / "repo", real_bundle, workspace)
    shutil.rmtree(repo / PROMOTED_DIR)
    monkeypatch.chdir(repo)
    options = promote.Options(with_dvc=False)
    metadata = promote.promote(None, options)
    assert metadata["feature_schema"] == real_bundle.feature_schema
    written = json.loads((repo / PROMOTED_METADATA).read_text())
    assert written["feature_schema"] == real_bundle.feature_schema
    assert written["decision_weights"] == real_bundle.metadata()["decision_weights"]
    assert (repo / PROMOTED_MODEL).read_bytes() == (repo / MODEL_FILE).read_bytes()


def test_promote_refuses_a_model_trained_on_other_data(workspace, tmp_path, monkeypatch):
    info = json.loads((workspace / PROMOTED_METADATA).read_text())
    monkeypatch.chdir(workspace)
    candidate.check_training_data(info)  # the data it was trained on: accepted
    monkeypatch.chdir(tmp_path)
    for path in (DATASET, DATASET_USERS):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(workspace / path, path)
    candidate.check_training_data(info)
    # The same files from another split run: a real users table in place of the dataset.
    shutil.copyfile(workspace / DATASET_USERS, DATASET)
    stale = r"trained on data/processed/dataset.parquet"
    with pytest.raises(candidate.StaleDataError, match=stale):
        candidate.check_training_data(info)


def test_the_service_refuses_to_start_with_a_tampered_model(real_bundle, workspace, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    bundle = tampered(real_bundle, "recoded")
    (served / PROMOTED_DIR).mkdir()
    shutil.copyfile(workspace / PROMOTED_MODEL, served / PROMOTED_MODEL)
    metadata = json.loads((workspace / PROMOTED_METADATA).read_text())
    metadata["feature_schema"] = bundle.feature_schema
    (served / PROMOTED_METADATA).write_text(json.dumps(metadata))
    home = tmp_path / "bentoml_home"
    tag = import_model(served, home)
    command = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--port", str(free_port())]
    started = time.perf_counter()
    result = subprocess.run(
        [*command, "--host", "127.0.0.1"],
        cwd=ROOT,
        env=environment(home, API_KEY="integrity-test-key"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    elapsed = time.perf_counter() - started
    print(f"serve exited {result.returncode} in {elapsed:.1f} s:\n{result.stderr[-700:]}")
    assert result.returncode != 0
    assert f"baac-severity: refusing to start: model {tag} (" in result.stderr
    assert (
        f"feature '{RECODED}': categories [1, 2, 3, 4] in the model, [1, 2, 3, 4, 5] in the "
        "module (added [5], removed [])"
    ) in result.stderr
    assert "Traceback" not in result.stderr
