"""What chat and legacy completions share: engine errors, usage, fingerprints, stream priming."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from hearth.api.errors import InvalidRequest
from hearth.catalog.catalog import ModelSpec
from hearth.engines import llama
from hearth.engines.registry import LoadedModel
from hearth.protocol.chat import CompletionUsage

T = TypeVar("T")


def fingerprint(spec: ModelSpec) -> str:
    """Names the exact weights behind an answer: it changes only when the model file does."""
    return f"fp_{spec.files[0].sha256[:10]}" if spec.files else f"fp_{spec.id}"


def check_choices(n: int | None, limit: int, param: str = "n") -> None:
    """llama.cpp generates a request's choices side by side, one parallel slot each."""
    if n is not None and n > limit:
        raise InvalidRequest(f"'{param}' is {n}; this model generates at most {limit} choices "
                             "per request.", param=param)


@contextmanager
def engine_errors(engine: llama.LlamaEngine, prompt_param: str) -> Iterator[None]:
    """Turn the engine's refusals into 400s; its own failures stay server errors."""
    try:
        yield
    except llama.ContextLengthExceeded as exc:
        raise InvalidRequest(
            f"This model's maximum context length is {engine.context_length} tokens, and this "
            f"request does not fit: {exc.message}. Shorten the {prompt_param} or max_tokens.",
            param=prompt_param, code="context_length_exceeded") from None
    except llama.InvalidRequest as exc:
        raise InvalidRequest(exc.message, param=exc.param) from None


async def start_stream(model: LoadedModel, request: dict[str, Any], prompt_param: str,
                       generate: Callable[[dict[str, Any]], Iterator[dict[str, Any]]]
                       ) -> AsyncIterator[dict[str, Any]]:
    """Start a streamed generation on the model's threads; refusals raise before it starts."""
    # Usage is always requested so it can be summed over choices; sent only if asked for.
    request["stream_options"] = {"include_usage": True}
    chunks = model.runner.stream(lambda: generate(request))
    return await prime(_refusals_mapped(chunks, model.engine, prompt_param))


async def _refusals_mapped(chunks: AsyncIterator[T], engine: llama.LlamaEngine,
                           prompt_param: str) -> AsyncIterator[T]:
    """The stream with the engine's refusals as 400s.

    Before the first chunk such a 400 is the response; after it, sse_response
    ends the stream with it as an error event.
    """
    async with aclosing(chunks):  # type: ignore[type-var]
        with engine_errors(engine, prompt_param):
            async for chunk in chunks:
                yield chunk


async def prime(stream: AsyncIterator[T]) -> AsyncIterator[T]:
    """Pull the first item now, so a refusal raises before any byte is sent."""
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        return _empty()
    return _chain(first, stream)


async def _empty() -> AsyncIterator[T]:
    return
    yield  # an async generator that yields nothing


async def _chain(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    try:
        yield first
        async for item in rest:
            yield item
    finally:
        # Reached on a client disconnect too: closing the runner's stream stops generation.
        await rest.aclose()  # type: ignore[attr-defined]


@dataclass
class Usage:
    """Token counts summed over the choices (and prompts) of one request."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    _prompt_seen: bool = False

    @staticmethod
    def of(prompt_tokens: int, completion_tokens: int) -> CompletionUsage:
        return CompletionUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                               total_tokens=prompt_tokens + completion_tokens)

    def add(self, prompt_tokens: int, completion_tokens: int, *, once_prompt: bool) -> None:
        """Count a choice; `once_prompt` when every choice shares one prompt."""
        if not (once_prompt and self._prompt_seen):
            self.prompt_tokens += prompt_tokens
            self._prompt_seen = True
        self.completion_tokens += completion_tokens

    def total(self) -> CompletionUsage:
        return self.of(self.prompt_tokens, self.completion_tokens)
