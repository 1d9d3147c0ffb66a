"""From validated request records to class probabilities, with the pipeline's own code.

``to_tables`` rebuilds the four normalised BAAC tables (``baac_severity.data.schema.TABLES``) from
the records; ``Predictor`` runs ``entities.accident_columns`` (and ``entities.users`` for a
user-level model), ``features.build_features`` and the promoted model. The BentoML service and the
benchmark's plain Starlette baseline both use this module, so they compute the same thing.

Up to ``SMALL_REQUEST`` accidents, the tables hold plain NumPy columns instead of pandas arrays
(``entities.Column``): the same entity and feature code then runs without pandas' per-call
overhead, which is most of a small request's cost. Above it, pandas' vectorised conversions win.
"""

from __future__ import annotations

import gc
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.pipeline import Pipeline

from baac_severity import features
from baac_severity.config import METADATA_FILENAME, MODEL_FILENAME
from baac_severity.data import entities, schema
from baac_severity.modeling.model_store import ModelBundle, load_model
from baac_severity.serving import explain
from baac_severity.serving.schemas import TOP_CONTRIBUTIONS, PredictRequest

log = logging.getLogger("baac_severity.serving.inference")
KEY, USER_KEY = schema.KEY, schema.USER_KEY
PYTHON_STRING = pd.StringDtype("python")
FULL_COLLECTION_EVERY = 100  # middle-generation collections (CPython's default: 10)
# Accidents up to which plain columns beat pandas ones, records to model matrix (bench/serve.py,
# "crossover": median CPU ms, plain against pandas, 2 cores): 1 accident 1.8 against 6.4, 64
# 3.2 against 8.1, 256 9.3 against 16.3, 1,000 26.1 against 26.7, 5,000 138 against 129.
SMALL_REQUEST = 1_000


def _key(position: int) -> str:
    # Fixed-width keys sort in request order: entities sort accidents by num_acc and users
    # by user_id, so row i of their output is record i.
    return f"{position:08d}"


def _int16(values: list[int | None]) -> pd.arrays.IntegerArray:
    # Via an object array: several times faster than pd.array(values, dtype="Int16").
    objects = np.array(values, dtype=object)
    missing = objects == None  # noqa: E711 (elementwise on an object array)
    objects[missing] = 0
    return pd.arrays.IntegerArray(objects.astype("int16"), missing)


def _column(values: list[Any], dtype: str, plain: bool) -> Any:
    if plain:
        # entities.Column: float64 with NaN for numbers and codes, objects with None for texts.
        return np.array(values, dtype=object if dtype == "string" else "float64")
    if dtype == "Int16":
        return _int16(values)
    if dtype == "float64":
        floats = np.array([np.nan if v is None else v for v in values], dtype="float64")
        return pd.arrays.NumpyExtensionArray(floats)  # what a frame's float column holds
    if dtype == "string":
        # Python-backed strings: the same values as the tables' Arrow-backed ones, built
        # three times faster from a short list.
        return pd.array(values, dtype=PYTHON_STRING)
    return pd.array(values, dtype=dtype)


def _transpose(rows: list[dict[str, Any]], fields: list[str]) -> dict[str, list[Any]]:
    """Rows to columns in one pass (validated rows have every field): several times faster
    than one comprehension per column on a 10,000-record request."""
    if not rows:
        return {field: [] for field in fields}
    tuples = map(itemgetter(*fields), rows)
    return dict(zip(fields, map(list, zip(*tuples, strict=True)), strict=True))


def _table(
    name: str, rows: list[dict[str, Any]], keys: dict[str, list[Any]], plain: bool
) -> entities.Table:
    """A normalised table, as columns, from validated request rows and the keys set by
    ``to_tables``: the same arrays a frame of the table would hold (or their plain NumPy
    form), without the frame."""
    dtypes = {c: d for c, d in schema.dtypes(name).items() if c != "grav"}  # grav: the outcome
    values = _transpose(rows, [column for column in dtypes if column not in keys]) | keys
    return {column: _column(values[column], d, plain) for column, d in dtypes.items()}


@dataclass(frozen=True)
class Batch:
    """The request as BAAC tables, and where each road user comes from in the request."""

    tables: dict[str, entities.Table]
    user_record: np.ndarray  # per user row: index of its accident in the request
    user_position: np.ndarray  # per user row: index of the user within its accident


def _children(records: list[dict[str, Any]], part: str) -> tuple[list[dict], list[int], list[int]]:
    """The vehicles or users of every record, with their record index and their position."""
    rows: list[dict] = []
    owners: list[int] = []
    positions: list[int] = []
    for owner, record in enumerate(records):
        rows += record[part]
        owners += [owner] * len(record[part])
        positions += range(len(record[part]))
    return rows, owners, positions


