"""The OpenAPI document of the service: BentoML's, plus what BentoML cannot declare.

BentoML 1.4 generates ``/docs.json`` from the service's APIs but has no security schemes and
does not document routes mounted from a plain Starlette app. ``secured`` adds the ``X-API-Key``
scheme (so that Swagger UI's Authorize button sends the key), marks the open routes, and
documents ``GET /model``, ``GET /data/progress`` and the error answers of ``POST /predict``
(every status the middleware and the routes can answer: the fuzz tests check it).
``OpenAPIMiddleware`` serves that document at ``/docs.json`` in place of BentoML's.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from app.auth import API_KEY_HEADER, ASGIApp, Receive, Scope, Send

SCHEME = "ApiKeyAuth"
OPEN_ROUTES = ("/healthz", "/livez", "/readyz", "/metrics")
ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
INVALID = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "request_id": {"type": "string"},
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "record": {"type": "integer", "nullable": True},
                    "field": {"type": "string"},
                    "type": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


UNAUTHORISED = _json_response(f"missing or invalid {API_KEY_HEADER}", ERROR)
GET_ROUTES = {
    "/model": {
        "summary": "The promoted model",
        "description": "Version, git sha, experiment, metrics, data snapshot and feature "
        "schema of the served model (the promoted metadata.json), and the request fields.",
        "schema": {"type": "object", "additionalProperties": True},
    },
    "/data/progress": {
        "summary": "Ingestion progress",
        "description": "Chunks and rows ingested so far (metrics/progress.json).",
        "schema": {"type": "object", "additionalProperties": True},
    },
}


def secured(document: dict[str, Any], description: str, version: str) -> dict[str, Any]:
    """``document`` with our description, the API-key scheme, the open routes and the routes
    BentoML does not document."""
    spec = copy.deepcopy(document)
    spec["info"] = {**spec.get("info", {}), "description": description, "version": version}
    components = spec.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME] = {
        "type": "apiKey",
        "in": "header",
        "name": API_KEY_HEADER,
    }
    spec["security"] = [{SCHEME: []}]
    paths = spec.setdefault("paths", {})
    for route in OPEN_ROUTES:
        for operation in paths.get(route, {}).values():
            operation["security"] = []  # probes and metrics need no key
    for route, info in GET_ROUTES.items():
        paths[route] = {
            "get": {
                "summary": info["summary"],
                "description": info["description"],
                "tags": ["Service APIs"],
                "operationId": route.strip("/").replace("/", "_"),
                "responses": {
                    "200": _json_response("OK", info["schema"]),
                    "401": UNAUTHORISED,
                },
            }
        }
    paths["/data/progress"]["get"]["responses"]["404"] = _json_response(
        "no ingestion progress recorded yet", ERROR
    )
    predict = paths.get("/predict", {}).get("post")
    if predict is not None:
        # BentoML leaves the body optional; an empty body is a 422 (no accidents).
        predict.setdefault("requestBody", {})["required"] = True
        predict.setdefault("responses", {}).update(
            {
                "401": UNAUTHORISED,
                "413": _json_response("request body over MAX_BODY_BYTES", ERROR),
                "415": _json_response("the body is declared as something else than JSON", ERROR),
                "422": _json_response("invalid request: record index and field", INVALID),
            }
        )
    return spec


class OpenAPIMiddleware:
    """Serves ``document()`` (computed once) at ``GET /docs.json``."""

    def __init__(self, app: ASGIApp, document: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.document = document
        self.body: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/docs.json":
            await self.app(scope, receive, send)
            return
        if self.body is None:
            self.body = json.dumps(self.document()).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})
