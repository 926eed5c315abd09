"""Server-sent events, framed the way the OpenAI SDKs parse them."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
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
# Named events, as the Assistants API streams them: `event: thread.run.created` then its data.
NamedEvent = tuple[str, Event]

_SERVER_ERROR = "The server had an error while streaming the response. You can retry your request."


def sse_named_event(name: str, payload: Event) -> bytes:
    return f"event: {name}\n".encode() + sse_event(payload)


def sse_response(events: AsyncIterator[Event], *, done: bool = False) -> StreamingResponse:
    """Frame a service's events as SSE; ``done`` ends with ``[DONE]`` as chat streams do."""
    return _streaming(_framed(events, sse_event, end=DONE if done else b"", error_name=None))


def sse_named_response(events: AsyncIterator[NamedEvent]) -> StreamingResponse:
    """Frame ``(name, data)`` events; the stream ends with ``event: done`` / ``data: [DONE]``, and an
    error after the start is an ``error`` event carrying the envelope."""
    return _streaming(_framed(events, lambda named: sse_named_event(*named), end=b"event: done\n" + DONE,
                              error_name="error"))


def sse_typed_response(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """Frame events that carry their own ``type`` (the Responses API's) as ``event: <type>`` then the data.

    No ``[DONE]`` follows: such a stream ends with its own final event. An
    error after the start is an ``error`` event carrying the envelope.
    """
    return _streaming(_framed(events, lambda event: sse_named_event(event["type"], event), end=b"",
                              error_name="error"))


def _streaming(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _framed(events: AsyncIterator[Any], frame: Callable[[Any], bytes], *, end: bytes,
                  error_name: str | None) -> AsyncIterator[bytes]:
    """Each event framed, then ``end``.

    Once a stream has begun its status is sent, so a later error cannot change
    it. It ends the stream instead as an event carrying the usual error
    envelope (named ``error_name`` where the stream names its events), which
    the OpenAI SDKs raise as ``APIError``; a cut connection would reach the
    client as a bare network error. A client that goes away still just closes
    the stream (that is no ``Exception``).
    """
    try:
        async with aclosing(events):  # type: ignore[type-var]
            async for event in events:
                yield frame(event)
        if end:
            yield end
        return
    except APIError as exc:
        failure = envelope(exc.message, exc.type, exc.param, exc.code)
    except Exception:
        log.exception("a stream failed after it began")
        failure = envelope(_SERVER_ERROR, "server_error")
    yield sse_event(failure) if error_name is None else sse_named_event(error_name, failure)