def _scoped_ids(rows: list[dict[str, Any]], owners: list[int]) -> list[str | None]:
    """``id_vehicule`` made unique per accident: users find their vehicle within it."""
    ids = (row["id_vehicule"] for row in rows)
    return [None if i is None else f"{_key(o)}:{i}" for i, o in zip(ids, owners, strict=True)]


def to_tables(records: Sequence[Any], plain: bool = False) -> Batch:
    """The four normalised tables of validated ``AccidentRecord`` dicts, keyed by position;
    with ``plain``, as NumPy columns (``entities.Column``) rather than pandas arrays.

    The client's identifiers are not keys (they may repeat or be absent): ``num_acc`` and
    ``user_id`` are the request positions.
    """
    accidents = list(records)
    vehicles, vehicle_owners, _ = _children(accidents, "vehicles")
    users, user_owners, user_positions = _children(accidents, "users")
    accident_keys = [_key(i) for i in range(len(accidents))]
    tables = {
        "caracteristiques": _table("caracteristiques", accidents, {KEY: accident_keys}, plain),
        "lieux": _table("lieux", accidents, {KEY: accident_keys}, plain),
        "vehicules": _table(
            "vehicules",
            vehicles,
            {
                KEY: [accident_keys[o] for o in vehicle_owners],
                "id_vehicule": _scoped_ids(vehicles, vehicle_owners),
            },
            plain,
        ),
        "usagers": _table(
            "usagers",
            users,
            {
                KEY: [accident_keys[o] for o in user_owners],
                USER_KEY: [_key(i) for i in range(len(users))],
                "id_vehicule": _scoped_ids(users, user_owners),
            },
            plain,
        ),
    }
    return Batch(tables, np.array(user_owners, dtype=int), np.array(user_positions, dtype=int))


class TreeEnsemble:
    """``predict_proba`` of a fitted single-output random forest, without sklearn's overhead.

    sklearn's forest ``predict_proba`` spends ~7 ms per call on per-tree input validation and
    joblib dispatch; walking the trees costs 0.3 ms for one row. This adds the trees' leaf
    probabilities in the same order and divides by the number of trees, as sklearn does with
    ``n_jobs=1``, so the result is bit-identical; ``Predictor`` checks that when loading.

    From ``PARALLEL_ROWS`` rows on, a second thread walks half of the trees (sklearn's tree
    walk releases the GIL): 1,000 rows take 14 instead of 21 ms on 2 cores. The leaf
    probabilities are still added in tree order, so the result stays bit-identical.
    """

    PARALLEL_ROWS = 256  # below this, handing trees to a thread costs more than it saves

    def __init__(self, model: RandomForestClassifier | ExtraTreesClassifier) -> None:
        self.trees = [estimator.tree_ for estimator in model.estimators_]
        self.n_classes = int(model.n_classes_)
        parallel = (os.cpu_count() or 1) > 1
        self.helper = ThreadPoolExecutor(1, thread_name_prefix="trees") if parallel else None

    @staticmethod
    def supports(model: Any) -> bool:
        forest = isinstance(model, RandomForestClassifier | ExtraTreesClassifier)
        return forest and getattr(model, "n_outputs_", 0) == 1

    def _leaf_probabilities(self, trees: list[Any], x: np.ndarray) -> list[np.ndarray]:
        return [tree.predict(x)[:, : self.n_classes] for tree in trees]

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(matrix, dtype=np.float32)  # the trees' input dtype
        if self.helper is not None and len(x) >= self.PARALLEL_ROWS:
            half = len(self.trees) // 2
            first = self.helper.submit(self._leaf_probabilities, self.trees[:half], x)
            rest = self._leaf_probabilities(self.trees[half:], x)
            leaves = first.result() + rest
        else:
            leaves = self._leaf_probabilities(self.trees, x)
        total = np.zeros((len(x), self.n_classes))
        for probabilities in leaves:
            total += probabilities
        total /= len(self.trees)
        return total


@dataclass(frozen=True)
class KeyTable:
    """One target-encoded key column: its fitted categories (sorted, NaN last when missing
    keys were seen) and their encodings (one row per category, one column per output)."""

    column: int  # position in the model's input columns
    categories: np.ndarray
    encodings: np.ndarray
    prior: np.ndarray  # the encoding of a key never seen in training


