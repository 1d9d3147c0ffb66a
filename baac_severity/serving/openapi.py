"""The OpenAPI document and the docs page of the service: BentoML's, plus what it lacks.

BentoML 1.4 generates ``/docs.json`` from the service's APIs but has no security schemes and
does not document routes mounted from a plain Starlette app. ``secured`` adds the two key
schemes (``X-API-Key`` and ``Authorization: Bearer``, so that Swagger UI's Authorize button
sends the key), marks the open routes, documents ``GET /model``, ``GET /data/progress`` and the
error answers of ``POST /predict`` (every status the middleware and the routes can answer: the
fuzz tests check it), and gives ``POST /predict`` a real example (``app/examples``).

BentoML's docs page loads Google Tag Manager, a third-party script: ``docs_page`` is the same
Swagger UI page without it, and with Swagger UI's online validator (a request to swagger.io
for a badge) off. ``OpenAPIMiddleware`` serves both at ``/docs.json`` and ``/`` in place of
BentoML's.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import _bentoml_impl.server

from baac_severity.serving.auth import API_KEY_HEADER, ASGIApp, Receive, Scope, Send
from baac_severity.serving.examples import EXAMPLE

SCHEME, BEARER_SCHEME = "ApiKeyAuth", "BearerAuth"
# BentoML's Swagger UI page (the one served with its /static_content assets).
BENTOML_PAGE = Path(_bentoml_impl.server.__file__).with_name("main-openapi.html")
TAG_MANAGER = re.compile(r"<!-- Google Tag Manager.*?<!-- End Google Tag Manager[^>]*-->", re.S)
INITIALIZER = '<script src="./static_content/swagger-initializer.js" charset="UTF-8"> </script>'
# BentoML's swagger-initializer.js, plus validatorUrl: null (no badge fetched from swagger.io).
SWAGGER_UI = """<script>
    window.onload = function () {
      window.ui = SwaggerUIBundle({
        url: "./docs.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        plugins: [SwaggerUIBundle.plugins.DownloadUrl], layout: "StandaloneLayout",
      });
    };
    </script>"""
# BentoML's "Powered by BentoML" GitHub corner (a link to its repository), after the UI.
GITHUB_CORNER = re.compile(r'<div class="version">.*?</svg></a>\s*</div>\s*</div>', re.S)
# BentoML's index.css hides the title (``.info .main .title``) and shows only the version.
SHOW_TITLE = "<style>.swagger-ui .info .main .title { visibility: visible; }</style>"
OPEN_ROUTES = ("/healthz", "/livez", "/readyz", "/metrics")
TITLE = "BAAC road-accident severity API"
# A summary and an example answer for each route BentoML documents without them.
PROBES: dict[str, tuple[str, str | None]] = {
    "/healthz": ("Health probe (deprecated: /livez)", "\n"),
    "/livez": ("Liveness probe", "\n"),
    "/readyz": ("Readiness probe: answers 200 once the model is loaded", "\n"),
    "/metrics": (
        "Prometheus metrics",
        "# HELP bentoml_service_request_total Multiprocess metric\n"
        'bentoml_service_request_total{endpoint="/predict",http_response_code="200"} 12.0\n',
    ),
}
PREDICT_SUMMARY = "Predict the severity of accidents"
# The answer to the first accident of the example request (values of the default model).
PREDICTION_EXAMPLE = {
    "request_id": "5f0c3b9e2a1d4c7b8e6f9a0b1c2d3e4f",
    "model_version": "9b80144ba604",
    "target": "severe",
    "unit": "accident",
    "predictions": [
        {
            "record": 0,
            "num_acc": "201800013765",
            "user": None,
            "user_id": None,
            "predicted_class": 1,
            "label": "severe",
            "probabilities": {"not_severe": 0.31, "severe": 0.69},
            "model_version": "9b80144ba604",
            "explanation": None,
        }
    ],
}
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


UNAUTHORISED = _json_response(f"missing or invalid key ({API_KEY_HEADER} or Bearer)", ERROR)
GET_ROUTES: dict[str, dict[str, Any]] = {
    "/model": {
        "summary": "The promoted model",
        "description": "Version, git sha, experiment, metrics, data snapshot and feature "
        "schema of the served model (the promoted metadata.json), and the request fields.",
        "schema": {"type": "object", "additionalProperties": True},
        "example": {
            "version": "9b80144ba604",
            "registry": {"name": "baac-severity", "version": 1},
            "experiment": "workspace",
            "target": "severe",
            "unit": "accident",
            "metrics": {"test": {"roc_auc": 0.8277}},
            "bentoml_model": "baac-severity:9b80144ba604",
        },
    },
    "/data/progress": {
        "summary": "Ingestion progress",
        "description": "Chunks and rows ingested so far (metrics/progress.json).",
        "schema": {"type": "object", "additionalProperties": True},
        "example": {
            "as_of": "2024-12-31",
            "chunks": {"ingested": 12, "total": 12, "chunk_size": 10000},
            "tables": {"caracteristiques": {"rows": 112185, "total": 112185, "pct": 100.0}},
        },
    },
}


def _example(description: str, media: str, example: Any) -> dict[str, Any]:
    return {"description": description, "content": {media: {"example": example}}}


def secured(document: dict[str, Any], description: str, version: str) -> dict[str, Any]:
    """``document`` with our title, description and served model version (not BentoML's
    contact), the API-key scheme, the open routes, the routes BentoML does not document, and
    a summary and an example answer on every route."""
    spec = copy.deepcopy(document)
    service = spec.get("info", {}).get("title")  # BentoML's: the service's name
    spec["info"] = {"title": TITLE, "description": description, "version": version}
    if service:
        spec["info"]["x-bentoml-service"] = service
    components = spec.setdefault("components", {})
    schemes = components.setdefault("securitySchemes", {})
    schemes[SCHEME] = {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}
    schemes[BEARER_SCHEME] = {"type": "http", "scheme": "bearer"}
    spec["security"] = [{SCHEME: []}, {BEARER_SCHEME: []}]  # either one
    paths = spec.setdefault("paths", {})
    for operations in paths.values():
        for operation in operations.values():
            # BentoML keys some answers by int (200), JSON by text: one key per status.
            responses = operation.get("responses", {})
            operation["responses"] = {str(status): answer for status, answer in responses.items()}
    for route in OPEN_ROUTES:
        for operation in paths.get(route, {}).values():
            operation["security"] = []  # probes and metrics need no key
            summary, body = PROBES[route]
            operation["summary"] = summary
            media = "text/plain"
            operation.setdefault("responses", {})["200"] = _example("OK", media, body)
    for route, info in GET_ROUTES.items():
        paths[route] = {
            "get": {
                "summary": info["summary"],
                "description": info["description"],
                "tags": ["Service APIs"],
                "operationId": route.strip("/").replace("/", "_"),
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {
                            "application/json": {
                                "schema": info["schema"],
                                "example": info["example"],
                            }
                        },
                    },
                    "401": UNAUTHORISED,
                },
            }
        }
    paths["/data/progress"]["get"]["responses"]["404"] = _json_response(
        "no ingestion progress recorded yet", ERROR
    )
    predict = paths.get("/predict", {}).get("post")
    if predict is not None:
        predict["summary"] = PREDICT_SUMMARY
        answer = predict.setdefault("responses", {}).setdefault("200", {"description": "OK"})
        answer.setdefault("content", {}).setdefault("application/json", {})["example"] = (
            PREDICTION_EXAMPLE
        )
        # BentoML leaves the body optional; an empty body is a 422 (no accidents).
        body = predict.setdefault("requestBody", {})
        body["required"] = True
        # BentoML's example is generated from the schema (every field null, year 2100).
        media = body.setdefault("content", {}).setdefault("application/json", {})
        media["example"] = json.loads(EXAMPLE.read_text())
        predict.setdefault("responses", {}).update(
            {
                "401": UNAUTHORISED,
                "413": _json_response("request body over MAX_BODY_BYTES", ERROR),
                "415": _json_response("the body is declared as something else than JSON", ERROR),
                "422": _json_response("invalid request: record index and field", INVALID),
                "429": _json_response("too many requests in flight: retry later", ERROR),
                "503": _json_response("overloaded: retry later", ERROR),
            }
        )
    return spec


# The attribute through which each tag loads something (an <a href> is a link, not a load).
LOADING = {"script": "src", "link": "href", "iframe": "src", "img": "src", "embed": "src"}


class ExternalResources(HTMLParser):
    """The URLs of other hosts a page would load (scripts, styles, frames, images), links
    excluded."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.inline = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        url = dict(attrs).get(LOADING.get(tag, ""))
        if url and re.match(r"^([a-z][a-z0-9+.-]*:)?//", url, re.I):
            self.found.append(url)

    def handle_data(self, data: str) -> None:
        self.inline += data


