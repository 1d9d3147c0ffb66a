"""Feature engineering: the one module that turns accident and road-user records into model
inputs. The ``train`` stage and the prediction service both call ``build_features``, so a
served record is encoded exactly as a trained one.

Every feature is declared once in ``FEATURES`` with its BAAC source, the years it exists and its
missing-value rule; ``python -m baac_severity.features --markdown`` prints the table that
``docs/FEATURES.md`` holds. No feature derives from ``grav`` or from anything known only after
the accident (``severity``, ``severe`` and the SCD2 columns are never read here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray
from pandas.api.types import is_bool_dtype, is_numeric_dtype
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import TargetEncoder

from baac_severity.data import entities, schema

ACCIDENT, USER = "accident", "user"
MISSING_NATIVE = "missing (NaN), left to the model"
ALL_YEARS = "all"
NOT_2018 = "2019+ (missing for the 2018 subset)"
# Every feature, codes included, is a float64 column: NaN is the one missing value.
FEATURE_DTYPE = "float64"
TARGET = "target"
UNSEEN_KEY = "missing: a category of its own; unseen in training → the training prior"
GRID_PER_DEGREE = 10  # grid cells of 0.1° of latitude by 0.1° of longitude
# Out-of-fold target encoding: folds of the training rows, shuffled with the model's seed.
ENCODING_FOLDS = 5


@dataclass(frozen=True)
class Feature:
    name: str
    group: str
    source: str
    years: str
    missing: str
    unit: str = ACCIDENT
    # "target": a key column the saved model replaces by its out-of-fold target encoding.
    encoding: str | None = None


def _code_features(group: str, table: str, names: list[str], years: str = ALL_YEARS):
    return [
        Feature(name, group, f"{table}.{name} (code)", years, "unknown code → missing")
        for name in names
    ]


def _count_features() -> list[Feature]:
    features = [Feature("n_vehicles", "vehicles", "count of vehicules rows", ALL_YEARS, "0")]
    for column, groups in entities.VEHICLE_COUNTS.items():
        for name, codes in groups.items():
            source = f"vehicules.{column} in {sorted(codes)}"
            features.append(Feature(name, "vehicles", source, ALL_YEARS, "0 when no vehicle"))
    return features


FEATURES: list[Feature] = [
    Feature("month", "time", "caracteristiques.mois", ALL_YEARS, MISSING_NATIVE),
    Feature("month_sin", "time", "sin(2π mois/12)", ALL_YEARS, MISSING_NATIVE),
    Feature("month_cos", "time", "cos(2π mois/12)", ALL_YEARS, MISSING_NATIVE),
    Feature("day_of_week", "time", "an, mois, jour (0 = Monday)", NOT_2018, MISSING_NATIVE),
    Feature("dow_sin", "time", "sin(2π day_of_week/7)", NOT_2018, MISSING_NATIVE),
    Feature("dow_cos", "time", "cos(2π day_of_week/7)", NOT_2018, MISSING_NATIVE),
    Feature("hour", "time", "caracteristiques.hrmn (hours)", ALL_YEARS, MISSING_NATIVE),
    Feature("hour_sin", "time", "sin(2π (hour + minute/60)/24)", ALL_YEARS, MISSING_NATIVE),
    Feature("hour_cos", "time", "cos(2π (hour + minute/60)/24)", ALL_YEARS, MISSING_NATIVE),
    *_code_features("conditions", "caracteristiques", ["lum", "agg", "int", "atm"]),
    *_code_features("conditions", "caracteristiques", ["col"], NOT_2018),
    *_code_features("conditions", "lieux", ["surf"]),
    *_code_features(
        "place", "lieux", ["catr", "circ", "nbv", "vosp", "prof", "plan", "infra", "situ"]
    ),
    Feature("vma", "place", "lieux.vma (speed limit, km/h)", NOT_2018, MISSING_NATIVE),
    Feature("lat", "location", "caracteristiques.lat (degrees)", ALL_YEARS, MISSING_NATIVE),
    Feature("long", "location", "caracteristiques.long (degrees)", ALL_YEARS, MISSING_NATIVE),
    Feature(
        "dep_code",
        "location",
        "caracteristiques.dep (INSEE number; 2A/2B → 20)",
        NOT_2018,
        MISSING_NATIVE,
    ),
    Feature("overseas", "location", "caracteristiques.dep ≥ 971", NOT_2018, MISSING_NATIVE),
    Feature(
        "commune",
        "location",
        "caracteristiques.com (INSEE commune code, department included; 2A/2B → 20), "
        "**target-encoded** in the model",
        NOT_2018,
        UNSEEN_KEY,
        encoding=TARGET,
    ),
    Feature(
        "grid_cell",
        "location",
        f"the {1 / GRID_PER_DEGREE}° lat/long cell of caracteristiques.lat, long, "
        "**target-encoded** in the model",
        ALL_YEARS,
        UNSEEN_KEY,
        encoding=TARGET,
    ),
    *_count_features(),
    Feature("n_users", "users", "count of usagers rows", ALL_YEARS, "never missing"),
    Feature("n_pedestrians", "users", "usagers.catu = 3", NOT_2018, MISSING_NATIVE),
    Feature("n_passengers", "users", "usagers.catu = 2", NOT_2018, MISSING_NATIVE),
    Feature("min_age", "users", "an − usagers.an_nais (youngest)", NOT_2018, MISSING_NATIVE),
    Feature("max_age", "users", "an − usagers.an_nais (oldest)", NOT_2018, MISSING_NATIVE),
    Feature(
        "share_protected",
        "users",
        "share of drivers and passengers with secu1..3 protective",
        NOT_2018,
        MISSING_NATIVE,
    ),
    # Road-user level: the user's own attributes and their vehicle's.
    *[
        Feature(name, "user", f"usagers.{name} (code)", NOT_2018, "unknown code → missing", USER)
        for name in ["place", "catu", "sexe", "trajet", "secu1", "secu2", "secu3", "locp"]
    ],
    Feature("actp", "user", "usagers.actp (0-9, A=10, B=11)", NOT_2018, MISSING_NATIVE, USER),
    Feature("etatp", "user", "usagers.etatp (code)", NOT_2018, MISSING_NATIVE, USER),
    Feature("age", "user", "an − usagers.an_nais", NOT_2018, MISSING_NATIVE, USER),
    Feature(
        "protected", "user", "secu1..3 has protective equipment", NOT_2018, MISSING_NATIVE, USER
    ),
    *[
        Feature(
            f"veh_{name}",
            "user",
            f"vehicules.{name} of the user's vehicle",
            NOT_2018,
            MISSING_NATIVE,
            USER,
        )
        for name in entities.VEHICLE_ATTRIBUTES
    ],
]
TARGET_ENCODED = [feature.name for feature in FEATURES if feature.encoding == TARGET]
GROUPS = sorted({feature.group for feature in FEATURES if feature.unit == ACCIDENT})
# Accident records: the ``accidents`` entity as a frame (training) or as its columns
# (``entities.accident_columns``, the service).
Records: TypeAlias = pd.DataFrame | Mapping[str, entities.Column]


def feature_names(unit: str, groups: list[str]) -> list[str]:
    """The ordered feature columns for a unit of prediction and a selection of groups."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown feature group(s) {sorted(unknown)}; known: {GROUPS}")
    names = [f.name for f in FEATURES if f.unit == ACCIDENT and f.group in groups]
    if unit == USER:
        names += [f.name for f in FEATURES if f.unit == USER]
    return names