class KeyEncodings:
    """The fitted ``encode`` step of a model (``features.location_encoder``) as NumPy lookups:
    the same matrix as its ``transform``, which costs ~1 ms per call in sklearn's column
    dispatch and input checks. ``Predictor`` checks the equality when loading."""

    def __init__(self, encode: ColumnTransformer, columns: list[str]) -> None:
        position = {name: i for i, name in enumerate(columns)}
        self.tables: list[KeyTable] = []
        self.passthrough = np.arange(0)
        for name, transformer, selected in encode.transformers_:
            indices = [position[c] if isinstance(c, str) else int(c) for c in selected]
            if name == "remainder":
                self.passthrough = np.array(indices, dtype=int)
            elif indices:
                self.tables += self._key_tables(transformer, indices)

    @staticmethod
    def _key_tables(encoder: Any, indices: list[int]) -> list[KeyTable]:
        # A multiclass encoder keeps one encoding per (feature, class), feature-major.
        outputs = len(encoder.classes_) if encoder.target_type_ == "multiclass" else 1
        prior = np.atleast_1d(np.asarray(encoder.target_mean_, dtype=float))
        return [
            KeyTable(
                column,
                np.asarray(encoder.categories_[i], dtype=float),
                np.column_stack([encoder.encodings_[i * outputs + j] for j in range(outputs)]),
                prior,
            )
            for i, column in enumerate(indices)
        ]

    def transform(self, x: np.ndarray) -> np.ndarray:
        parts = []
        for table in self.tables:
            values = x[:, table.column]
            at = np.minimum(np.searchsorted(table.categories, values), len(table.categories) - 1)
            found = table.categories[at]
            known = (found == values) | (np.isnan(found) & np.isnan(values))
            parts.append(np.where(known[:, None], table.encodings[at], table.prior))
        parts.append(x[:, self.passthrough])
        return np.hstack(parts)


