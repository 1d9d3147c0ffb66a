"""BentoML service: the severity of French road accidents (BAAC), from the promoted model.

``bentoml serve baac_severity.serving.service:BAACSeverity`` (or ``make serve``). Endpoints:

- ``POST /predict``: ``{"accidents": [...]}``, 1 to 10,000 accidents in BAAC terms
  (``baac_severity/serving/schemas.py``); per accident (per road user for a user-level model) the
  predicted class, its label, the probability of each class and the model version; with
  ``"explain": true``, the five features that moved the probability most
  (``baac_severity/serving/explain.py``). Concurrent requests are scored together (BentoML's
  adaptive batching).
- ``GET /model``: the promoted model's metadata; ``GET /data/progress``: ingestion progress.
- BentoML's ``/healthz``, ``/livez``, ``/readyz``, ``/metrics``, the docs page ``/`` and the
  API descriptions ``/docs.json`` and ``/schema.json`` need no key; every other route needs
  ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``.

Settings: ``baac_severity/serving/settings.py`` (environment, or ``.env``; see ``.env.example``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio.to_thread
import bentoml
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from baac_severity.config import METADATA_FILENAME, MODEL_FILENAME
from baac_severity.modeling.model_store import (
    FeatureSchemaError,
    ModelVersionError,
    check_feature_schema,
    load_model,
)
from baac_severity.serving import (
    auth,
    openapi,
    parent_watch,
    route_metrics,
    schemas,
    settings,
)
from baac_severity.serving.inference import Predictor, settle_heap
from baac_severity.serving.prediction_logger import PredictionMonitor

# Settings are read at import: the model tag and the batching are part of the class below.
try:
    SETTINGS = settings.load()
except settings.SettingsError as error:
    raise SystemExit(f"baac-severity: refusing to start: {error}") from None
MODEL_TAG = SETTINGS.baac_model_tag
OFF_LOOP_BYTES = 64 * 1024  # bodies above this are parsed in a worker thread
log = logging.getLogger("baac_severity.serving.service")
API_DESCRIPTION = """Predicts how severe French road accidents are, from BAAC records
(see docs/serving.md).

**Authentication**: every route except the probes (`/healthz`, `/livez`, `/readyz`),
`/metrics` and this documentation needs your key, as an `X-API-Key` header or as
`Authorization: Bearer <key>`: click **Authorize** and enter it in either.

