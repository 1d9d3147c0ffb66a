"""Stage ``split``: a stable, stratified train/validation/test assignment per accident.

An accident is assigned once, when it first arrives, and keeps its split forever: the
assignments live in ``data/processed/split_assignments.parquet`` (a persistent output) and are
only ever appended to. New accidents are stratified by their worst severity class within their
arrival chunk, with a random generator seeded by (``split.seed``, chunk id), so the assignment is
the same whether the chunks arrived one at a time or all at once. Road users inherit the split
of their accident, so no accident is ever on both sides.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from baac_severity.config import (
    CLEAN_ACCIDENTS,
    CLEAN_USERS,
    DATASET,
    DATASET_USERS,
    SPLIT_METRICS,
    SPLIT_PARAMS,
    SPLIT_REGISTRY,
)
from baac_severity.data import scd2, schema
from baac_severity.data.io import read_json, remove_leftovers, write_json, write_parquet

SPLITS = ["train", "validation", "test"]
KEY = schema.KEY


def split_counts(n: int, fractions: list[float]) -> list[int]:
    """Rounded sizes that add up to n (cumulative rounding keeps every error under one row)."""
    bounds = np.rint(np.cumsum([0.0, *fractions]) / sum(fractions) * n).astype(int)
    return list(np.diff(bounds))


def assign_chunk(accidents: pd.DataFrame, chunk_id: int, seed: int, fractions: list[float]):
    """Stratified assignment of one arrival chunk's accidents, by severity class."""
    rng = np.random.default_rng([seed, chunk_id])
    labels = pd.Series("", index=accidents.index, dtype=object)
    for severity in sorted(accidents["severity"].dropna().unique()):
        members = accidents.index[accidents["severity"] == severity].to_numpy()
        shuffled = rng.permutation(members)
        sizes = split_counts(len(shuffled), fractions)
        labels.loc[shuffled] = np.repeat(SPLITS, sizes)
    return labels


def arrival_chunks(history: pd.DataFrame) -> pd.Series:
    return history.groupby(KEY, sort=True)["valid_from_chunk"].min().rename("arrival_chunk")


def load_registry(split_params: dict) -> pd.DataFrame:
    stored = read_json(SPLIT_PARAMS, default=None)
    if SPLIT_REGISTRY.exists() and stored == split_params:
        return pd.read_parquet(SPLIT_REGISTRY)
    if stored is not None and stored != split_params:
        print("split: split params changed, re-splitting every accident", file=sys.stderr)
    return pd.DataFrame(
        {
            KEY: pd.Series(dtype="string"),
            "arrival_chunk": pd.Series(dtype="int32"),
            "dataset_split": pd.Series(dtype="string"),
        }
    )


def extend_registry(
    registry: pd.DataFrame, current: pd.DataFrame, seed: int, fractions: list[float]
) -> pd.DataFrame:
    new = current.loc[~current[KEY].isin(registry[KEY]), [KEY, "arrival_chunk", "severity"]]
    assigned = [
        group.assign(dataset_split=assign_chunk(group, int(chunk_id), seed, fractions))
        for chunk_id, group in new.groupby("arrival_chunk", sort=True)
    ]
    if not assigned:
        return registry
    additions = pd.concat(assigned)[[KEY, "arrival_chunk", "dataset_split"]]
    registry = pd.concat([registry, additions], ignore_index=True)
    registry = registry.astype({KEY: "string", "arrival_chunk": "int32", "dataset_split": "string"})
    return registry.sort_values(KEY, kind="stable").reset_index(drop=True)


def with_targets(accidents: pd.DataFrame) -> pd.DataFrame:
    severe = (accidents["severity"] >= schema.SEVERE_MIN_SEVERITY).astype("Int8")
    return accidents.assign(severe=severe.where(accidents["severity"].notna()))


def split_report(dataset: pd.DataFrame) -> dict:
    report: dict = {"accidents": len(dataset)}
    for split in SPLITS:
        part = dataset[dataset["dataset_split"] == split]
        counts = part["severity"].value_counts()
        report[split] = {
            "accidents": len(part),
            "share": round(len(part) / len(dataset), 4),
            "severe_rate": round(float(part["severe"].mean()), 4),
            "severity": {
                label: int(counts.get(code, 0)) for code, label in enumerate(schema.SEVERITY_LABELS)
            },
        }
    shares = pd.crosstab(dataset["severity"], dataset["dataset_split"], normalize="index")
    report["share_by_severity"] = {
        schema.SEVERITY_LABELS[int(code)]: {s: round(float(row[s]), 4) for s in SPLITS}
        for code, row in shares.iterrows()
    }
    return report


def split(seed: int, fractions: list[float]) -> dict:
    # Temporaries of a run killed mid-write; every output below is itself renamed into place.
    remove_leftovers(SPLIT_REGISTRY, SPLIT_PARAMS, DATASET, DATASET_USERS, SPLIT_METRICS)
    # Through the store: parts written before a source column appeared lack it.
    history = scd2.PartitionedHistory(CLEAN_ACCIDENTS, KEY).read_parts()
    current = scd2.current(history).merge(arrival_chunks(history), on=KEY, how="left")
    split_params = {"seed": seed, "fractions": fractions}
    registry = extend_registry(load_registry(split_params), current, seed, fractions)
    dataset = with_targets(current).merge(
        registry[[KEY, "dataset_split"]], on=KEY, how="left", validate="one_to_one"
    )
    user_history = scd2.PartitionedHistory(CLEAN_USERS, schema.USER_KEY).read_parts()
    users = scd2.current(user_history).merge(
        dataset[[KEY, "an", "dataset_split"]], on=KEY, how="left", validate="many_to_one"
    )
    write_parquet(registry, SPLIT_REGISTRY)
    write_json(split_params, SPLIT_PARAMS)
    write_parquet(dataset.sort_values(KEY, kind="stable"), DATASET)
    write_parquet(users.sort_values(schema.USER_KEY, kind="stable"), DATASET_USERS)
    report = split_report(dataset)
    write_json(report, SPLIT_METRICS)
    return report
