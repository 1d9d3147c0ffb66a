"""No feature comes from the outcome, and fitting never sees validation or test rows."""

from __future__ import annotations

import logging

import joblib
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from baac_severity import features
from baac_severity.config import DATASET, DATASET_USERS, MODEL_FILE, ROOT, compose
from baac_severity.data import entities, schema
from baac_severity.data.loaders import load_year
from baac_severity.modeling import train
from tests.baac_facts import OUTCOME_DERIVED_2024

RAW_2024 = ROOT / "data" / "raw" / "2024"
OUTCOME_DERIVED = set(OUTCOME_DERIVED_2024)
POST_ACCIDENT = {"grav", "severity", "severe", "dataset_split", "valid_from", "valid_to"}
pytestmark = pytest.mark.skipif(not RAW_2024.is_dir(), reason="data/raw missing: run `make data`")


@pytest.fixture(scope="module")
def tables_2024() -> dict[str, pd.DataFrame]:
    tables = load_year(RAW_2024, 2024)
    keys = tables["caracteristiques"][schema.KEY].iloc[:3000]
    return {name: frame[frame[schema.KEY].isin(keys)] for name, frame in tables.items()}


def test_outcome_derived_2024_columns_never_reach_the_tables(tables_2024):
    for name, frame in tables_2024.items():
        assert not OUTCOME_DERIVED & set(frame.columns), name
        assert list(frame.columns) == schema.columns(name)


def test_no_feature_is_named_after_or_sourced_from_the_outcome():
    # The silver files' `age` is 2024 - an_nais: our own `age` feature is rebuilt from an_nais.
    for feature in features.FEATURES:
        assert feature.name not in POST_ACCIDENT | (OUTCOME_DERIVED - {"age"})
        assert "grav" not in feature.source and "sever" not in feature.source


def test_features_do_not_change_when_the_outcome_changes(tables_2024):
    """Scramble grav: every accident and user feature stays exactly the same."""
    scrambled = dict(tables_2024)
    users = tables_2024["usagers"].copy()
    users["grav"] = pd.array(np.random.default_rng(0).choice([1, 2, 3, 4], len(users)), "Int16")
    scrambled["usagers"] = users
    for unit in (features.ACCIDENT, features.USER):
        original, changed = (_features(tables, unit) for tables in (tables_2024, scrambled))
        pd.testing.assert_frame_equal(original, changed)
    assert not entities.accidents(scrambled)["severity"].equals(
        entities.accidents(tables_2024)["severity"]
    )


def _features(tables: dict[str, pd.DataFrame], unit: str) -> pd.DataFrame:
    accidents = entities.accidents(tables)
    users = entities.users(tables).merge(accidents[[schema.KEY, "an"]], on=schema.KEY)
    return features.build_features(accidents, features.GROUPS, unit, users)


def test_training_never_sees_validation_or_test_labels(tables_2024, tmp_path, monkeypatch, caplog):
    """The real ``train()`` twice, the second time with every validation and test label
    flipped: the fitted location encodings and every prediction on the training rows are the
    same, while the test metrics do change (the flipped labels were read). Training logs its
    progress: trees fitted and elapsed time."""
    accidents = entities.accidents(tables_2024)
    accidents["severe"] = (accidents["severity"] >= schema.SEVERE_MIN_SEVERITY).astype("Int8")
    accidents["dataset_split"] = np.random.default_rng(1).choice(
        ["train", "validation", "test"], len(accidents), p=[0.6, 0.2, 0.2]
    )
    accidents["arrival_chunk"] = 1  # one arrival chunk: the split stage adds it
    params = OmegaConf.create(compose(["model.n_estimators=10"], ROOT / "conf"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # no database to create
    (tmp_path / "metrics").mkdir()
    users = entities.users(tables_2024)
    runs = []
    for relabel in (False, True):
        frame = accidents.copy()
        if relabel:
            held_out = frame["dataset_split"] != "train"
            frame.loc[held_out, "severe"] = 1 - frame.loc[held_out, "severe"]
        DATASET.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(DATASET)
        users.to_parquet(DATASET_USERS)
        with caplog.at_level(logging.INFO, logger="baac_severity.modeling.train"):
            metrics = train.train(params)
        model = joblib.load(MODEL_FILE)  # the fitted Pipeline itself
        model["model"].n_jobs = 1  # threads add the trees' probabilities in any order
        runs.append((model, metrics))
    (first, first_metrics), (second, second_metrics) = runs
    encoders = [model["encode"].named_transformers_[features.TARGET] for model in (first, second)]
    assert encoders[0].feature_names_in_.tolist() == ["commune", "grid_cell"]
    for name in ("categories_", "encodings_"):
        for a, b in zip(getattr(encoders[0], name), getattr(encoders[1], name), strict=True):
            np.testing.assert_array_equal(a, b)
    assert encoders[0].target_mean_ == encoders[1].target_mean_
    training_rows = build_training_rows(accidents)
    np.testing.assert_array_equal(
        first.predict_proba(training_rows), second.predict_proba(training_rows)
    )
    assert first_metrics["test"]["roc_auc"] != second_metrics["test"]["roc_auc"]
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("trees ")]
    assert [line.split(" fitted")[0] for line in progress[:10]] == [
        f"trees {n}/10" for n in range(1, 11)
    ]
    assert all(line.endswith(" s)") for line in progress)


def build_training_rows(accidents: pd.DataFrame) -> pd.DataFrame:
    train_rows = accidents[accidents["dataset_split"] == "train"].reset_index(drop=True)
    return features.build_features(train_rows, features.GROUPS)


def test_feature_documentation_is_generated_from_the_feature_module():
    assert (ROOT / "docs" / "FEATURES.md").read_text() == features.markdown_table()
