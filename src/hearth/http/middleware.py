"""ASGI middleware that every response passes through.

Pure ASGI rather than ``BaseHTTPMiddleware`` so streamed responses are not
buffered and a client disconnect reaches the endpoint.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from fastapi import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth import logs
from hearth.http.errors import http_exception_response


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


class RequestContextMiddleware:
    """Gives each request an id and reports how long it took to start answering."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        # Every log line of this request names it (and, once authenticated, its caller's project).
        log_context = logs.context.set({"request_id": request_id})
        _default_json_content_type(scope)
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed_ms = int((time.perf_counter() - started) * 1000)
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"x-request-id", b"openai-processing-ms")
                ]
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"openai-processing-ms", str(elapsed_ms).encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            logs.context.reset(log_context)


def _default_json_content_type(scope: Scope) -> None:
    """A body sent with no Content-Type is read as JSON, as the API reads it (curl users and
    some SDKs leave the header out)."""
    headers = scope["headers"]
    if scope["method"] in ("POST", "PUT", "PATCH") and not any(k == b"content-type" for k, _ in headers):
        scope["headers"] = [*headers, (b"content-type", b"application/json")]


BodyLimit = Callable[[str], int]


def body_limit_by_path(default: int, overrides: list[tuple[str, int]]) -> BodyLimit:
    """Map a request path to its largest accepted body (first matching pattern wins)."""
    compiled = [(re.compile(pattern), limit) for pattern, limit in overrides]

    def limit_for(path: str) -> int:
        for pattern, limit in compiled:
            if pattern.fullmatch(path):
                return limit
        return default

    return limit_for


def too_large(limit: int) -> HTTPException:
    return HTTPException(
        status_code=413,
        detail=f"Request body too large: the limit for this endpoint is {limit} bytes.",
    )


class BodySizeLimitMiddleware:
    """Refuses bodies over the path's limit without reading them into memory.

    A declared Content-Length over the limit is refused before any byte is
    read; a chunked body is counted as it streams and cut off at the limit.
    """

    def __init__(self, app: ASGIApp, limit_for: BodyLimit) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = await http_exception_response(Request(scope, receive), too_large(limit))
            await response(scope, receive, send)
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large(limit)
            return message

        await self.app(scope, counting_receive, send)