def _as_float(values: pd.Series | ExtensionArray) -> pd.Series:
    return pd.to_numeric(pd.Series(values, copy=False), errors="coerce").astype("float64")


def _floats(values: entities.Column) -> np.ndarray:
    """``_as_float`` as an array; numeric columns skip the text parser (same values, faster)."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":  # a plain column
        return values.astype("float64", copy=False)
    if is_numeric_dtype(values.dtype) and not is_bool_dtype(values.dtype):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    return _as_float(values).to_numpy()


def _cyclic(values: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
    angle = 2 * np.pi * values / period
    return np.sin(angle), np.cos(angle)


def _integral(*values: np.ndarray) -> np.ndarray:
    return np.logical_and.reduce([value == np.floor(value) for value in values])


def _weekday(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Day of the week (0 = Monday) of the date, NaN when there is no such date.

    Dates of 1900-2100 are computed with NumPy calendar arithmetic; any other non-missing
    combination goes through ``pd.to_datetime``, the reference rule, which costs a millisecond.
    """
    weekday = np.full(len(year), np.nan)
    with np.errstate(invalid="ignore"):
        ordinary = (year >= 1900) & (year <= 2100) & (month >= 1) & (month <= 12) & (day >= 1)
        ordinary &= (day <= 31) & _integral(year, month, day)
    rows = np.flatnonzero(ordinary)
    months = (year[rows].astype("int64") - 1970) * 12 + month[rows].astype("int64") - 1
    first = months.astype("datetime64[M]").astype("datetime64[D]").astype("int64")
    following = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype("int64")
    days = day[rows].astype("int64")
    exists = days <= following - first
    # Day 0 of the epoch, 1970-01-01, was a Thursday (3).
    weekday[rows[exists]] = (first[exists] + days[exists] - 1 + 3) % 7
    other = ~ordinary & ~(np.isnan(year) | np.isnan(month) | np.isnan(day))
    if other.any():
        parts = {"year": year[other], "month": month[other], "day": day[other]}
        dates = pd.to_datetime(pd.DataFrame(parts), errors="coerce")
        weekday[other] = dates.dt.day_of_week.to_numpy(dtype="float64", na_value=np.nan)
    return weekday