def settle_heap() -> None:
    """For a server process, once start-up is over: freeze the start-up heap (modules, model,
    schemas: about 150,000 objects) out of the garbage collector's reach. A 1,000-accident
    request allocates enough objects to trigger a full collection, which would otherwise walk
    that whole heap again (p95 of such requests: 190-280 -> 100-120 ms; docs/serving.md).

    With the old generation frozen, CPython's rule "a full collection only once the objects
    promoted since the last one make a quarter of the old generation" no longer holds anything
    back, so full collections would run every 10 middle ones; ``FULL_COLLECTION_EVERY`` keeps
    them about as rare as before, so that the median does not pay for the shorter tail."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


class Predictor:
    """The promoted model and its metadata, loaded once; request records in, probabilities out."""

    def __init__(self, bundle: ModelBundle, metadata: dict[str, Any]) -> None:
        self.bundle = bundle
        self.metadata = metadata
        self.unit = bundle.unit
        self.version = str(metadata["version"])
        self.classes = [int(c) for c in bundle.classes]
        self.labels = list(bundle.labels)
        # A model of baac_severity.modeling.train.make_model: steps "encode" then "model" (the
        # estimator); a model saved before the encoders is the bare estimator.
        model = bundle.model
        encode, estimator = (
            (model["encode"], model["model"]) if isinstance(model, Pipeline) else (None, model)
        )
        if hasattr(estimator, "n_jobs"):
            # Thread fan-out over 100 trees costs more than it saves on request-sized batches.
            estimator.n_jobs = 1
        self.encodings = None if encode is None else KeyEncodings(encode, list(bundle.features))
        self.trees = TreeEnsemble(estimator) if TreeEnsemble.supports(estimator) else None
        if self.trees is not None and not self._trees_match_sklearn():
            log.warning("tree-by-tree prediction differs from sklearn's; using sklearn's")
            self.trees = None
        forest = TreeEnsemble.supports(estimator)
        self.contributions = explain.TreeContributions(estimator) if forest else None
        # The columns the estimator receives: the key encodings first, then the rest as is.
        self.estimator_inputs = (
            list(bundle.features)
            if encode is None
            else [str(name) for name in encode.get_feature_names_out()]
        )

    @classmethod
    def from_directory(cls, directory: str | Path) -> Predictor:
        """Load ``model.joblib`` and ``metadata.json`` as written by ``make promote``."""
        directory = Path(directory)
        metadata = json.loads((directory / METADATA_FILENAME).read_text())
        return cls(load_model(directory / MODEL_FILENAME, directory / METADATA_FILENAME), metadata)

    def _trees_match_sklearn(self) -> bool:
        rng = np.random.default_rng(0)
        # Enough rows for the two-thread path: both paths add the same leaf probabilities.
        probe = rng.normal(0, 50, size=(TreeEnsemble.PARALLEL_ROWS, len(self.bundle.features)))
        for table in [] if self.encodings is None else self.encodings.tables:
            # Keys seen in training (their encodings), and unseen ones (the prior).
            probe[::2, table.column] = rng.choice(table.categories, len(probe[::2]))
        probe[rng.random(probe.shape) < 0.2] = np.nan
        frame = pd.DataFrame(probe, columns=self.bundle.features)
        return np.array_equal(self._fast_proba(probe), self.bundle.predict_proba(frame))

    def _fast_proba(self, x: np.ndarray) -> np.ndarray:
        assert self.trees is not None
        return self.trees.predict_proba(
            x if self.encodings is None else self.encodings.transform(x)
        )

    def tables(self, records: Sequence[Any]) -> Batch:
        """The request's tables: plain columns for a small request to an accident-level model
        (``entities.users`` joins frames, so a user-level model always gets pandas ones)."""
        plain = self.unit == features.ACCIDENT and len(records) <= SMALL_REQUEST
        return to_tables(records, plain)

    def matrix(self, batch: Batch) -> np.ndarray:
        """The estimator's input: the model's feature columns (``bundle.features``), one row per
        accident or, for a user-level model, per road user."""
        if self.unit == features.ACCIDENT:
            columns = entities.accident_columns(batch.tables)
            return features.accident_matrix(columns, list(self.bundle.features))
        return self.features(batch)[self.bundle.features].to_numpy(dtype=np.float64)

    def features(self, batch: Batch) -> pd.DataFrame:
        """The feature frame: one row per accident, or per road user for a user-level model."""
        columns = entities.accident_columns(batch.tables)
        groups = self.bundle.feature_groups
        if self.unit == features.ACCIDENT:
            return features.build_features(columns, groups)
        accidents = pd.DataFrame(columns)
        users = entities.users({name: pd.DataFrame(t) for name, t in batch.tables.items()})
        users = users.merge(accidents[[KEY, "an"]], on=KEY, how="left")  # keeps the user order
        return features.build_features(accidents, groups, features.USER, users)

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """The raw class probabilities (the model's own, decision weights not applied) of the
        rows of ``matrix`` (see ``matrix``)."""
        if self.trees is None:
            return self.bundle.predict_proba(pd.DataFrame(matrix, columns=self.bundle.features))
        return self._fast_proba(matrix)

    def decide(self, probabilities: np.ndarray) -> list[int]:
        """The decided class of each row, as a column index: the training's decision rule
        (per-class weights chosen on validation for a multiclass target)."""
        return self.bundle.decide(probabilities).tolist()

    def explain(
        self, matrix: np.ndarray, probabilities: np.ndarray, wanted: np.ndarray
    ) -> list[dict[str, Any] | None]:
        """Per row of ``matrix``: where ``wanted``, the top contributions to its decided class
        (``baac_severity.serving.explain``), over the columns the forest receives (the location
        keys as their target encodings); None elsewhere, and for a model that is not a forest."""
        explanations: list[dict[str, Any] | None] = [None] * len(wanted)
        rows = np.flatnonzero(wanted)
        if self.contributions is None or len(rows) == 0:
            return explanations
        values = matrix[rows]
        if self.encodings is not None:
            values = self.encodings.transform(values)
        found = explain.top(
            self.contributions(values.astype(np.float32)),
            values,
            self.estimator_inputs,
            np.asarray(self.decide(probabilities[rows])),
            self.labels,
            TOP_CONTRIBUTIONS,
            self.encoding_priors(),
        )
        for row, explanation in zip(rows.tolist(), found, strict=True):
            explanations[row] = explanation
        return explanations

    def encoding_priors(self) -> dict[str, float]:
        """The training prior of each target-encoded estimator input (what an unseen commune
        or cell gets), by name: the encoded inputs come first, in the encoder's order."""
        if self.encodings is None:
            return {}
        names = iter(self.estimator_inputs)
        return {
            next(names): float(prior)
            for table in self.encodings.tables
            for prior in table.prior[: table.encodings.shape[1]]
        }

    def warm_up(self) -> None:
        """One prediction at start-up, so that the first client does not pay for lazy imports
        and first-call set-up (about 80 ms)."""
        minimal = {"an": 2024, "mois": 1, "vehicles": [{}], "users": [{}]}
        records = PredictRequest.model_validate({"accidents": [minimal]}).accidents
        self.predict(records)
        self.matrix(to_tables(records))  # the pandas path, which large requests take

    def predict(self, records: Sequence[Any]) -> tuple[Batch, np.ndarray, np.ndarray]:
        """The request's tables, its model matrix and the class probabilities of each row."""
        batch = self.tables(records)
        matrix = self.matrix(batch)
        return batch, matrix, self.predict_proba(matrix)
