"""A stream that fails after it began ends in an error event, which the SDK raises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from fastapi import FastAPI

from hearth.errors import InvalidRequest
from hearth.http.sse import sse_response

CHUNK = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "m",
         "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}


def _app(failure: Exception | None, closed: list[bool]) -> FastAPI:
    app = FastAPI()

    async def events() -> AsyncIterator[dict]:
        try:
            yield CHUNK
            if failure is not None:
                raise failure
        finally:
            closed.append(True)

    @app.post("/v1/chat/completions")
    async def stream() -> object:
        return sse_response(events(), done=True)

    return app


async def _stream(failure: Exception | None) -> tuple[list[str], list[bool]]:
    closed: list[bool] = []
    transport = httpx.ASGITransport(app=_app(failure, closed))
    client = openai.AsyncOpenAI(base_url="http://hearth.test/v1", api_key="k",
                                http_client=httpx.AsyncClient(transport=transport))
    contents: list[str] = []
    stream = await client.chat.completions.create(model="m", messages=[], stream=True)
    async for chunk in stream:
        contents.append(chunk.choices[0].delta.content or "")
    return contents, closed


def test_a_clean_stream_is_untouched() -> None:
    assert asyncio.run(_stream(None)) == (["Hi"], [True])


def test_a_client_error_mid_stream_reaches_the_sdk_as_its_envelope() -> None:
    with pytest.raises(openai.APIError) as raised:
        asyncio.run(_stream(InvalidRequest("The audio ends in a corrupt frame.", param="file",
                                           code="invalid_audio")))
    assert raised.value.message == "The audio ends in a corrupt frame."
    assert raised.value.body == {"message": "The audio ends in a corrupt frame.",
                                 "type": "invalid_request_error", "param": "file",
                                 "code": "invalid_audio"}


def test_an_unexpected_error_mid_stream_is_a_server_error_without_its_details() -> None:
    with pytest.raises(openai.APIError) as raised:
        asyncio.run(_stream(RuntimeError("secret internals")))
    assert raised.value.type == "server_error"
    assert "secret" not in raised.value.message
