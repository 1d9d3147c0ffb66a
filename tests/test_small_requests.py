"""The service's two request paths give the same features and probabilities.

Small requests are scored from plain NumPy columns, large ones from pandas arrays
(``baac_severity.serving.inference.SMALL_REQUEST``), through the same entity and feature code
(``entities.accident_columns``, ``features.accident_matrix``). Checked on every validation and
test row of the bundled data, and against the training path (the features built from the
``clean-scd2`` dataset).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from baac_severity import features
from baac_severity.config import DATASET
from baac_severity.data import entities, schema
from baac_severity.serving import inference
from baac_severity.serving.examples import load_tables, request_records
from baac_severity.serving.schemas import MAX_RECORDS, PredictRequest

pytestmark = pytest.mark.slow
EXACT = 1e-12


@pytest.fixture(scope="module")
def predictor(workspace) -> inference.Predictor:
    predictor = inference.Predictor.from_directory(workspace / "models")
    if predictor.unit != features.ACCIDENT:
        pytest.skip("the small-request path serves accident-level models")
    return predictor


@pytest.fixture(scope="module")
def held_out(workspace) -> tuple[pd.DataFrame, list[dict]]:
    """Every validation and test accident: its dataset row and its validated request record."""
    dataset = pd.read_parquet(workspace / DATASET)
    rows = dataset[dataset["dataset_split"].isin(["validation", "test"])].reset_index(drop=True)
    records = request_records(load_tables(workspace / "data" / "chunks"), rows[schema.KEY])
    validated = []
    for start in range(0, len(records), MAX_RECORDS):
        chunk = records[start : start + MAX_RECORDS]
        validated += PredictRequest.model_validate({"accidents": chunk}).accidents
    return rows, validated


@pytest.fixture(scope="module")
def both_paths(predictor, held_out) -> dict[str, np.ndarray]:
    """The model matrix of every held-out record through each path, in one call each."""
    _, records = held_out
    return {
        "plain": predictor.matrix(inference.to_tables(records, plain=True)),
        "pandas": predictor.matrix(inference.to_tables(records, plain=False)),
    }


def test_every_validation_and_test_row_gets_the_same_features_on_both_paths(
    predictor, held_out, both_paths
):
    rows, records = held_out
    plain, batched = both_paths["plain"], both_paths["pandas"]
    assert len(records) == len(rows) > 1000
    assert plain.shape == batched.shape == (len(rows), len(predictor.bundle.features))
    np.testing.assert_array_equal(plain, batched)  # NaN where NaN, every value identical
    assert np.isnan(plain).any() and not np.isnan(plain).all(axis=0).any()
    # The training path: the same features built from the clean-scd2 dataset's rows.
    trained = features.build_features(rows, predictor.bundle.feature_groups)
    np.testing.assert_array_equal(plain, trained[predictor.bundle.features].to_numpy())


def test_every_validation_and_test_row_gets_the_same_probabilities_on_both_paths(
    predictor, both_paths
):
    plain = predictor.predict_proba(both_paths["plain"])
    batched = predictor.predict_proba(both_paths["pandas"])
    np.testing.assert_allclose(plain, batched, rtol=0, atol=EXACT)
    sklearn = predictor.bundle.predict_proba(
        pd.DataFrame(both_paths["pandas"], columns=predictor.bundle.features)
    )
    np.testing.assert_allclose(plain, sklearn, rtol=0, atol=EXACT)


def test_one_accident_at_a_time_gets_its_row_of_the_batch(predictor, held_out, both_paths):
    """A single-accident request (the plain path, one record) gets exactly its row of the
    whole held-out batch: no feature reads another record."""
    _, records = held_out
    picked = np.random.default_rng(3).choice(len(records), 300, replace=False)
    for index in picked.tolist():
        batch = predictor.tables([records[index]])
        assert entities.is_plain(batch.tables["caracteristiques"][schema.KEY])
        np.testing.assert_array_equal(predictor.matrix(batch)[0], both_paths["pandas"][index])


def test_requests_above_the_threshold_take_the_pandas_path(predictor, held_out):
    _, records = held_out
    small = predictor.tables(records[: inference.SMALL_REQUEST])
    large = predictor.tables(records[: inference.SMALL_REQUEST + 1])
    assert entities.is_plain(small.tables["usagers"]["catu"])
    assert not entities.is_plain(large.tables["usagers"]["catu"])
