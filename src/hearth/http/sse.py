"""Server-sent events, framed the way the OpenAI SDKs parse them."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from hearth.errors import APIError, envelope

DONE = b"data: [DONE]\n\n"
log = logging.getLogger("hearth.sse")


def sse_event(payload: BaseModel | dict[str, Any]) -> bytes:
    if isinstance(payload, BaseModel):
        body = payload.model_dump_json(exclude_unset=False)
    else:
        body = json.dumps(payload, separators=(",", ":"))
    return f"data: {body}\n\n".encode()


Event = BaseModel | dict[str, Any]


def sse_response(events: AsyncIterator[Event], *, done: bool = False) -> StreamingResponse:
    """Frame a service's events as SSE; ``done`` ends with ``[DONE]`` as chat streams do."""
    return StreamingResponse(
        _errors_as_events(events, done),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _errors_as_events(events: AsyncIterator[Event], done: bool) -> AsyncIterator[bytes]:
    """Once a stream has begun its status is sent, so a later error cannot change it.

    It ends the stream instead as an event carrying the usual error envelope,
    which the OpenAI SDKs raise as ``APIError``; a cut connection would reach
    the client as a bare network error. A client that goes away still just
    closes the stream (that is no ``Exception``).
    """
    try:
        async with aclosing(events):  # type: ignore[type-var]
            async for event in events:
                yield sse_event(event)
        if done:
            yield DONE
    except APIError as exc:
        yield sse_event(envelope(exc.message, exc.type, exc.param, exc.code))
    except Exception:
        log.exception("a stream failed after it began")
        yield sse_event(envelope("The server had an error while streaming the response. "
                                 "You can retry your request.", "server_error"))


# Named events, as the Assistants API streams them: `event: thread.run.created` then its data.
NamedEvent = tuple[str, BaseModel | dict[str, Any]]


def sse_named_event(name: str, payload: BaseModel | dict[str, Any]) -> bytes:
    return f"event: {name}\n".encode() + sse_event(payload)


def sse_named_response(events: AsyncIterator[NamedEvent]) -> StreamingResponse:
    """Frame ``(name, data)`` events; the stream ends with ``event: done`` / ``data: [DONE]``, and an
    error after the start is an ``error`` event carrying the envelope."""
    return StreamingResponse(
        _named_events(events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _named_events(events: AsyncIterator[NamedEvent]) -> AsyncIterator[bytes]:
    try:
        async with aclosing(events):  # type: ignore[type-var]
            async for name, payload in events:
                yield sse_named_event(name, payload)
        yield b"event: done\n" + DONE
    except APIError as exc:
        yield sse_named_event("error", envelope(exc.message, exc.type, exc.param, exc.code))
    except Exception:
        log.exception("a stream failed after it began")
        yield sse_named_event("error", envelope("The server had an error while streaming the response. "
                                                "You can retry your request.", "server_error"))


def sse_typed_response(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """Frame events that carry their own ``type`` (the Responses API's) as ``event: <type>`` then the data.

    No ``[DONE]`` follows: such a stream ends with its own final event. An
    error after the start is an ``error`` event carrying the envelope.
    """
    return StreamingResponse(
        _typed_events(events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _typed_events(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    failure: dict[str, Any] | None = None
    try:
        async with aclosing(events):  # type: ignore[type-var]
            async for event in events:
                yield f"event: {event['type']}\n".encode() + sse_event(event)
    except APIError as exc:
        failure = envelope(exc.message, exc.type, exc.param, exc.code)
    except Exception:
        log.exception("a stream failed after it began")
        failure = envelope("The server had an error while streaming the response. You can retry your request.",
                           "server_error")
    if failure is not None:
        yield b"event: error\n" + sse_event(failure)
