"""BentoML service: the severity of French road accidents (BAAC), from the promoted model.

``bentoml serve app.service:BAACSeverity`` (or ``make serve``). Endpoints:

- ``POST /predict``: ``{"accidents": [...]}``, 1 to 10,000 accidents in BAAC terms
  (``app/schemas.py``); per accident (per road user for a user-level model) the predicted
  class, its label, the probability of each class and the model version.
- ``GET /model``: the promoted model's metadata; ``GET /data/progress``: ingestion progress.
- BentoML's ``/healthz``, ``/livez``, ``/readyz``, ``/metrics``, the docs page ``/`` and the
  OpenAPI document ``/docs.json`` need no key; every other route needs ``X-API-Key``.

Settings (environment, or ``.env`` in the working directory; see ``.env.example``):
``API_KEY`` (required unless ``ALLOW_NO_AUTH=1``), ``BAAC_MODEL_TAG`` (default
``baac-severity:latest``), ``BAAC_WORKERS``, ``BAAC_PROGRESS_PATH``, ``MAX_BODY_BYTES``,
``PREDICTION_LOG_PATH`` and friends (``app/prediction_log.py``), ``BAAC_ENV_FILE``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
import bentoml
import numpy as np
from dotenv import load_dotenv
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app import auth, openapi, schemas
from app.inference import MODEL_FILE, Batch, Predictor, settle_heap
from app.prediction_log import PredictionLog
from pipeline.model_store import (
    FeatureSchemaError,
    ModelVersionError,
    check_feature_schema,
    load_model,
)

# Settings are read at import: the model tag is part of the class definition below.
load_dotenv(os.environ.get("BAAC_ENV_FILE", ".env"), override=False)
MODEL_TAG = os.environ.get("BAAC_MODEL_TAG", "baac-severity:latest")
WORKERS = int(os.environ.get("BAAC_WORKERS", "1"))
PROGRESS_PATH = Path(os.environ.get("BAAC_PROGRESS_PATH", "metrics/progress.json"))
OFF_LOOP_BYTES = 64 * 1024  # bodies above this are parsed in a worker thread
log = logging.getLogger("app.service")
API_DESCRIPTION = """Predicts how severe French road accidents are, from BAAC records
(see docs/serving.md).

**Authentication**: every route except the probes (`/healthz`, `/livez`, `/readyz`),
`/metrics` and this documentation needs an `X-API-Key` header: click **Authorize** and enter
your key.

`POST /predict` takes 1 to 10,000 accidents; `GET /model` describes the served model and
`GET /data/progress` the ingestion progress. Invalid input gets a 422 naming the record index
and the field; a body over the size limit a 413."""


class PredictInput(bentoml.IODescriptor, schemas.PredictRequest):
    """A batch of 1 to 10,000 accidents to score."""

    @classmethod
    def parse(cls, body: bytes) -> PredictInput:
        # BentoML answers 400 to a pydantic ValidationError; this API promises 422 with the
        # record index and field, so an invalid body becomes an empty request carrying its
        # problems, which the endpoint answers. The body's hash rides along for the log.
        parsed, problems = schemas.parse_request(cls, body)
        if problems:
            parsed = cls.model_construct(accidents=[])
            parsed._problems = problems
        parsed._body_sha256 = hashlib.sha256(body).hexdigest()
        return parsed

    @classmethod
    async def from_http_request(cls, request: Any, serde: Any) -> PredictInput:
        """The body is read as JSON (``auth.JSONBodyMiddleware`` has answered 415 to any other
        declared type), not through BentoML's serde, which picks a parser from the header."""
        received = time.perf_counter()
        body = await request.body()
        if len(body) > OFF_LOOP_BYTES:
            # A large batch takes tens of ms to validate: off the event loop, so that probes
            # and other requests are not held up meanwhile.
            parsed = await anyio.to_thread.run_sync(cls.parse, body)
        else:
            parsed = cls.parse(body)
        parsed._received = received
        return parsed


def invalid(request_id: str, problems: list[dict[str, Any]]) -> JSONResponse:
    payload = {"error": "invalid request", "request_id": request_id, "detail": problems}
    return JSONResponse(payload, status_code=422)


async def model_info(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.service.model_info())


async def data_progress(request: Request) -> JSONResponse:
    path = request.app.state.service.progress_path
    if not path.is_file():
        return JSONResponse({"error": "no ingestion progress recorded yet"}, status_code=404)
    return JSONResponse(json.loads(path.read_text()))


# BentoML APIs are POST routes: the two GET routes live in a mounted Starlette app.
routes = Starlette(
    routes=[
        Route("/model", model_info, methods=["GET"]),
        Route("/data/progress", data_progress, methods=["GET"]),
    ]
)