def external_resources(page: str) -> list[str]:
    """What ``page`` would fetch from other hosts, inline scripts' URLs included."""
    parser = ExternalResources()
    parser.feed(page)
    return parser.found + re.findall(r"https?://[^\s'\"<>]+", parser.inline)


def docs_page() -> bytes:
    """BentoML's docs page without third-party requests, BentoML's GitHub corner, or its CSS
    rule that hides the API's title; fails if a third-party request remains (a new BentoML
    template), rather than serve it."""
    page = TAG_MANAGER.sub("", BENTOML_PAGE.read_text(encoding="utf-8"))
    page = page.replace(INITIALIZER, SWAGGER_UI)
    page = GITHUB_CORNER.sub("", page)
    page = re.sub(r"<title>.*?</title>", f"<title>{TITLE}</title>", page, count=1)
    page = page.replace("</head>", f"{SHOW_TITLE}\n  </head>", 1)
    found = external_resources(page)
    if found or SWAGGER_UI not in page or "github-corner" in page:
        raise RuntimeError(
            f"{BENTOML_PAGE} changed: third-party resources {found} or its GitHub corner remain"
        )
    return page.encode()


class OpenAPIMiddleware:
    """Serves ``document()`` (computed once) at ``GET /docs.json`` and ``docs_page()`` at
    ``GET /``."""

    def __init__(self, app: ASGIApp, document: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.document = document
        # Built here, so that a template with a third-party request stops the worker at start.
        self.bodies = {"/": (docs_page(), b"text/html; charset=utf-8")}

    def body(self, path: str) -> tuple[bytes, bytes]:
        if path not in self.bodies:  # the document: once the service is fully defined
            self.bodies[path] = json.dumps(self.document()).encode(), b"application/json"
        return self.bodies[path]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in ("/", "/docs.json"):
            await self.app(scope, receive, send)
            return
        body, content_type = self.body(scope["path"])
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
