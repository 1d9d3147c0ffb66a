"""Build the two modelled entities from the four BAAC tables: accidents and road users.

Used by the ``clean-scd2`` stage on chunk snapshots and by the prediction service on request
records, so that a served accident is described exactly as a trained one.

- An **accident** holds its characteristics, its place, aggregated vehicle facts (the vehicle
  mix, obstacles, impacts, manoeuvres), user facts that do not depend on the outcome (number of
  users, pedestrians, age range, safety equipment) and, when ``grav`` is known, ``severity``:
  the class of its worst-off user.
- A **road user** holds the user's attributes, their vehicle's attributes and ``grav``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TypeAlias

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray

from baac_severity.data import schema

KEY = schema.KEY
# A column: pandas arrays (the pipeline's chunks, the service's large requests) or NumPy arrays
# ("plain" columns: float64 with NaN for numbers and codes, objects with None for texts; the
# service's small requests, for which pandas' per-call overhead is most of the cost).
Column: TypeAlias = pd.Series | ExtensionArray | np.ndarray
# A BAAC table: a frame or its columns as arrays of equal length, all pandas or all plain.
Table: TypeAlias = pd.DataFrame | Mapping[str, Column]

# Vehicle categories (catv) grouped by vulnerability and mass.
VEHICLE_MIX = {
    "n_bicycles": {1, 80},  # bicycles and e-bikes
    "n_personal_mobility": {50, 60},  # scooters, hoverboards... (motorised or not)
    "n_mopeds": {2, 30, 41},  # two- and three-wheelers up to 50cc
    "n_motorcycles_125": {31, 32, 42},
    "n_motorcycles_large": {33, 34, 43},
    "n_cars": {7},
    "n_light_quadricycles": {3, 35, 36},
    "n_vans": {10},
    "n_heavy_goods": {13, 14, 15, 16, 17},
    "n_buses": {37, 38},
    "n_trains_trams": {39, 40},
    "n_other_vehicles": {0, 20, 21, 99},
}
OBSTACLES = {  # fixed obstacle hit (obs)
    "n_hit_parked_vehicle": {1},
    "n_hit_tree": {2},
    "n_hit_barrier": {3, 4, 5},
    "n_hit_building": {6},
    "n_hit_post_or_pole": {7, 8},
    "n_hit_other_fixed": {9, 10, 11, 12, 13, 14, 15, 17},
    "n_left_road": {16},
}
MOBILE_OBSTACLES = {  # mobile obstacle hit (obsm)
    "n_pedestrians_hit": {1},
    "n_vehicle_obstacles": {2},
    "n_rail_obstacles": {4},
    "n_animals_hit": {5, 6},
}
IMPACTS = {  # initial impact point (choc)
    "n_front_impacts": {1, 2, 3},
    "n_rear_impacts": {4, 5, 6},
    "n_side_impacts": {7, 8},
    "n_rollovers": {9},
}
MANOEUVRES = {  # main manoeuvre before the accident (manv)
    "n_going_straight": {1, 2, 3},
    "n_wrong_way": {5, 6, 8},
    "n_turning": {10, 15, 16},
    "n_changing_lane": {11, 12, 13, 14},
    "n_overtaking": {17, 18},
    "n_crossing": {19},
    "n_avoiding": {21},
    "n_stationary": {20, 22, 23, 24},
}
VEHICLE_COUNTS = {
    "catv": VEHICLE_MIX,
    "obs": OBSTACLES,
    "obsm": MOBILE_OBSTACLES,
    "choc": IMPACTS,
    "manv": MANOEUVRES,
}
# Safety equipment that protects when worn (secu1..3 codes): belt, helmet, child device,
# vest, airbag, gloves.
PROTECTIVE_EQUIPMENT = {1, 2, 3, 4, 5, 6, 7}
VEHICLE_ATTRIBUTES = ["catv", "obs", "obsm", "choc", "manv", "motor"]
USER_ATTRIBUTES = [
    "place",
    "catu",
    "sexe",
    "an_nais",
    "trajet",
    "secu1",
    "secu2",
    "secu3",
    "locp",
    "actp",
    "etatp",
]


def _lookup(codes: Iterable[int]) -> np.ndarray:
    """A boolean table indexed by code: True for the given (non-negative) codes."""
    codes = sorted(codes)
    table = np.zeros(codes[-1] + 1 if codes else 1, dtype=bool)
    table[codes] = True
    return table


# Code membership as lookup tables, built once: per request, ``np.isin`` and pandas ``isin``
# cost more than the whole computation.
CODE_LOOKUP = {name: _lookup(codes) for name, codes in schema.CODES.items()}


def _group_of_code(groups: dict[str, set[int]]) -> np.ndarray:
    """code -> index of its group in ``groups`` (-1: in none); the groups must be disjoint."""
    table = np.full(max(max(codes) for codes in groups.values()) + 1, -1)
    for position, codes in enumerate(groups.values()):
        if (table[list(codes)] >= 0).any():
            raise ValueError(f"overlapping vehicle count groups: {groups}")
        table[list(codes)] = position
    return table


GROUP_OF_CODE = {column: _group_of_code(groups) for column, groups in VEHICLE_COUNTS.items()}
PROTECTIVE_LOOKUP = _lookup(PROTECTIVE_EQUIPMENT)


def _in_lookup(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    inside = (values >= 0) & (values < len(table))
    return inside & table[np.where(inside, values, 0)]


def _array(values: Column) -> ExtensionArray | np.ndarray:
    return values.array if isinstance(values, pd.Series) else values


def is_plain(values: Column) -> bool:
    """Whether a column is a plain NumPy array rather than a pandas one."""
    return isinstance(values, np.ndarray)


def float_values(values: Column) -> np.ndarray:
    """A numeric column as float64 values, NaN for missing."""
    if isinstance(values, np.ndarray):
        return values.astype("float64", copy=False)
    return values.to_numpy(dtype="float64", na_value=np.nan)


def _integers(values: Column) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values, missing mask) of an integer column (a Series or an array).

    Missing values read as -1, which no code table and no measure range accepts.
    """
    array = _array(values)
    if isinstance(array, np.ndarray):
        missing = np.isnan(array)
        return np.where(missing, -1, array).astype("int64"), missing
    if not isinstance(array, pd.arrays.IntegerArray):
        array = pd.array(array, dtype="Int64")  # raises on non-integer values
    return array.to_numpy(dtype="int64", na_value=-1), array.isna()