@bentoml.service(name="baac_severity", workers=WORKERS, traffic={"timeout": 120})
@bentoml.asgi_app(routes, path="/")
class BAACSeverity:
    """Predicts how severe French road accidents are, from the BAAC open data."""

    model = bentoml.models.BentoModel(MODEL_TAG)

    @bentoml.on_deployment
    def refuse_to_start_without_key() -> None:
        """Runs once in the ``bentoml serve`` process, before any worker starts."""
        problem = auth.configuration_problem()
        if problem is not None:
            print(f"baac-severity: refusing to start: {problem}", file=sys.stderr)
            raise SystemExit(2)
        if auth.auth_disabled():
            print(f"baac-severity: {auth.NO_AUTH_WARNING}", file=sys.stderr)

    @bentoml.on_deployment
    def verify_model_feature_schema() -> None:
        """Runs once before any worker starts, after the key check (hooks run in name order).

        A model trained on another feature schema than ``pipeline/features.py`` produces would
        score wrongly encoded records without any error: refuse to serve it. The bundle is
        loaded here and released (about a second; its memory returns to the system).
        """
        stored = BAACSeverity.inner.model.resolve()
        path = Path(stored.path) / MODEL_FILE
        try:
            check_feature_schema(load_model(path), f"model {stored.tag} ({path})")
        except (FeatureSchemaError, ModelVersionError) as error:
            print(f"baac-severity: refusing to start: {error}", file=sys.stderr)
            raise SystemExit(2) from None

    def __init__(self) -> None:
        self.predictor = Predictor.from_directory(self.model.path)
        self.predictor.warm_up()
        settle_heap()  # last: whatever start-up loaded stays out of garbage collection
        self.tag = str(self.model.tag)
        self.progress_path = PROGRESS_PATH
        self.predictions = PredictionLog.from_env()
        routes.state.service = self
        log.info("serving %s (model version %s)", self.tag, self.predictor.version)

    def model_info(self) -> dict[str, Any]:
        return {
            **self.predictor.metadata,
            "bentoml_model": self.tag,
            "request_fields": schemas.fields_reference(),
        }

    @bentoml.api(route="/predict")
    def predict(self, request: PredictInput, /) -> schemas.PredictResponse:
        """Predicted class, label and class probabilities of each accident (of each road user
        for a user-level model), with the model version. Answers 422 naming the record and
        field of an invalid input."""
        request_id = uuid.uuid4().hex
        if request._problems is not None:
            return invalid(request_id, request._problems)
        records = request.accidents
        if self.predictor.unit == "user":
            count = sum(len(record["users"]) for record in records)
            if count > schemas.MAX_RECORDS:
                problem = {"record": None, "field": "accidents", "type": "too_long"}
                message = f"{count} road users; at most {schemas.MAX_RECORDS} per request"
                return invalid(request_id, [problem | {"message": message}])
        batch, probabilities = self.predictor.predict(records)
        response = self.respond(request_id, records, batch, probabilities)
        self.record(request, response, len(records))
        return response

    def respond(
        self, request_id: str, records: list[dict], batch: Batch, probabilities: np.ndarray
    ) -> schemas.PredictResponse:
        predictor = self.predictor
        best = predictor.decide(probabilities)
        if predictor.unit == "user":
            owners = batch.user_record.tolist()
            positions: list[int | None] = batch.user_position.tolist()
        else:
            owners, positions = list(range(len(records))), [None] * len(records)
        rows = probabilities.tolist()
        predictions = [
            {
                "record": owner,
                "num_acc": records[owner]["num_acc"],
                "user": position,
                "user_id": None
                if position is None
                else records[owner]["users"][position]["user_id"],
                "predicted_class": predictor.classes[top],
                "label": predictor.labels[top],
                "probabilities": dict(zip(predictor.labels, row, strict=True)),
                "model_version": predictor.version,
            }
            for owner, position, top, row in zip(owners, positions, best, rows, strict=True)
        ]
        # Validated in pydantic-core: as fast as building 1,000 models without validation.
        return schemas.PredictResponse.model_validate(
            {
                "request_id": request_id,
                "model_version": predictor.version,
                "target": predictor.metadata["target"],
                "unit": predictor.unit,
                "predictions": predictions,
            }
        )

    def record(
        self, request: PredictInput, response: schemas.PredictResponse, records: int
    ) -> None:
        """One prediction-log line: no input, only its hash."""
        self.predictions.write(
            {
                "request_id": response.request_id,
                "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "model_version": response.model_version,
                "records": records,
                "predictions": len(response.predictions),
                "latency_ms": round((time.perf_counter() - request._received) * 1000, 3),
                "predicted_classes": [p.predicted_class for p in response.predictions],
                "input_sha256": request._body_sha256,
            }
        )


# Outermost first: reject unauthenticated requests before reading any body.
BAACSeverity.add_asgi_middleware(auth.APIKeyMiddleware)
BAACSeverity.add_asgi_middleware(auth.BodyLimitMiddleware)
BAACSeverity.add_asgi_middleware(auth.JSONBodyMiddleware)
BAACSeverity.add_asgi_middleware(
    openapi.OpenAPIMiddleware,
    document=lambda: openapi.secured(
        BAACSeverity.openapi_spec.asdict(), API_DESCRIPTION, f"model {MODEL_TAG}"
    ),
)