`POST /predict` takes 1 to 10,000 accidents; `GET /model` describes the served model and
`GET /data/progress` the ingestion progress. `"explain": true` adds the five features that
moved each probability most. Invalid input gets a 422 naming the record index and the field;
a body over the size limit a 413; an overloaded service answers 503 or 429 at once (retry
later) rather than queueing without bound."""


class PredictInput(bentoml.IODescriptor, schemas.PredictRequest):
    """A batch of 1 to 10,000 accidents to score."""

    @classmethod
    def parse(cls, body: bytes) -> PredictInput:
        # BentoML answers 400 to a pydantic ValidationError; this API promises 422 with the
        # record index and field, so an invalid body becomes an empty request carrying its
        # problems, which the endpoint answers. The body's hash rides along for the log.
        parsed, problems = schemas.parse_request(cls, body)
        if problems or parsed is None:
            parsed = cls.model_construct(accidents=[])
            parsed._problems = problems
        parsed._body_sha256 = hashlib.sha256(body).hexdigest()
        return parsed

    @classmethod
    async def from_http_request(  # type: ignore[override]
        cls, request: Any, serde: Any
    ) -> list[PredictInput]:
        """The body is read as JSON (``auth.JSONBodyMiddleware`` has answered 415 to any other
        declared type), not through BentoML's serde, which picks a parser from the header.

        A list of one: each HTTP request is one item of an adaptive batch, however many
        accidents it holds, so BentoML never splits a request across batches."""
        received = time.perf_counter()
        body = await request.body()
        if len(body) > OFF_LOOP_BYTES:
            # A large batch takes tens of ms to validate: off the event loop, so that probes
            # and other requests are not held up meanwhile.
            parsed = await anyio.to_thread.run_sync(cls.parse, body)
        else:
            parsed = cls.parse(body)
        parsed._received = received
        return [parsed]


PredictInput.__root_input__ = True  # the body is the whole input, as BentoML's own root inputs


class PredictOutput(bentoml.IODescriptor, schemas.PredictResponse):
    """The answer to one request of a batch."""

    @classmethod
    async def to_http_response(cls, obj: Any, serde: Any) -> Response:
        (answer,) = obj  # BentoML hands each request its slice of the batch: a list of one
        if isinstance(answer, Response):
            return answer
        return await super().to_http_response(answer, serde)


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


@bentoml.service(
    name="baac_severity",
    workers=SETTINGS.baac_workers,
    # Beyond max_concurrency requests in flight, BentoML answers 429 at once instead of
    # queueing; the batch queue answers 503 to a request it cannot start within max_latency.
    traffic={"timeout": 120, "max_concurrency": SETTINGS.baac_max_concurrency},
)
@bentoml.asgi_app(routes, path="/")
class BAACSeverity:
    """Predicts how severe French road accidents are, from the BAAC open data."""

    model = bentoml.models.BentoModel(MODEL_TAG)

    @bentoml.on_deployment
    def refuse_to_start_without_key() -> None:
        """Runs once in the ``bentoml serve`` process, before any worker starts."""
        problem = auth.configuration_problem(SETTINGS)
        if problem is not None:
            print(f"baac-severity: refusing to start: {problem}", file=sys.stderr)
            raise SystemExit(2)
        if SETTINGS.allow_no_auth:
            print(f"baac-severity: {auth.NO_AUTH_WARNING}", file=sys.stderr)

    @bentoml.on_deployment
    def verify_model_feature_schema() -> None:
        """Runs once before any worker starts, after the key check (hooks run in name order).

        A model trained on another feature schema than ``baac_severity/features.py`` produces would
        score wrongly encoded records without any error: refuse to serve it. The bundle is
        loaded here and released (about a second; its memory returns to the system).
        """
        stored = BAACSeverity.inner.model.resolve()
        path = Path(stored.path) / MODEL_FILENAME
        try:
            bundle = load_model(path, Path(stored.path) / METADATA_FILENAME)
            check_feature_schema(bundle, f"model {stored.tag} ({path})")
        except (FeatureSchemaError, ModelVersionError) as error:
            print(f"baac-severity: refusing to start: {error}", file=sys.stderr)
            raise SystemExit(2) from None

    def __init__(self) -> None:
        # Runs in each worker only: it must not outlive `bentoml serve` (parent_watch.py).
        parent_watch.exit_with_parent()
        self.predictor = Predictor.from_directory(self.model.path)
        self.predictor.warm_up()
        settle_heap()  # last: whatever start-up loaded stays out of garbage collection
        self.tag = str(self.model.tag)
        self.progress_path = SETTINGS.baac_progress_path
        self.monitor = PredictionMonitor(
            SETTINGS.prediction_log_dir,
            SETTINGS.prediction_log_max_bytes,
            SETTINGS.prediction_log_backups,
        )
        routes.state.service = self
        log.info("serving %s (model version %s)", self.tag, self.predictor.version)

    def model_info(self) -> dict[str, Any]:
        return {
            **self.predictor.metadata,
            "bentoml_model": self.tag,
            "request_fields": schemas.fields_reference(),
        }

    @bentoml.api(
        route="/predict",
        input_spec=PredictInput,
        output_spec=PredictOutput,
        batchable=SETTINGS.baac_batching,
        max_batch_size=SETTINGS.baac_max_batch_size,
        max_latency_ms=SETTINGS.baac_max_latency_ms,
    )
    def predict(self, requests: list[PredictInput]) -> list[schemas.PredictResponse | Response]:
        """Predicted class, label and class probabilities of each accident (of each road user
        for a user-level model), with the model version. Answers 422 naming the record and
        field of an invalid input."""
        # ``requests``: the requests of one adaptive batch (one when batching is off). Their
        # records are scored together, yet every row's result is computed on its own (the
        # features of a record read only that record; the trees' leaf probabilities are added
        # row by row), so a request gets exactly what it would get alone.
        answers: list[schemas.PredictResponse | Response | None] = [None] * len(requests)
        ids = [uuid.uuid4().hex for _ in requests]
        scored = []
        for index, request in enumerate(requests):
            problems = request._problems or self.too_many_users(request.accidents)
            if problems:
                answers[index] = invalid(ids[index], problems)
            else:
                scored.append(index)
        records = [record for i in scored for record in requests[i].accidents]
        if not records:
            return answers  # type: ignore[return-value]
        batch, matrix, probabilities = self.predictor.predict(records)
        if self.predictor.unit == "user":
            owners, positions = batch.user_record, batch.user_position
            rows = [sum(len(r["users"]) for r in requests[i].accidents) for i in scored]
        else:
            owners, positions = np.arange(len(records)), np.full(len(records), -1)
            rows = [len(requests[i].accidents) for i in scored]
        wanted = np.repeat([requests[i].explain for i in scored], rows)
        explanations = self.predictor.explain(matrix, probabilities, wanted)
        first_row, first_record = 0, 0
        for index, count in zip(scored, rows, strict=True):
            part = slice(first_row, first_row + count)
            accidents = requests[index].accidents
            response = self.respond(
                ids[index],
                accidents,
                probabilities[part],
                owners[part] - first_record,
                positions[part],
                explanations[part],
            )
            self.record(requests[index], response, matrix[part])
            answers[index] = response
            first_row += count
            first_record += len(accidents)
        return answers  # type: ignore[return-value]

    def too_many_users(self, records: list[dict]) -> list[dict[str, Any]]:
        """A user-level model scores each road user: at most ``MAX_RECORDS`` of them."""
        if self.predictor.unit != "user":
            return []
        count = sum(len(record["users"]) for record in records)
        if count <= schemas.MAX_RECORDS:
            return []
        message = f"{count} road users; at most {schemas.MAX_RECORDS} per request"
        return [{"record": None, "field": "accidents", "type": "too_long", "message": message}]

    def respond(
        self,
        request_id: str,
        records: list[dict],
        probabilities: np.ndarray,
        owners: np.ndarray,
        positions: np.ndarray,
        explanations: list[dict[str, Any] | None],
    ) -> schemas.PredictResponse:
        predictor = self.predictor
        best = predictor.decide(probabilities)
        rows = probabilities.tolist()
        predictions = []
        for owner, position, top, row, explanation in zip(
            owners.tolist(), positions.tolist(), best, rows, explanations, strict=True
        ):
            user = None if position < 0 else position
            predictions.append(
                {
                    "record": owner,
                    "num_acc": records[owner]["num_acc"],
                    "user": user,
                    "user_id": None if user is None else records[owner]["users"][user]["user_id"],
                    "predicted_class": predictor.classes[top],
                    "label": predictor.labels[top],
                    "probabilities": dict(zip(predictor.labels, row, strict=True)),
                    "model_version": predictor.version,
                    "explanation": explanation,
                }
            )
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
        self, request: PredictInput, response: schemas.PredictResponse, features: np.ndarray
    ) -> None:
        """One prediction-log line (``baac_severity/serving/prediction_logger.py``): the request's
        model features, as scored, and its predictions."""
        audit = {
            "latency_ms": round((time.perf_counter() - request._received) * 1000, 3),
            "input_sha256": request._body_sha256,
        }
        self.monitor.record(self.predictor, features, response, audit)


# /metrics labels each request by its route, so that unknown paths cannot grow it.
route_metrics.install(
    [
        *(api.route for api in BAACSeverity.apis.values()),
        *(route.path for route in routes.routes),
        *auth.OPEN_PATHS,
    ],
    auth.OPEN_PREFIXES,
)
# Outermost first: reject unauthenticated requests before reading any body.
BAACSeverity.add_asgi_middleware(
    auth.APIKeyMiddleware, keys=SETTINGS.keys(), allow_no_auth=SETTINGS.allow_no_auth
)
BAACSeverity.add_asgi_middleware(auth.BodyLimitMiddleware, max_bytes=SETTINGS.max_body_bytes)
BAACSeverity.add_asgi_middleware(auth.JSONBodyMiddleware)


def served_version() -> str:
    """The docs page's version badge: the served model's version and registry version (not
    the tag asked for, such as ``baac-severity:latest``)."""
    stored = BAACSeverity.inner.model.resolve()
    metadata = json.loads((Path(stored.path) / METADATA_FILENAME).read_text())
    registry = metadata.get("registry") or {}
    listed = f", registry v{registry['version']}" if registry.get("version") else ""
    return f"model {metadata['version']}{listed} ({stored.tag})"


BAACSeverity.add_asgi_middleware(
    openapi.OpenAPIMiddleware,
    document=lambda: openapi.secured(
        BAACSeverity.openapi_spec.asdict(), API_DESCRIPTION, served_version()
    ),
)
