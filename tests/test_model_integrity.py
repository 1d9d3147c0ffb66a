"""A model whose recorded feature schema differs from ``baac_severity/features.py`` is refused by
``python -m baac_severity.decisions.promote`` and by the service at start-up.

The tampered bundles are the real promoted model (a fresh clone first runs the small real
pipeline) with its recorded schema altered: a feature renamed, one removed, a category set
changed, two features swapped.
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

import joblib
import pytest

from baac_severity import features
from baac_severity.config import DATASET, DATASET_USERS, PROMOTED_DIR, ROOT
from baac_severity.decisions import promote
from baac_severity.modeling.model_store import ModelBundle, feature_schema_problems, load_model
from baac_severity.testing.local_service import SERVICE, environment, free_port, import_model
from baac_severity.testing.sandbox import run

RENAMED, REMOVED, RECODED = "lum", "n_vehicles", "lum"  # features every model has (2018 too)


@pytest.fixture(scope="module")
def real_bundle(workspace) -> ModelBundle:
    """The promoted model, with the schema `baac_severity.modeling.train` records (a model promoted
    before schemas were recorded gets the one its training recorded now)."""
    bundle = load_model(workspace / PROMOTED_DIR / "model.joblib")
    if bundle.feature_schema is None:
        columns = dict.fromkeys(bundle.features, features.FEATURE_DTYPE)
        schema = features.feature_schema(columns, bundle.unit, bundle.feature_groups)
        bundle = dataclasses.replace(bundle, feature_schema=schema)
    return bundle


def tampered(bundle: ModelBundle, how: str) -> ModelBundle:
    """The bundle with its recorded schema altered; the fitted model itself is shared."""
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


def test_a_bundle_without_a_recorded_schema_is_checked_on_names_and_order(real_bundle):
    legacy = dataclasses.replace(real_bundle, feature_schema=None)
    assert feature_schema_problems(legacy) == []
    names = ["hour", *[n for n in legacy.features if n != "hour"]]
    reordered = dataclasses.replace(legacy, features=names)
    assert any("order differs" in p for p in feature_schema_problems(reordered))


def code_copy(dest: Path, bundle: ModelBundle, workspace: Path) -> Path:
    """A git repository with the package code, a model/ holding ``bundle`` and a promoted
    models/ whose bytes the refusal must leave alone."""
    files = subprocess.run(
        ["git", "ls-files", "baac_severity"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    (dest / "model").mkdir()
    joblib.dump(bundle, dest / "model" / "model.joblib")  # uncompressed: written in 0.1 s
    metadata = json.loads((workspace / PROMOTED_DIR / "metadata.json").read_text())
    (dest / "model" / "model_info.json").write_text(json.dumps(metadata))
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
            "baac_severity.decisions.promote",
        ],  # with `dvc add` and the BentoML import
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
    assert not (repo / "models.dvc").exists()
    assert not (home / "models").exists()


def test_promote_accepts_the_real_model_and_records_its_schema(
    real_bundle, workspace, tmp_path, monkeypatch
):
    """The control: the same set-up with the untampered bundle is promoted (as a first
    promotion: the gate against a champion is tests/test_promotion.py's)."""
    repo = code_copy(tmp_path / "repo", real_bundle, workspace)
    shutil.rmtree(repo / PROMOTED_DIR)
    monkeypatch.chdir(repo)
    options = promote.Options(with_dvc=False, with_bentoml=False, with_registry=False)
    metadata = promote.promote(None, options)
    assert metadata["feature_schema"] == real_bundle.feature_schema
    written = json.loads((repo / PROMOTED_DIR / "metadata.json").read_text())
    assert written["feature_schema"] == real_bundle.feature_schema
    promoted = (repo / PROMOTED_DIR / "model.joblib").read_bytes()
    assert promoted == (repo / "model" / "model.joblib").read_bytes()


def test_promote_refuses_a_model_trained_on_other_data(workspace, tmp_path, monkeypatch):
    info = json.loads((workspace / PROMOTED_DIR / "metadata.json").read_text())
    monkeypatch.chdir(workspace)
    promote.check_training_data(info)  # the data it was trained on: accepted
    monkeypatch.chdir(tmp_path)
    for path in (DATASET, DATASET_USERS):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(workspace / path, path)
    promote.check_training_data(info)
    # The same files from another split run: a real users table in place of the dataset.
    shutil.copyfile(workspace / DATASET_USERS, DATASET)
    with pytest.raises(promote.StaleDataError, match=r"trained on data/processed/dataset.parquet"):
        promote.check_training_data(info)


def test_the_service_refuses_to_start_with_a_tampered_model(real_bundle, workspace, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    shutil.copytree(ROOT / "baac_severity", served / "baac_severity")  # import_model runs its code
    bundle = tampered(real_bundle, "recoded")
    (served / PROMOTED_DIR).mkdir()
    joblib.dump(bundle, served / PROMOTED_DIR / "model.joblib")
    metadata = json.loads((workspace / PROMOTED_DIR / "metadata.json").read_text())
    metadata["feature_schema"] = bundle.feature_schema
    (served / PROMOTED_DIR / "metadata.json").write_text(json.dumps(metadata))
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
