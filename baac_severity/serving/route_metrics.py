"""Prometheus labels bounded by the service's routes: every unknown path counts as one label.

BentoML's traffic metrics label each request with its raw path (``endpoint``), so that every
distinct path, 401s included, adds series to ``/metrics`` and to every worker's memory, for
ever: 2,000 keyless requests to random paths grew ``/metrics`` from 94 KB to 8.8 MB. Its
middleware is the outermost one, before the service's own (``add_asgi_middleware``), and BentoML
1.4 has no setting for the label; so ``install`` replaces the class BentoML builds the app with
by a subclass that labels a request by its route: a known path, a static prefix, or
``UNMATCHED``. The request itself still reaches the app with its real path (docs/serving.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bentoml._internal.server.http import instruments

from baac_severity.serving.auth import Receive, Scope, Send

UNMATCHED = "(unmatched)"
REAL_PATH = "baac_severity.real_path"  # the scope key that carries the path past the label


def endpoint_label(path: str, routes: frozenset[str], prefixes: tuple[str, ...]) -> str:
    """The ``endpoint`` label of a request for ``path``: one value per route, at most."""
    if path in routes:
        return path
    for prefix in prefixes:
        if path.startswith(prefix):
            return prefix + "*"
    return UNMATCHED


def with_real_path(app: Any) -> Any:  # typed as BentoML types ASGI apps
    """Give the app the request's real path back (the metrics saw the label)."""

    async def restore(scope: Scope, receive: Receive, send: Send) -> None:
        if REAL_PATH in scope:
            scope = {**scope, "path": scope[REAL_PATH]}
            del scope[REAL_PATH]
        await app(scope, receive, send)

    return restore


class RouteLabelledTrafficMetrics(instruments.RunnerTrafficMetricsMiddleware):
    """BentoML's traffic metrics with the ``endpoint`` label taken from the route."""

    routes: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    def __init__(self, app: Any, **options: Any) -> None:
        super().__init__(with_real_path(app), **options)

    # Typed as BentoML types its own (ASGI scope, receive and send).
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            label = endpoint_label(scope["path"], self.routes, self.prefixes)
            if label != scope["path"]:
                scope = {**scope, "path": label, REAL_PATH: scope["path"]}
        await super().__call__(scope, receive, send)


def install(routes: Iterable[str], prefixes: Iterable[str]) -> None:
    """Make BentoML build this process's app with route-labelled metrics (call before the
    app is built: at the service module's import)."""
    RouteLabelledTrafficMetrics.routes = frozenset(routes)
    RouteLabelledTrafficMetrics.prefixes = tuple(prefixes)
    # The name BentoML's ServiceAppFactory imports when it assembles the middleware.
    setattr(instruments, "RunnerTrafficMetricsMiddleware", RouteLabelledTrafficMetrics)  # noqa: B010
