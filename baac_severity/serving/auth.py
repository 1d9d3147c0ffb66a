"""Request guards of the prediction service, as ASGI middleware: API key, body size, media type.

``APIKeyMiddleware`` lets a request through when it carries one of the keys in ``API_KEY``
(comma-separated, so that a key can be rotated: add the new one, move the clients, remove the
old one), either in the ``X-API-Key`` header or as ``Authorization: Bearer <key>`` (what
``bentoml.SyncHTTPClient(url, token=key)`` sends). The probes, ``/metrics``, the docs page
``/``, its assets and the two API descriptions (``/docs.json``, ``/schema.json``) stay open;
everything else, unknown paths included, answers 401 without a key. Keys are compared in
constant time and never logged.

``BodyLimitMiddleware`` answers 413 to a body over ``MAX_BODY_BYTES`` before it is read: from
its Content-Length, or while reading a streamed (chunked) body, so memory stays bounded.

``JSONBodyMiddleware`` answers 415 to a request body declared as anything but UTF-8 JSON
(``application/json`` or a ``+json`` type, ``charset=utf-8`` or none), before it is read: a form
or a text body sent by mistake gets a clear answer instead of a JSON parse error. A body without
a Content-Type is read as JSON.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from baac_severity.serving.settings import ServiceSettings

log = logging.getLogger("baac_severity.serving.auth")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_KEY_HEADER = "X-API-Key"
BEARER = b"bearer"
# /schema.json is BentoML's own description of the APIs, which its HTTP clients fetch before
# anything else: it says no more than /docs.json (docs/serving.md#authentication).
OPEN_PATHS = frozenset(
    {"/", "/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/schema.json"}
)
OPEN_PREFIXES = ("/static_content/", "/assets/")  # the docs page's scripts and styles
NO_KEY = (
    "no API key configured: set API_KEY (comma-separated keys allowed) in the environment "
    "or in .env (see .env.example), or set ALLOW_NO_AUTH=1 to serve without authentication"
)
NO_AUTH_WARNING = (
    "WARNING: ALLOW_NO_AUTH is set: the prediction API is served WITHOUT authentication. "
    "Never do this outside a trusted development machine."
)


class ConfigurationError(RuntimeError):
    """The service must not start with this configuration."""


def configuration_problem(settings: ServiceSettings) -> str | None:
    """Why the service must not start (no key and no explicit opt-out), or None."""
    if settings.keys() or settings.allow_no_auth:
        return None
    return NO_KEY


def key_matches(candidate: bytes, keys: Iterable[bytes]) -> bool:
    # Every key is compared, so the time taken does not tell which key nearly matched.
    matched = False
    for key in keys:
        matched |= secrets.compare_digest(candidate, key)
    return matched


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


async def send_json(
    send: Send, status: int, payload: dict[str, Any], headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(payload).encode()
    start_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


# RFC 9110 section 5.5: a field value's leading and trailing spaces and tabs are not part of it.
# Not every server strips them (uvicorn's httptools parser keeps them), so both headers are
# trimmed here, by this one rule.
OPTIONAL_WHITESPACE = b" \t"


def offered_keys(scope: Scope) -> list[bytes]:
    """The credentials a request offers: its ``X-API-Key`` and its ``Authorization: Bearer``
    token (either may be absent), without surrounding whitespace."""
    offered = []
    api_key = header(scope, API_KEY_HEADER.lower().encode())
    if api_key is not None and api_key.strip(OPTIONAL_WHITESPACE):
        offered.append(api_key.strip(OPTIONAL_WHITESPACE))
    authorization = header(scope, b"authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip(OPTIONAL_WHITESPACE).partition(b" ")
        token = token.strip(OPTIONAL_WHITESPACE)
        if scheme.lower() == BEARER and token:
            offered.append(token)
    return offered


class APIKeyMiddleware:
    """401 for any non-open path without a valid key (``X-API-Key`` or a Bearer token)."""

    def __init__(self, app: ASGIApp, keys: Iterable[bytes], allow_no_auth: bool = False) -> None:
        self.app = app
        self.keys = tuple(keys)
        self.disabled = allow_no_auth
        if not self.keys and not self.disabled:
            # Fail closed even where the start-up check did not run (e.g. an embedded app).
            raise ConfigurationError(NO_KEY)
        if self.disabled:
            log.warning(NO_AUTH_WARNING)

    def authorised(self, scope: Scope) -> bool:
        # Every offered credential is compared, so the time taken does not tell which one
        # nearly matched.
        matched = False
        for candidate in offered_keys(scope):
            matched |= key_matches(candidate, self.keys)
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.disabled or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.authorised(scope):
            await self.app(scope, receive, send)
            return
        # Logged without the header: the offered key may be a real key with a typo.
        log.warning("401 %s %s: missing or invalid API key", scope.get("method"), scope["path"])
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        challenge = f'ApiKey header="{API_KEY_HEADER}", Bearer'.encode()
        await send_json(
            send,
            401,
            {"error": "missing or invalid API key"},
            [(b"www-authenticate", challenge)],
        )


class BodyLimitMiddleware:
    """413 for a request body over ``max_bytes``, checked before the body is read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def too_large(self, send: Send) -> None:
        await send_json(send, 413, {"error": "request body too large", "max_bytes": self.max_bytes})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = header(scope, b"content-length")
        if length is not None:
            # The server never delivers more than the declared length.
            if not length.isdigit() or int(length) > self.max_bytes:
                await self.too_large(send)
                return
            await self.app(scope, receive, send)
            return
        body = await self.read_streamed(receive)
        if body is None:
            await self.too_large(send)
            return
        await self.app(scope, replay(body, receive), send)

    async def read_streamed(self, receive: Receive) -> bytes | None:
        """A body without Content-Length, read up to the limit (None beyond it)."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break  # client gone: the app sees an empty body and the disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


JSON_CHARSETS = frozenset({"utf-8", "utf8"})  # RFC 8259: JSON exchanged between systems is UTF-8
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def media_type_problem(content_type: bytes | None) -> str | None:
    """Why a body of this Content-Type is not read as JSON, or None (absent: read as JSON)."""
    if content_type is None:
        return None
    text = content_type.decode("latin-1")
    media_type, *parameters = (part.strip() for part in text.split(";"))
    media_type = media_type.lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return f"Content-Type {media_type or '(empty)'!r} is not JSON; send application/json"
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in JSON_CHARSETS:
            return f"charset {charset!r} is not supported; JSON bodies are UTF-8"
    return None


class JSONBodyMiddleware:
    """415 for a request body declared as something other than UTF-8 JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in BODY_METHODS:
            problem = media_type_problem(header(scope, b"content-type"))
            if problem is not None:
                payload = {"error": "unsupported media type", "detail": problem}
                await send_json(send, 415, payload, [(b"accept", b"application/json")])
                return
        await self.app(scope, receive, send)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that first delivers ``body`` whole, then defers to the server's."""
    delivered = False

    async def receive_again() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive_again
