"""No feature comes from the outcome, and fitting never sees validation or test rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from pipeline import entities, features, schema, train
from pipeline.loaders import load_year
from tests.baac_facts import OUTCOME_DERIVED_2024

ROOT = Path(__file__).resolve().parents[1]
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


def test_fitting_never_sees_validation_or_test_rows(tables_2024, tmp_path, monkeypatch):
    """Relabel every validation and test row: the fitted model must not change at all."""
    accidents = entities.accidents(tables_2024)
    accidents["severe"] = (accidents["severity"] >= schema.SEVERE_MIN_SEVERITY).astype("Int8")
    accidents["dataset_split"] = np.random.default_rng(1).choice(
        ["train", "validation", "test"], len(accidents), p=[0.6, 0.2, 0.2]
    )
    config = OmegaConf.create(
        {
            "target": {"name": "severe", "unit": "accident", "years": None},
            "model": {"name": "random_forest", "n_estimators": 5, "random_state": 0},
        }
    )
    models = []
    for relabel in (False, True):
        frame = accidents.copy()
        if relabel:
            held_out = frame["dataset_split"] != "train"
            frame.loc[held_out, "severe"] = 1 - frame.loc[held_out, "severe"]
        dataset = tmp_path / f"dataset-{relabel}.parquet"
        frame.to_parquet(dataset)
        monkeypatch.setattr(train, "DATASET", dataset)
        data = train.load_training_data(config.target, features.GROUPS)
        x_train, y_train = data.part("train")
        models.append(train.make_model(config.model).fit(x_train, y_train))
        assert len(x_train) == (frame["dataset_split"] == "train").sum()
    probe = _features(tables_2024, features.ACCIDENT)
    np.testing.assert_array_equal(models[0].predict_proba(probe), models[1].predict_proba(probe))


def test_feature_documentation_is_generated_from_the_feature_module():
    assert (ROOT / "docs" / "FEATURES.md").read_text() == features.markdown_table()
