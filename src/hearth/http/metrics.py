"""Counts and times every HTTP request into the process's Prometheus metrics (``hearth.metrics``).

Pure ASGI, so streamed responses pass through unbuffered: a stream's
duration runs to its last byte, and its time to first byte is when its
first body bytes were sent (for a primed stream, about its first token).
Requests are labelled by their route's template (``/v1/files/{file_id}``),
so ids in paths never become label values; paths that match no route are
``unmatched``.
"""

from __future__ import annotations

import time

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth import metrics

UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The matched route's template with the prefix it was included under (``/v1``).

    Routers included with a prefix may report their own path without it, so
    the prefix is read off the request's path: what precedes the part the
    route's pattern matches (prefixes here have no parameters).
    """
    route = scope.get("route")
    template = getattr(route, "path", None) if isinstance(route, BaseRoute) else None
    pattern = getattr(route, "path_regex", None)
    if not isinstance(template, str):
        return UNMATCHED
    path: str = scope["path"]
    if pattern is not None:
        for start in (i for i, char in enumerate(path) if char == "/"):
            if pattern.fullmatch(path[start:]):
                return path[:start] + template
    return template


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering
        first_byte: float | None = None

        async def observing_send(message: Message) -> None:
            nonlocal status, first_byte
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and first_byte is None and (
                    message.get("body") or not message.get("more_body", False)):
                first_byte = time.perf_counter()
            await send(message)

        metrics.HTTP_IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, observing_send)
        finally:
            metrics.HTTP_IN_PROGRESS.dec()
            method, route = scope["method"], route_template(scope)
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)
            if first_byte is not None:
                metrics.HTTP_FIRST_BYTE.labels(method, route).observe(first_byte - started)
