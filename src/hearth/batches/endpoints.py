"""The endpoints a batch line can call, each through the service its online route uses.

A line's body is checked with the same request model the route validates
with, and refused in the same words, so a bad line gets the status and
envelope the online request would have had. The services run it with
``background=True``: the runner's background lane (online requests go
first) and usage metered as batch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from pydantic import BaseModel, ValidationError

from hearth.caller import Caller
from hearth.chat.protocol import CreateChatCompletionRequest
from hearth.chat.service import ChatService
from hearth.completions.protocol import CreateCompletionRequest
from hearth.completions.service import CompletionService
from hearth.embeddings.protocol import CreateEmbeddingRequest
from hearth.embeddings.service import EmbeddingsService
from hearth.errors import APIError, InvalidRequest, invalid_request
from hearth.moderations.protocol import CreateModerationRequest
from hearth.moderations.service import ModerationService

# What a batch may name as its endpoint: the batchable endpoints of the API that Hearth serves.
SERVED = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/moderations")


@dataclass(frozen=True)
class Endpoint:
    request: type[BaseModel]
    run: Callable[[Caller, Any], Awaitable[BaseModel]]
    # Answers several requests in one engine call, for a service that can join them.
    run_many: Callable[[Caller, list[Any]], Awaitable[Sequence[BaseModel | APIError]]] | None = None


class Endpoints:
    """Runs lines' bodies against their endpoint, as the caller who created the batch."""

    def __init__(self, chat: ChatService, completions: CompletionService, embeddings: EmbeddingsService,
                 moderations: ModerationService) -> None:
        self._served = {
            "/v1/chat/completions": Endpoint(CreateChatCompletionRequest, partial(chat.create, background=True)),
            "/v1/completions": Endpoint(CreateCompletionRequest, partial(completions.create, background=True)),
            "/v1/embeddings": Endpoint(CreateEmbeddingRequest, partial(embeddings.create, background=True),
                                       partial(embeddings.create_many, background=True)),
            "/v1/moderations": Endpoint(CreateModerationRequest, partial(moderations.create, background=True)),
        }

    def joins(self, path: str) -> bool:
        """Whether several lines of ``path`` can be answered by one call (``call_many``)."""
        return self._served[path].run_many is not None

    async def call(self, path: str, caller: Caller, body: dict[str, Any]) -> BaseModel:
        """The response the online route would have sent; raises its refusals as ``APIError``."""
        endpoint = self._served[path]
        return await endpoint.run(caller, _request(endpoint, body))

    async def call_many(self, path: str, caller: Caller, bodies: list[dict[str, Any]]
                        ) -> list[BaseModel | APIError]:
        """Each body's response or refusal, the valid ones answered together in one service call."""
        endpoint = self._served[path]
        assert endpoint.run_many is not None, f"{path} answers one line at a time"
        outcomes: list[BaseModel | APIError | None] = [None] * len(bodies)
        valid: list[int] = []
        requests: list[BaseModel] = []
        for index, body in enumerate(bodies):
            try:
                requests.append(_request(endpoint, body))
            except APIError as exc:
                outcomes[index] = exc
            else:
                valid.append(index)
        if requests:
            for index, outcome in zip(valid, await endpoint.run_many(caller, requests), strict=True):
                outcomes[index] = outcome
        return [outcome for outcome in outcomes if outcome is not None]


def _request(endpoint: Endpoint, body: dict[str, Any]) -> BaseModel:
    """A line's body as its endpoint's request, refused as the online route would refuse it."""
    try:
        request = endpoint.request.model_validate(body)
    except ValidationError as exc:
        raise invalid_request(exc.errors()) from None
    if getattr(request, "stream", None):
        raise InvalidRequest("Streaming is not available in a batch: each line's answer is written "
                             "whole to the output file. Leave 'stream' out or set it to false.",
                             param="stream")
    return request


def token_usage(response: BaseModel) -> tuple[int, int]:
    """Input and output tokens a response reports (embeddings: input only; moderations: none)."""
    usage = getattr(response, "usage", None)
    return getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0
