"""Stop work for a client that hung up before its whole answer was ready.

A streamed answer stops when its client goes (the response's send fails and
the stream is closed). A whole answer is computed before anything is sent,
so nothing would notice: :func:`unless_client_leaves` watches the connection
while the work runs and cancels it on a disconnect, which the services turn
into stopping their engines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

from hearth.errors import APIError

T = TypeVar("T")


class ClientClosedRequest(APIError):
    """Rendered only for the log and the metrics: the client is no longer there to read it."""

    status_code = 499


async def unless_client_leaves(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """The result of ``work``, or :class:`ClientClosedRequest` once the client disconnects,
    with ``work`` cancelled."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            # Let the work see its cancellation (and stop its engine) before answering.
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise ClientClosedRequest("The client closed the connection before the answer was ready.",
                                  code="client_closed_request")
    return task.result()


async def _disconnected(request: Request) -> None:
    """Return once the client has gone. The body is read by then, so the next
    message the server has for this request is its disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
