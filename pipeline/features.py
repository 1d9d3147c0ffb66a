"""Feature engineering: the one module that turns accident and road-user records into model
inputs. The ``train`` stage and the prediction service both call ``build_features``, so a
served record is encoded exactly as a trained one.

Every feature is declared once in ``FEATURES`` with its BAAC source, the years it exists and its
missing-value rule; ``python -m pipeline.features --markdown`` prints the table that
``docs/FEATURES.md`` holds. No feature derives from ``grav`` or from anything known only after
the accident (``severity``, ``severe`` and the SCD2 columns are never read here).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline import entities, schema

ACCIDENT, USER = "accident", "user"
MISSING_NATIVE = "missing (NaN), left to the model"
ALL_YEARS = "all"
NOT_2018 = "2019+ (missing for the 2018 subset)"


@dataclass(frozen=True)
class Feature:
    name: str
    group: str
    source: str
    years: str
    missing: str
    unit: str = ACCIDENT


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
GROUPS = sorted({feature.group for feature in FEATURES if feature.unit == ACCIDENT})


def feature_names(unit: str, groups: list[str]) -> list[str]:
    """The ordered feature columns for a unit of prediction and a selection of groups."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown feature group(s) {sorted(unknown)}; known: {GROUPS}")
    names = [f.name for f in FEATURES if f.unit == ACCIDENT and f.group in groups]
    if unit == USER:
        names += [f.name for f in FEATURES if f.unit == USER]
    return names


def _as_float(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").astype("float64")


def _cyclic(values: pd.Series, period: float) -> tuple[pd.Series, pd.Series]:
    angle = 2 * np.pi * values / period
    return np.sin(angle), np.cos(angle)


def _day_of_week(records: pd.DataFrame) -> pd.Series:
    dates = pd.to_datetime(
        pd.DataFrame(
            {
                "year": _as_float(records["an"]),
                "month": _as_float(records["mois"]),
                "day": _as_float(records["jour"]),
            }
        ),
        errors="coerce",
    )
    return dates.dt.day_of_week.astype("float64")


def _department_code(dep: pd.Series) -> pd.Series:
    text = dep.astype("string").str.upper().replace({"2A": "20", "2B": "20"})
    return _as_float(text)


def accident_features(records: pd.DataFrame) -> pd.DataFrame:
    """Every accident-level feature from accident entity records (see ``entities.accidents``)."""
    out = pd.DataFrame(index=records.index)
    month = _as_float(records["mois"])
    out["month"] = month
    out["month_sin"], out["month_cos"] = _cyclic(month, 12)
    dow = _day_of_week(records)
    out["day_of_week"] = dow
    out["dow_sin"], out["dow_cos"] = _cyclic(dow, 7)
    hour = _as_float(records["hour"])
    out["hour"] = hour
    out["hour_sin"], out["hour_cos"] = _cyclic(hour + _as_float(records["minute"]) / 60, 24)
    dep = _department_code(records["dep"])
    out["dep_code"] = dep
    out["overseas"] = (dep >= 971).astype("float64").where(dep.notna())
    passthrough = [
        f.name
        for f in FEATURES
        if f.unit == ACCIDENT and f.name not in out.columns and f.name in records.columns
    ]
    for name in passthrough:
        out[name] = _as_float(records[name])
    return out


def user_features(users: pd.DataFrame) -> pd.DataFrame:
    """The user's own features; ``users`` needs the accident year ``an`` alongside."""
    users = entities.valid_codes(users)
    out = pd.DataFrame(index=users.index)
    for name in ["place", "catu", "sexe", "trajet", "secu1", "secu2", "secu3", "locp", "etatp"]:
        out[name] = _as_float(users[name])
    actp = users["actp"].astype("string").replace({"A": "10", "B": "11"})
    out["actp"] = _as_float(actp)
    out["age"] = _as_float(users["an"]) - _as_float(users["an_nais"])
    slots = users[["secu1", "secu2", "secu3"]]
    protected = slots.isin(list(entities.PROTECTIVE_EQUIPMENT)).any(axis=1).astype("float64")
    out["protected"] = protected.where(slots.notna().any(axis=1))
    for name in entities.VEHICLE_ATTRIBUTES:
        out[f"veh_{name}"] = _as_float(users[f"veh_{name}"])
    return out


def build_features(
    accidents: pd.DataFrame,
    groups: list[str],
    unit: str = ACCIDENT,
    users: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The model matrix (float64, NaN for missing) in the order of ``feature_names``.

    For ``unit="user"`` one row per user of ``users``, with its accident's features joined on
    ``num_acc``; for ``unit="accident"`` one row per accident record.
    """
    names = feature_names(unit, groups)
    per_accident = accident_features(accidents)
    if unit == ACCIDENT:
        return per_accident.reindex(columns=names)
    if users is None:
        raise ValueError("user-level features need the users table")
    accident_rows = pd.Index(accidents[schema.KEY]).get_indexer(users[schema.KEY])
    if (accident_rows < 0).any():
        missing = users[schema.KEY][accident_rows < 0].iloc[0]
        raise ValueError(f"user of unknown accident {missing}")
    joined = per_accident.iloc[accident_rows].reset_index(drop=True)
    own = user_features(users.reset_index(drop=True))
    return pd.concat([joined, own], axis=1).reindex(columns=names)


def markdown_table() -> str:
    lines = [
        "| feature | unit | group | BAAC source | years | missing values |",
        "|---|---|---|---|---|---|",
    ]
    for f in FEATURES:
        lines.append(f"| `{f.name}` | {f.unit} | {f.group} | {f.source} | {f.years} | {f.missing} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.features",
        description="Print the documented feature table (the source of docs/FEATURES.md).",
    )
    parser.add_argument("--markdown", action="store_true", help="print the Markdown table")
    parser.parse_args(argv)
    sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