INSEE = re.compile(r"[0-9]{1,6}")
CORSICA = re.compile(r"^2[AB]")
SMALL = 2000  # rows up to which per-value Python parsing is faster than pandas


def _insee_numbers(codes: entities.Column) -> np.ndarray:
    """INSEE department or commune codes as numbers; Corsica's 2A and 2B read as 20 (its
    number before 1976, under which its communes kept distinct numbers): 2A004 → 20004."""
    texts = entities.texts(codes)
    # A Python loop beats pandas' text methods on the service's few rows, not on a dataset.
    if len(texts) <= SMALL:
        numbers = [None if t is None else CORSICA.sub("20", t.upper()) for t in texts]
        if all(n is None or INSEE.fullmatch(n) for n in numbers):
            return np.array([np.nan if n is None else int(n) for n in numbers], dtype="float64")
    text = pd.Series(texts, dtype="string").str.upper()
    return _as_float(text.str.replace(CORSICA, "20", regex=True)).to_numpy()


def _grid_cells(lat: np.ndarray, long: np.ndarray) -> np.ndarray:
    """A number per grid cell of the coordinates (``GRID_PER_DEGREE``); NaN without both."""
    with np.errstate(invalid="ignore"):
        row = np.floor(lat * GRID_PER_DEGREE) + 90 * GRID_PER_DEGREE
        column = np.floor(long * GRID_PER_DEGREE) + 180 * GRID_PER_DEGREE
    # Columns take 0-3600, so 4,000 per row keeps cells apart (exact in float64).
    return row * 4000 + column


DERIVED = [
    "month",
    "month_sin",
    "month_cos",
    "day_of_week",
    "dow_sin",
    "dow_cos",
    "hour",
    "hour_sin",
    "hour_cos",
    "dep_code",
    "overseas",
    "commune",
    "grid_cell",
]
PASSTHROUGH = [f.name for f in FEATURES if f.unit == ACCIDENT and f.name not in DERIVED]


