"""The prediction log, written with BentoML's own monitoring API (``bentoml.monitor``).

Each answered ``/predict`` request becomes one JSON line: the model features of every scored
row (one list per feature, null for a missing value), the predicted class and class
probabilities of each row, the model version and the response's request id, plus the
``timestamp``, ``request_id`` and ``trace_id`` columns BentoML adds. No header and no raw
request is written: the API key cannot reach the log. ``make monitor``
(``baac_severity.monitoring.live``) reads these lines back and runs the drift report on them.

BentoML's default exporter (``bentoml._internal.monitoring.default.DefaultMonitor``) writes
``<dir>/<name>/data/data.<worker>.log`` through Python logging, one file per worker (so lines of
two workers never interleave), with a schema file next to it; its default configuration rotates
the data file daily and never deletes old files. The exporter's own ``log_config_file`` option
is used here to rotate by size instead, keeping ``PREDICTION_LOG_BACKUPS`` files of at most
``PREDICTION_LOG_MAX_BYTES``: a handler checks the size before writing a record, so a line is
never split across files. The exporter writes in the calling thread; a single background thread
does it here, so a request never waits for the disk.

Settings (``baac_severity/serving/settings.py``): ``PREDICTION_LOG_DIR`` (default
``logs/monitoring``), ``PREDICTION_LOG_MAX_BYTES``, ``PREDICTION_LOG_BACKUPS``.
"""

from __future__ import annotations

import atexit
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

from baac_severity.data.io import write_text
from baac_severity.monitoring.prediction_log import (
    MONITOR_NAME,
    PREDICTED_CLASS,
    probability_column,
)
from baac_severity.serving.inference import Predictor
from baac_severity.serving.schemas import PredictResponse

log = logging.getLogger("baac_severity.serving.prediction_logger")
# BentoML's default logging configuration with a size-rotated data file; BentoML fills in the
# {schema_filename} and {data_filename} fields.
LOGGING_CONFIG = """version: 1
disable_existing_loggers: false
loggers:
  bentoml_monitor_data:
    level: INFO
    handlers: [bentoml_monitor_data]
    propagate: false
  bentoml_monitor_schema:
    level: INFO
    handlers: [bentoml_monitor_schema]
    propagate: false
handlers:
  bentoml_monitor_data:
    class: logging.handlers.RotatingFileHandler
    level: INFO
    formatter: bentoml_json
    filename: '{{data_filename}}'
    maxBytes: {max_bytes}
    backupCount: {backups}
    encoding: utf-8
  bentoml_monitor_schema:
    class: logging.handlers.RotatingFileHandler
    level: INFO
    formatter: bentoml_json
    filename: '{{schema_filename}}'
    maxBytes: {max_bytes}
    backupCount: 1
    encoding: utf-8
formatters:
  bentoml_json:
    class: pythonjsonlogger.json.JsonFormatter
    format: "()"
    validate: false
"""


def _report_failure(job: Future[None]) -> None:
    error = job.exception()
    if error is not None:
        log.error("prediction log line not written: %r", error)


def _values(column: np.ndarray) -> list[float | None]:
    """JSON values: a missing value becomes null (the JSON formatter would write NaN)."""
    return [None if value != value else float(value) for value in column.tolist()]


class PredictionMonitor:
    """Logs model features and predictions through ``bentoml.monitor``, off the request
    thread."""

    def __init__(
        self,
        directory: str | Path,
        max_bytes: int,
        backups: int,
    ) -> None:
        self.directory = Path(directory)
        config = self.directory / "logging.yaml"
        write_text(LOGGING_CONFIG.format(max_bytes=max_bytes, backups=backups), config)
        self.options = {"log_path": str(self.directory), "log_config_file": str(config)}
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="prediction-monitor")
        atexit.register(self.close)

    def record(self, predictor: Predictor, features: np.ndarray, response: PredictResponse,
               audit: dict[str, Any]) -> None:  # fmt: skip
        """Queue the log line of one answered request; returns at once. ``features``: the
        request's rows of the matrix that was scored (``Predictor.matrix``: the model's feature
        columns; never modified afterwards), so the log
        holds exactly what the model saw. ``audit``: ``latency_ms`` and ``input_sha256`` (the
        hash of the body)."""
        job = self.writer.submit(self._export, predictor, features, response, audit)
        job.add_done_callback(_report_failure)

    def _export(self, predictor: Predictor, matrix: np.ndarray, response: PredictResponse,
                audit: dict[str, Any]) -> None:  # fmt: skip
        rows = response.predictions
        with bentoml.monitor(MONITOR_NAME, "default", self.options) as line:
            line.log(response.request_id, "response_id", "prediction", "categorical")
            line.log(response.model_version, "model_version", "prediction", "categorical")
            line.log(audit["latency_ms"], "latency_ms", "prediction", "numerical")
            line.log(audit["input_sha256"], "input_sha256", "prediction", "categorical")
            for i, name in enumerate(predictor.bundle.features):
                line.log(_values(matrix[:, i]), name, "feature", "numerical_sequence")
            predicted = [row.predicted_class for row in rows]
            line.log(predicted, PREDICTED_CLASS, "prediction", "numerical_sequence")
            for label in predictor.labels:
                values = [row.probabilities[label] for row in rows]
                line.log(values, probability_column(label), "prediction", "numerical_sequence")

    def close(self) -> None:
        """Write the queued lines (idempotent)."""
        self.writer.shutdown(wait=True)
