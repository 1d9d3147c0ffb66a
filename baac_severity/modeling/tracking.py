"""MLflow tracking into one local SQLite store at the main repository's root.

``dvc exp run --queue`` and ``--temp`` run in a temporary copy under ``.dvc/tmp/exps/``: the
store is resolved from the main repository so that every experiment lands in the same place
as workspace runs. Tracking is best effort: if MLflow fails, training warns and goes on.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

STORE_NAME = "mlflow.db"
EXPERIMENT = "baac-severity"
log = logging.getLogger("baac_severity.modeling.train")


def main_repository(start: Path | None = None) -> Path:
    """The repository root, seen through a DVC temporary executor copy if we are in one."""
    path = (start or Path.cwd()).resolve()
    parts = path.parts
    for index in range(len(parts) - 2):
        if parts[index : index + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:index])
    return path


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{main_repository() / STORE_NAME}"


def track(log_run: Callable[[object], None]) -> str | None:
    """Run ``log_run(mlflow)`` inside an MLflow run; returns the run id, or None on failure."""
    try:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri())
        mlflow.set_experiment(EXPERIMENT)
        run_name = os.environ.get("DVC_EXP_NAME")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mlflow.start_run(run_name=run_name) as run:
                log_run(mlflow)
                return run.info.run_id
    except Exception as error:  # tracking must never cost the DVC outputs
        log.warning("MLflow tracking failed, DVC outputs are kept: %s", error)
        return None