def _accident_arrays(records: Records) -> dict[str, np.ndarray]:
    """Every accident-level feature of ``records`` as float64 arrays, in a fixed order.

    Arrays rather than frame columns: the service computes features for one record at a
    time, where inserting 70 columns into a frame costs more than computing them.
    """
    out = {}
    month = _floats(records["mois"])
    out["month"] = month
    out["month_sin"], out["month_cos"] = _cyclic(month, 12)
    dow = _weekday(_floats(records["an"]), month, _floats(records["jour"]))
    out["day_of_week"] = dow
    out["dow_sin"], out["dow_cos"] = _cyclic(dow, 7)
    hour = _floats(records["hour"])
    out["hour"] = hour
    out["hour_sin"], out["hour_cos"] = _cyclic(hour + _floats(records["minute"]) / 60, 24)
    dep = _insee_numbers(records["dep"])
    out["dep_code"] = dep
    with np.errstate(invalid="ignore"):
        out["overseas"] = np.where(np.isnan(dep), np.nan, (dep >= 971).astype("float64"))
    out["commune"] = _insee_numbers(records["com"])
    out["grid_cell"] = _grid_cells(_floats(records["lat"]), _floats(records["long"]))
    columns = set(records.keys())
    present = [name for name in PASSTHROUGH if name in columns]
    if not isinstance(records, pd.DataFrame):
        return out | {name: _floats(records[name]) for name in present}
    selected = records[present]
    if all(is_numeric_dtype(d) and not is_bool_dtype(d) for d in selected.dtypes.to_numpy()):
        # One conversion for ~55 numeric columns: the same values as _floats column by
        # column, for a fraction of the per-column cost.
        block = selected.to_numpy(dtype="float64", na_value=np.nan)
        out |= {name: block[:, position] for position, name in enumerate(present)}
    else:
        out |= {name: _floats(records[name]) for name in present}
    return out


def _matrix(arrays: dict[str, np.ndarray], names: list[str], rows: int) -> np.ndarray:
    """A float64 matrix of ``names`` (all-NaN for names without an array)."""
    # Column-major, so that each column is written contiguously and pandas takes the
    # matrix as its single block without copying it.
    matrix = np.full((rows, len(names)), np.nan, dtype=FEATURE_DTYPE, order="F")
    for position, name in enumerate(names):
        if name in arrays:
            matrix[:, position] = arrays[name]
    return matrix


def _frame(
    arrays: dict[str, np.ndarray], names: list[str], rows: int, index: pd.Index
) -> pd.DataFrame:
    """A float64 frame of ``names`` (all-NaN for names without an array), built in one block."""
    matrix = _matrix(arrays, names, rows)
    columns = pd.Index(names, dtype="str")
    return pd.DataFrame(matrix, index=index, columns=columns, copy=False)


USER_CODES = ["place", "catu", "sexe", "trajet", "secu1", "secu2", "secu3", "locp", "etatp"]


def _user_arrays(users: pd.DataFrame) -> dict[str, np.ndarray]:
    """The user's own features as float64 arrays (``users`` needs the accident's ``an``)."""
    out = {}
    valid = {
        name: pd.Series(entities.valid_column(name, users[name]))
        for name in [*USER_CODES, "actp", "an_nais"]
    }
    for name in USER_CODES:
        out[name] = _floats(valid[name])
    actp = valid["actp"].astype("string").replace({"A": "10", "B": "11"})
    out["actp"] = _as_float(actp).to_numpy()
    out["age"] = _floats(users["an"]) - _floats(valid["an_nais"])
    slots = pd.DataFrame({slot: valid[slot] for slot in ("secu1", "secu2", "secu3")})
    protected = slots.isin(list(entities.PROTECTIVE_EQUIPMENT)).any(axis=1).to_numpy("float64")
    out["protected"] = np.where(slots.notna().any(axis=1).to_numpy(), protected, np.nan)
    for name in entities.VEHICLE_ATTRIBUTES:
        out[f"veh_{name}"] = _floats(users[f"veh_{name}"])
    return out


