"""unless_client_leaves: a whole answer's work is cancelled when its client hangs up."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from hearth.http.disconnect import ClientClosedRequest, unless_client_leaves


def _request(gone: asyncio.Event) -> Request:
    async def receive() -> dict:
        await gone.wait()
        return {"type": "http.disconnect"}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)


def test_work_finishes_while_the_client_waits() -> None:
    async def scenario() -> str:
        async def work() -> str:
            await asyncio.sleep(0)
            return "answer"
        return await unless_client_leaves(_request(asyncio.Event()), work())

    assert asyncio.run(scenario()) == "answer"


def test_work_is_cancelled_when_the_client_hangs_up() -> None:
    cancelled = []

    async def scenario() -> None:
        gone = asyncio.Event()

        async def work() -> str:
            try:
                gone.set()  # the client leaves while the answer is being made
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
            return "never"

        with pytest.raises(ClientClosedRequest) as caught:
            await unless_client_leaves(_request(gone), work())
        assert caught.value.status_code == 499

    asyncio.run(scenario())
    assert cancelled == [True]


def test_an_error_in_the_work_is_raised_as_it_is() -> None:
    async def scenario() -> None:
        async def work() -> str:
            raise ValueError("refused")
        await unless_client_leaves(_request(asyncio.Event()), work())

    with pytest.raises(ValueError, match="refused"):
        asyncio.run(scenario())
