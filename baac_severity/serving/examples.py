"""Rebuild API request records from the bundled BAAC data, and write the example request.

``baac examples`` writes ``baac_severity/serving/predict_request.json``:
real accidents of the test split (``data/processed/dataset.parquet``), rebuilt from the normalised
chunk tables (``data/chunks``) in the request format of ``baac_severity/serving/schemas.py``. The
tests and the benchmark use ``request_records`` to build real requests the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from baac_severity.config import CHUNKS_DIR, DATASET, ROOT
from baac_severity.data import schema

EXAMPLE = Path(__file__).with_name("predict_request.json")
KEY = schema.KEY


def load_tables(chunks_dir: Path = ROOT / CHUNKS_DIR) -> dict[str, pd.DataFrame]:
    """The four normalised tables of every ingested chunk (each accident is in one chunk)."""
    chunks = sorted(chunks_dir.glob("chunk-*"))
    if not chunks:
        raise SystemExit(f"no chunks in {chunks_dir}: run `make data` and `dvc repro` first")
    return {
        table: pd.concat(
            [pd.read_parquet(chunk / f"{table}.parquet") for chunk in chunks], ignore_index=True
        ).astype(schema.dtypes(table))
        for table in schema.TABLE_NAMES
    }


def sample_test_split(
    count: int, seed: int = 0, dataset: Path = ROOT / DATASET, split: str = "test"
) -> list[str]:
    """``count`` num_acc of the ``split`` split, drawn at random but reproducibly."""
    frame = pd.read_parquet(dataset, columns=[KEY, "dataset_split"])
    test = frame.loc[frame["dataset_split"] == split, KEY]
    return test.sample(n=min(count, len(test)), random_state=seed).tolist()


def _plain(value: Any) -> Any:
    """A JSON value: pandas missing values become null, NumPy scalars Python ones."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value


def _rows_by_key(frame: pd.DataFrame, drop: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The rows of ``frame`` as JSON-ready dicts without ``drop``, grouped by accident key in
    table order (one pass over the table: a group-by of frames costs ~1 ms per accident)."""
    columns = [c for c in frame.columns if c not in drop]
    grouped: dict[str, list[dict[str, Any]]] = {}
    for key, row in zip(
        frame[KEY].tolist(), frame[columns].itertuples(index=False, name=None), strict=True
    ):
        plain = {column: _plain(value) for column, value in zip(columns, row, strict=True)}
        grouped.setdefault(key, []).append(plain)
    return grouped


def request_records(tables: dict[str, pd.DataFrame], keys: Iterable[str]) -> list[dict]:
    """One request record per accident of ``keys`` (in that order), from the BAAC tables.

    The outcome ``grav`` is left out: it is what the model predicts.
    """
    keys = list(keys)
    wanted = {table: frame[frame[KEY].isin(keys)] for table, frame in tables.items()}
    characteristics = _rows_by_key(wanted["caracteristiques"], set())
    places = _rows_by_key(wanted["lieux"], {KEY})
    vehicles = _rows_by_key(wanted["vehicules"], {KEY})
    users = _rows_by_key(wanted["usagers"], {KEY, "grav"})
    return [
        characteristics[key][0] | places[key][0] | {"vehicles": vehicles[key], "users": users[key]}
        for key in keys
    ]


def write_example(count: int = 4, output: Path | None = None) -> None:
    """``baac examples``: write ``count`` real test-split accidents as the example request."""
    output = output or EXAMPLE
    keys = sample_test_split(count)
    payload = {"accidents": request_records(load_tables(), keys)}
    output.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(keys)} test-split accidents to {output}")