def build_features(
    accidents: Records,
    groups: list[str],
    unit: str = ACCIDENT,
    users: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The model matrix (float64, NaN for missing) in the order of ``feature_names``.

    For ``unit="user"`` one row per user of ``users``, with its accident's features joined on
    ``num_acc``; for ``unit="accident"`` one row per accident record (a frame keeps its index).
    """
    names = feature_names(unit, groups)
    per_accident = _accident_arrays(accidents)
    if unit == ACCIDENT:
        rows = len(accidents[schema.KEY])
        index = accidents.index if isinstance(accidents, pd.DataFrame) else pd.RangeIndex(rows)
        return _frame(per_accident, names, rows, index)
    if users is None:
        raise ValueError("user-level features need the users table")
    accident_rows = pd.Index(accidents[schema.KEY]).get_indexer(users[schema.KEY])
    if (accident_rows < 0).any():
        missing = users[schema.KEY][accident_rows < 0].iloc[0]
        raise ValueError(f"user of unknown accident {missing}")
    arrays = {name: values[accident_rows] for name, values in per_accident.items()}
    arrays |= _user_arrays(users)
    return _frame(arrays, names, len(users), pd.RangeIndex(len(users)))


def accident_matrix(accidents: Records, names: list[str]) -> np.ndarray:
    """The accident-level model matrix of ``names`` (a model's feature columns, in its order):
    ``build_features(accidents, ...)[names]`` as an array, without the frame. The service's
    small requests call it on plain columns (``entities.Column``)."""
    return _matrix(_accident_arrays(accidents), names, len(accidents[schema.KEY]))


def location_encoder(random_state: int | None) -> ColumnTransformer:
    """The first step of every model: the ``TARGET_ENCODED`` key columns present in its input
    become out-of-fold target encodings (one column per key, or per key and class for a
    multiclass target), followed by every other column unchanged.

    ``fit_transform`` cross-fits the training rows (each row's encoding comes from the other
    folds, so the model does not learn from its own label); ``transform`` uses the encodings
    of all training rows, and a commune or cell never seen in training gets the prior, the
    training mean of the target. Missing keys form a category of their own.
    """
    folds = StratifiedKFold(ENCODING_FOLDS, shuffle=True, random_state=random_state)
    # A continuous target would need KFold; every target of this project is a class.
    encoder = TargetEncoder(cv=folds)
    keys = make_column_selector(pattern=f"^(?:{'|'.join(TARGET_ENCODED)})$")
    return ColumnTransformer(
        [(TARGET, encoder, keys)], remainder="passthrough", verbose_feature_names_out=False
    )


# --- the feature schema a model records, and its comparison with this module -------------

# The codes a code-valued feature distinguishes, beyond the BAAC code tables of schema.CODES.
COUNTED_CODES = {
    name: codes for groups in entities.VEHICLE_COUNTS.values() for name, codes in groups.items()
}
PROTECTIVE_FEATURES = {"share_protected", "protected"}
ACTP_VALUES = {
    code: 10 + "AB".index(code) if code in "AB" else int(code) for code in schema.ACTP_CODES
}


def feature_categories(name: str) -> list[int] | None:
    """The codes a code-valued feature takes or counts (its category set); None for a measure.

    A model trained when a code table or a counted group was different encodes the same record
    differently, so the categories are part of the schema a model records.
    """
    source = name.removeprefix("veh_")
    if source in schema.CODES:
        return sorted(schema.CODES[source])
    if name in COUNTED_CODES:
        return sorted(COUNTED_CODES[name])
    if name in PROTECTIVE_FEATURES:
        return sorted(entities.PROTECTIVE_EQUIPMENT)
    if name == "actp":
        return sorted(ACTP_VALUES.values())
    return None


def feature_encoding(name: str) -> str | None:
    """How the saved model encodes a feature before its estimator: "target" or None (as is)."""
    return next((f.encoding for f in FEATURES if f.name == name), None)


def feature_schema(columns: dict[str, str], unit: str, groups: list[str]) -> dict:
    """The feature schema recorded with a model whose input columns are ``columns`` (name ->
    dtype, in the model's order), built by this module for ``unit`` and ``groups``.

    ``unused`` lists the features this module produces that the model does not take (dropped
    at training for having no value), so that a feature added later is told apart from them.
    """
    return {
        "unit": unit,
        "groups": list(groups),
        "columns": [
            {
                "name": name,
                "dtype": dtype,
                "categories": feature_categories(name),
                "encoding": feature_encoding(name),
            }
            for name, dtype in columns.items()
        ],
        "unused": [name for name in feature_names(unit, groups) if name not in columns],
    }


@dataclass(frozen=True)
class SchemaDiff:
    """How a model's recorded feature schema differs from what this module produces."""

    missing: list[str]  # the model takes them; this module no longer produces them
    extra: list[str]  # this module produces them; the model neither takes nor dropped them
    changed: list[str]  # one line per feature whose dtype or categories differ
    order: str | None  # where the order of the shared features first differs

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra or self.changed or self.order)

    def lines(self) -> list[str]:
        lines = [
            f"missing feature {name!r}: the model takes it, the module no longer produces it"
            for name in self.missing
        ]
        lines += [
            f"extra feature {name!r}: the module produces it, the model was not trained on it"
            for name in self.extra
        ]
        return lines + self.changed + ([self.order] if self.order else [])


def _category_change(name: str, recorded: list[int] | None, current: list[int] | None) -> str:
    added = sorted(set(current or []) - set(recorded or []))
    removed = sorted(set(recorded or []) - set(current or []))
    return (
        f"feature {name!r}: categories {recorded} in the model, {current} in the module "
        f"(added {added}, removed {removed})"
    )


def compare_schema(recorded: dict) -> SchemaDiff:
    """Compare a model's recorded feature schema with what this module produces now.

    A key absent from the recorded columns (a model saved before dtypes and categories were
    recorded) is not compared, nor are extra features when ``unused`` is null.
    """
    try:
        declared = feature_names(recorded["unit"], list(recorded["groups"]))
    except ValueError as error:
        return SchemaDiff([], [], [str(error)], None)
    columns = {column["name"]: column for column in recorded["columns"]}
    missing = [name for name in columns if name not in declared]
    unused = recorded.get("unused")
    extra = [] if unused is None else [n for n in declared if n not in columns and n not in unused]
    changed = []
    for name in (n for n in declared if n in columns):
        column = columns[name]
        if "dtype" in column and column["dtype"] != FEATURE_DTYPE:
            changed.append(
                f"feature {name!r}: dtype {column['dtype']} in the model, "
                f"{FEATURE_DTYPE} in the module"
            )
        if "categories" in column and column["categories"] != feature_categories(name):
            changed.append(_category_change(name, column["categories"], feature_categories(name)))
        if "encoding" in column and column["encoding"] != feature_encoding(name):
            changed.append(
                f"feature {name!r}: encoding {column['encoding']} in the model, "
                f"{feature_encoding(name)} in the module"
            )
    model_order = [name for name in columns if name in declared]
    module_order = [name for name in declared if name in columns]
    order = None
    if model_order != module_order:
        # The same names in two orders: they first differ before either ends.
        pairs = enumerate(zip(model_order, module_order, strict=True))
        at = next(i for i, (model, module) in pairs if model != module)
        order = (
            f"feature order differs from position {at}: {model_order[at]!r} in the model, "
            f"{module_order[at]!r} in the module"
        )
    return SchemaDiff(missing, extra, changed, order)


def markdown_table() -> str:
    lines = [
        "| feature | unit | group | BAAC source | years | missing values |",
        "|---|---|---|---|---|---|",
    ]
    for f in FEATURES:
        lines.append(
            f"| `{f.name}` | {f.unit} | {f.group} | {f.source} | {f.years} | {f.missing} |"
        )
    return "\n".join(lines) + "\n"
