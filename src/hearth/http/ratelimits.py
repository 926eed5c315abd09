"""Opens each request's rate-limit scope and puts what its checks found in the response headers.

The scope (``hearth.accounting.ratelimits.RateLimitScope``) is set here before
the app runs, filled with the caller by authentication, and with the
counters' state by the model service when the request is admitted to a model.
A response whose request was checked carries OpenAI's ``x-ratelimit-*``
headers (limit, remaining and reset, for requests and tokens), a 429 included.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.accounting.ratelimits import RateLimitScope, current_scope, rate_limit_headers

# Routes whose uploads count against a project's audio megabytes a minute (by their declared size).
AUDIO_UPLOADS = re.compile(r"/v1/audio/(transcriptions|translations)")


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


class RateLimitHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = RateLimitScope()
        if AUDIO_UPLOADS.fullmatch(scope["path"]):
            limits.upload_bytes = _declared_length(scope)
        token = current_scope.set(limits)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and (limits.requests or limits.tokens):
                extra = [(name.encode(), value.encode()) for name, value in rate_limit_headers(limits)]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            current_scope.reset(token)