def _known(name: str, ints: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Where a code is in its BAAC table, or a measure in its range."""
    if name in schema.CODES:
        return ~missing & _in_lookup(ints, CODE_LOOKUP[name])
    low, high = schema.MEASURE_RANGES[name]
    return ~missing & (ints >= low) & (ints <= high)


def valid_column(name: str, values: Column) -> ExtensionArray | np.ndarray:
    """One column under the ``valid_codes`` rule, as an array (``name`` selects the rule)."""
    array = _array(values)
    if isinstance(array, np.ndarray):
        return _valid_plain(name, array)
    if name not in schema.CODES and name not in schema.MEASURE_RANGES:
        if name == "actp":
            values = pd.Series(array, copy=False)
            return values.where(values.isin(list(schema.ACTP_CODES))).array
        return array
    if not isinstance(array, pd.arrays.IntegerArray):  # not the normalised dtype
        values = pd.Series(array, copy=False)
        if name in schema.CODES:
            return values.where(values.isin(np.array(sorted(schema.CODES[name])))).array
        low, high = schema.MEASURE_RANGES[name]
        return values.where((values >= low) & (values <= high)).array
    ints, missing = _integers(array)
    known = _known(name, ints, missing)
    return pd.arrays.IntegerArray(ints.astype(array.dtype.numpy_dtype), ~known)


def _valid_plain(name: str, array: np.ndarray) -> np.ndarray:
    """``valid_column`` of a plain column: the same rule, NaN or None for missing."""
    if name in schema.CODES or name in schema.MEASURE_RANGES:
        ints, missing = _integers(array)
        return np.where(_known(name, ints, missing), array, np.nan)
    if name == "actp":
        return np.array([v if v in schema.ACTP_CODES else None for v in array], dtype=object)
    return array


def valid_codes(frame: pd.DataFrame) -> pd.DataFrame:
    """Codes outside their BAAC table, and measures outside their range, become missing.

    This is the documented rule for unknown categories: a new ``catv`` code is treated as
    "not filled in", never as an error.
    """
    arrays = {
        position: valid_column(column, frame.iloc[:, position])
        for position, column in enumerate(frame.columns.tolist())
    }
    valid = pd.DataFrame(arrays, index=frame.index)
    valid.columns = frame.columns
    return valid


def _valid_ints(table: Table, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values, known mask) of a code or measure column under the ``valid_codes`` rule."""
    ints, missing = _integers(table[column])
    return ints, _known(column, ints, missing)


def _nullable_ints(
    values: np.ndarray, missing: np.ndarray | None = None, plain: bool = False
) -> pd.arrays.IntegerArray | np.ndarray:
    if plain:
        floats = values.astype("float64")
        return floats if missing is None else np.where(missing, np.nan, floats)
    if missing is None:
        missing = np.zeros(len(values), dtype=bool)
    return pd.arrays.IntegerArray(values.astype("int16"), missing)


def _nullable_floats(
    values: np.ndarray, missing: np.ndarray, plain: bool = False
) -> pd.arrays.FloatingArray | np.ndarray:
    if plain:
        return np.where(missing, np.nan, values)
    return pd.arrays.FloatingArray(np.where(missing, 0.0, values), missing)


def _count(rows: np.ndarray, where: np.ndarray, size: int) -> np.ndarray:
    """Per accident row (0..size-1): how many of the selected child rows point at it."""
    return np.bincount(rows[where & (rows >= 0)], minlength=size)


def _vehicle_counts(vehicles: Table, rows: np.ndarray, size: int, plain: bool) -> dict:
    """Vehicle counts per accident row; ``rows`` gives each vehicle's accident row (-1: none)."""
    every = np.ones(len(rows), dtype=bool)
    counts = {"n_vehicles": _nullable_ints(_count(rows, every, size), plain=plain)}
    for column, groups in VEHICLE_COUNTS.items():
        codes, known = _valid_ints(vehicles, column)
        table = GROUP_OF_CODE[column]
        inside = known & (codes < len(table))
        group = np.where(inside, table[np.where(inside, codes, 0)], -1)
        # One count over (accident row, group) pairs instead of one per group.
        hit = (group >= 0) & (rows >= 0)
        cells = np.bincount(rows[hit] * len(groups) + group[hit], minlength=size * len(groups))
        per_group = cells.reshape(size, len(groups))
        for position, name in enumerate(groups):
            counts[name] = _nullable_ints(per_group[:, position], plain=plain)
    return counts


def _group_extreme(
    rows: np.ndarray, values: np.ndarray, valid: np.ndarray, size: int, reduce: np.ufunc
) -> tuple[np.ndarray, np.ndarray]:
    """Per accident row: the min or max (``reduce``) of the valid values; where there is none."""
    start = np.inf if reduce is np.minimum else -np.inf
    out = np.full(size, start)
    use = valid & (rows >= 0)
    reduce.at(out, rows[use], values[use])
    return out, _count(rows, use, size) == 0


def _user_facts(users: Table, rows: np.ndarray, year: np.ndarray, size: int, plain: bool) -> dict:
    """Per accident, facts about its users known before the outcome (``grav`` is not used),
    as arrays aligned on the accident rows; missing where the source has no user attributes.

    ``rows`` gives each user's accident row (-1: none) and ``year`` each accident's ``an``
    (NaN when missing).
    """
    catu, catu_known = _valid_ints(users, "catu")
    n_users = _count(rows, np.ones(len(rows), dtype=bool), size)
    unknown = _count(rows, catu_known, size) == 0  # no user attribute at all (2018 subset)
    birth, birth_known = _valid_ints(users, "an_nais")
    user_year = np.where(rows >= 0, year[np.maximum(rows, 0)], np.nan)
    age = user_year - birth
    age_known = birth_known & ~np.isnan(user_year)
    youngest, no_age = _group_extreme(rows, age, age_known, size, np.minimum)
    oldest, _ = _group_extreme(rows, age, age_known, size, np.maximum)
    protected = np.zeros(len(rows), dtype=bool)
    for slot in ("secu1", "secu2", "secu3"):
        codes, known = _valid_ints(users, slot)
        protected |= known & _in_lookup(codes, PROTECTIVE_LOOKUP)
    not_pedestrian = catu_known & ((catu == 1) | (catu == 2))
    occupants = _count(rows, not_pedestrian, size)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = _count(rows, protected & not_pedestrian, size) / occupants
    pedestrians = _count(rows, catu_known & (catu == 3), size)
    passengers = _count(rows, catu_known & (catu == 2), size)
    return {
        "n_users": _nullable_ints(n_users, n_users == 0, plain),
        "n_pedestrians": _nullable_ints(pedestrians, unknown, plain),
        "n_passengers": _nullable_ints(passengers, unknown, plain),
        "min_age": _nullable_floats(youngest, unknown | no_age, plain),
        "max_age": _nullable_floats(oldest, unknown | no_age, plain),
        "share_protected": _nullable_floats(share, unknown | (occupants == 0), plain),
    }


def _worst_severity(users: Table, rows: np.ndarray, size: int, plain: bool) -> Column:
    grav, missing = _integers(users["grav"])
    classes = np.full(len(grav), -1)
    for code, severity in schema.GRAV_TO_SEVERITY.items():
        classes[(grav == code) & ~missing] = severity
    worst, none = _group_extreme(rows, classes, classes >= 0, size, np.maximum)
    return _nullable_ints(np.where(none, 0, worst), none, plain)


HRMN = re.compile(r"[0-9][0-9]:[0-9][0-9]")


def texts(values: Column) -> np.ndarray:
    """A text column as an object array, None for missing."""
    if isinstance(values, np.ndarray):
        return values
    return values.astype("string").to_numpy(dtype=object, na_value=None)


def _hour_minute(hrmn: Column) -> tuple[Column, Column]:
    """Hours and minutes of "HH:MM" texts; anything else goes through the general parser."""
    plain, values = is_plain(hrmn), texts(hrmn)
    if not all(text is None or HRMN.fullmatch(text) for text in values):
        parsed = time_of_day(pd.DataFrame({"hrmn": pd.array(values, dtype="string")}))
        if plain:
            return float_values(parsed["hour"]), float_values(parsed["minute"])
        return parsed["hour"].array, parsed["minute"].array
    missing = np.array([text is None for text in values], dtype=bool)
    hours = np.array([0 if text is None else int(text[:2]) for text in values], dtype="int16")
    minutes = np.array([0 if text is None else int(text[3:5]) for text in values], dtype="int16")
    return _nullable_ints(hours, missing, plain), _nullable_ints(minutes, missing.copy(), plain)


def time_of_day(characteristics: pd.DataFrame) -> pd.DataFrame:
    hrmn = characteristics["hrmn"].astype("string")
    return pd.DataFrame(
        {
            "hour": pd.to_numeric(hrmn.str[:2], errors="coerce").astype("Int16"),
            "minute": pd.to_numeric(hrmn.str[3:5], errors="coerce").astype("Int16"),
        },
        index=characteristics.index,
    )


def _take(array: ExtensionArray | np.ndarray, rows: np.ndarray) -> ExtensionArray | np.ndarray:
    """``array`` at ``rows`` (-1: missing); skipped when the rows are already in order."""
    if len(rows) == len(array) and (rows == np.arange(len(rows))).all():
        return array
    if not isinstance(array, np.ndarray):
        return array.take(rows, allow_fill=True)
    absent = rows < 0
    taken = array[np.where(absent, 0, rows)] if len(array) else np.full(len(rows), None)
    if absent.any():
        taken = taken.astype(object if taken.dtype == object else "float64")
        taken[absent] = None if taken.dtype == object else np.nan
    return taken


def _unique_keys(table: str, keys: Column) -> pd.Index | np.ndarray:
    """A table's accident keys, checked unique: a ``pd.Index`` for pandas columns, the array
    itself for plain ones (a handful of keys, where building an index costs more)."""
    if is_plain(keys):
        ordered = np.sort(keys)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        duplicated = repeated[0] if len(repeated) else None
    else:
        index = pd.Index(keys)
        duplicated = None if index.is_unique else index[index.duplicated()][0]
    if duplicated is not None:
        raise ValueError(f"{table} has several rows for accident {duplicated}")
    return keys if is_plain(keys) else index


def _sorted(keys: pd.Index | np.ndarray) -> tuple[pd.Index | np.ndarray, np.ndarray]:
    """The keys sorted, and the order that sorts them."""
    if isinstance(keys, pd.Index):
        ordered, order = keys.sort_values(return_indexer=True)
        return ordered, order
    order = np.argsort(keys, kind="stable")
    return keys[order], order


def _positions(keys: pd.Index | np.ndarray, wanted: Column) -> np.ndarray:
    """The row of each ``wanted`` key among the unique ``keys``, -1 when absent."""
    if isinstance(keys, pd.Index):
        return keys.get_indexer(wanted)
    wanted = np.asarray(wanted, dtype=object)
    if not len(keys):
        return np.full(len(wanted), -1)
    ordered, order = _sorted(keys)
    at = np.minimum(np.searchsorted(ordered, wanted), len(ordered) - 1)
    return np.where(ordered[at] == wanted, order[at], -1)


def accidents(tables: Mapping[str, Table]) -> pd.DataFrame:
    """One record per accident, sorted by ``num_acc``: ``accident_columns`` as a frame."""
    return pd.DataFrame(accident_columns(tables))


def accident_columns(tables: Mapping[str, Table]) -> dict[str, Column]:
    """The columns of ``accidents``, as arrays of equal length.

    Columns: the characteristics (``hrmn`` split into ``hour`` and ``minute``), the place, the
    vehicle counts (0 without vehicles), the user facts and, when ``grav`` is given,
    ``severity``. Characteristics and places must have one row per accident. The record is
    assembled from arrays: joins and per-column pandas operations would cost more than the
    computation on the service's small batches, and the service, which turns these columns
    straight into features, skips building a frame of them (a millisecond per request).
    Plain tables (NumPy columns, see ``Column``) give plain columns, with the same values.
    """
    characteristics = tables["caracteristiques"]
    plain = is_plain(characteristics[KEY])
    keys, order = _sorted(_unique_keys("caracteristiques", characteristics[KEY]))
    size = len(keys)
    record = {KEY: _take(_array(characteristics[KEY]), order)}
    for column in list(characteristics.keys()):
        if column not in (KEY, "hrmn"):
            record[column] = _take(valid_column(column, characteristics[column]), order)
    hour, minute = _hour_minute(characteristics["hrmn"])
    record["hour"], record["minute"] = _take(hour, order), _take(minute, order)
    place = tables["lieux"]
    place_rows = _positions(_unique_keys("lieux", place[KEY]), keys)
    for column in list(place.keys()):
        if column != KEY:
            record[column] = _take(valid_column(column, place[column]), place_rows)
    vehicles = tables["vehicules"]
    record |= _vehicle_counts(vehicles, _positions(keys, vehicles[KEY]), size, plain)
    people = tables["usagers"]
    user_rows = _positions(keys, people[KEY])
    year = float_values(record["an"])
    record |= _user_facts(people, user_rows, year, size, plain)
    if "grav" in people:
        record["severity"] = _worst_severity(people, user_rows, size, plain)
    return record


def users(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One record per road user with their vehicle's attributes, sorted by ``user_id``.

    ``grav`` is kept when the users table has it.
    """
    people = valid_codes(tables["usagers"])
    vehicles = valid_codes(tables["vehicules"])
    vehicle_columns = {name: f"veh_{name}" for name in VEHICLE_ATTRIBUTES}
    # Match on id_vehicule where published (2019+), else on (num_acc, num_veh).
    by_id = vehicles.dropna(subset=["id_vehicule"]).drop_duplicates("id_vehicule")
    by_num = vehicles.drop_duplicates([KEY, "num_veh"])
    joined_id = people[["id_vehicule"]].merge(
        by_id[["id_vehicule", *VEHICLE_ATTRIBUTES]], on="id_vehicule", how="left"
    )
    joined_num = people[[KEY, "num_veh"]].merge(
        by_num[[KEY, "num_veh", *VEHICLE_ATTRIBUTES]], on=[KEY, "num_veh"], how="left"
    )
    vehicle = joined_id[VEHICLE_ATTRIBUTES].fillna(joined_num[VEHICLE_ATTRIBUTES])
    # The outcome grav is absent from prediction requests.
    outcome = ["grav"] if "grav" in people else []
    record = people[[KEY, schema.USER_KEY, *USER_ATTRIBUTES, *outcome]].reset_index(drop=True)
    record = pd.concat([record, vehicle.rename(columns=vehicle_columns)], axis=1)
    return record.sort_values(schema.USER_KEY, kind="stable").reset_index(drop=True)
