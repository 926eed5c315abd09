"""The HTTP side of rate limiting alone: the scope each request opens, and the headers it leaves."""

from __future__ import annotations

import asyncio

import httpx

from hearth.accounting.ratelimits import LimitState, current_scope
from hearth.http.ratelimits import RateLimitHeadersMiddleware

seen: list[int | None] = []


async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """Stands for the routes: a model route records a check, any other leaves the scope alone."""
    limits = current_scope.get()
    assert limits is not None
    seen.append(limits.upload_bytes)
    if scope["path"] != "/health":
        limits.requests = LimitState(limit=10, remaining=7, reset=1.5)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _get(method: str, path: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=RateLimitHeadersMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://hearth") as client:
        return await client.request(method, path, **kwargs)  # type: ignore[arg-type]


def test_checked_requests_carry_the_headers_and_others_do_not() -> None:
    checked = asyncio.run(_get("POST", "/v1/embeddings", json={}))
    assert checked.headers["x-ratelimit-limit-requests"] == "10"
    assert checked.headers["x-ratelimit-remaining-requests"] == "7"
    assert checked.headers["x-ratelimit-reset-requests"] == "1.5s"
    assert "x-ratelimit-limit-tokens" not in checked.headers
    plain = asyncio.run(_get("GET", "/health"))
    assert not any(name.startswith("x-ratelimit") for name in plain.headers)
    assert current_scope.get() is None


def test_audio_uploads_declare_their_size_to_the_limiter() -> None:
    seen.clear()
    asyncio.run(_get("POST", "/v1/audio/transcriptions", content=b"x" * 1234))
    asyncio.run(_get("POST", "/v1/audio/speech", content=b"x" * 10))
    assert seen == [1234, None]
