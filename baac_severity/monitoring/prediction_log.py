"""The prediction log's layout, shared by its writer
(``baac_severity/serving/prediction_logger.py``, in the service) and its reader
(``baac_severity/monitoring/live.py``, ``make monitor``).

``bentoml.monitor`` writes one JSON line per answered request under
``<log dir>/<MONITOR_NAME>/data/data.<worker>.log`` (rotated copies end in ``.1``, ``.2``...):
one list of values per model feature, the predicted classes and one list of probabilities per
class label. Kept light (no scipy, no Hydra): the service imports it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from baac_severity.config import LOGS_DIR

DEFAULT_LOG_DIR = LOGS_DIR / "monitoring"
MONITOR_NAME = "baac_predictions"
PREDICTED_CLASS = "predicted_class"


def probability_column(label: str) -> str:
    return f"probability_{label}"


def log_files(directory: Path) -> list[Path]:
    """Every data file of the log, rotated ones (``data.1.log.1`` ...) included."""
    return sorted((directory / MONITOR_NAME / "data").glob("data.*.log*"))


def _lines(directory: Path) -> Iterator[dict]:
    for path in log_files(directory):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                yield json.loads(line)


def read_rows(
    directory: Path, features: list[str], model_version: str | None, since: str | None = None
) -> pd.DataFrame:
    """The logged rows (one per scored accident, or road user) of ``model_version`` (every
    version when None) logged at ``since`` or later (BentoML's ``timestamp``, ISO 8601 local
    time): the model features, NaN where missing."""
    frames = [
        pd.DataFrame({name: line[name] for name in features}, dtype=float)
        for line in _lines(directory)
        if (model_version is None or line.get("model_version") == model_version)
        and (since is None or line["timestamp"] >= since)
    ]
    if not frames:
        return pd.DataFrame(columns=features, dtype=float)
    return pd.concat(frames, ignore_index=True)
