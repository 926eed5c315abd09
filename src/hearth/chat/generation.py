"""What chat and legacy completions share: engine errors, usage and its metering, fingerprints,
stream priming."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from hearth import metrics
from hearth.accounting.meter import UsageEvent
from hearth.caller import Caller
from hearth.catalog.catalog import ModelSpec
from hearth.chat.protocol import CompletionUsage
from hearth.engines import llama
from hearth.engines.registry import LoadedModel
from hearth.engines.runner import Admission
from hearth.errors import InvalidRequest
from hearth.streams import prime

T = TypeVar("T")


def fingerprint(spec: ModelSpec) -> str:
    """Names the exact weights behind an answer: it changes only when the model file does."""
    return f"fp_{spec.files[0].sha256[:10]}" if spec.files else f"fp_{spec.id}"


def check_limits(engine: llama.LlamaEngine, max_tokens: int | None, max_tokens_param: str,
                 logit_bias: dict[str, int] | None) -> None:
    """Numbers llama.cpp would otherwise take modulo 2^32, or not check at all."""
    if max_tokens is not None and max_tokens > engine.context_length:
        raise InvalidRequest(
            f"'{max_tokens_param}' is {max_tokens}; this model's context holds "
            f"{engine.context_length} tokens in all, prompt included.", param=max_tokens_param)
    for key in logit_bias or {}:
        if not key.isdigit() or int(key) >= engine.vocab_size:
            raise InvalidRequest(f"Invalid key in 'logit_bias': {key!r} is not a token id of this "
                                 f"model (0 to {engine.vocab_size - 1}).", param="logit_bias")


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


async def generate_whole(model: LoadedModel, fn: Callable[..., T], *args: Any,
                         admission: Admission) -> T:
    """Run ``fn(*args, stop=...)`` on the model's threads for a whole answer.

    If the awaiting task is cancelled (the client went away), ``stop`` is set
    and the engine ends generation at its next token instead of finishing an
    answer nobody will read.
    """
    stop = threading.Event()
    try:
        return await model.runner.run(fn, *args, stop=stop, admission=admission)
    except asyncio.CancelledError:
        stop.set()
        raise


async def start_stream(model: LoadedModel, request: dict[str, Any], prompt_param: str,
                       generate: Callable[[dict[str, Any]], Iterator[dict[str, Any]]],
                       admission: Admission) -> AsyncIterator[dict[str, Any]]:
    """Start a streamed generation on the model's threads; refusals raise before it starts.

    The stream holds ``admission`` until it ends.
    """
    # Usage is always requested so it can be summed over choices; sent only if asked for.
    request["stream_options"] = {"include_usage": True}
    started = time.perf_counter()
    chunks = model.runner.stream(lambda: generate(request), admission=admission)
    primed = await prime(_refusals_mapped(chunks, model.engine, prompt_param))
    metrics.TIME_TO_FIRST_TOKEN.labels(model.spec.id).observe(time.perf_counter() - started)
    return primed


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


@dataclass
class Usage:
    """Token counts summed over the choices (and prompts) of one request.

    A stream's counts arrive with each choice's last chunk; until then
    ``streamed`` counts the chunks sent (llama.cpp sends a token a chunk), so
    a stream the client abandons is still metered for what it generated.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    streamed: int = 0
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

    def so_far(self) -> CompletionUsage:
        """The counts of a stream however far it got: the engine's, once it has reported."""
        return self.total() if self._prompt_seen else self.of(0, self.streamed)


def usage_event(caller: Caller, endpoint: str, model: str, usage: CompletionUsage, *,
                batch: bool = False) -> UsageEvent:
    return UsageEvent(caller, kind="completions", endpoint=endpoint, model=model, batch=batch,
                      input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens)


async def metered(stream: AsyncIterator[T], usage: Usage,
                  record: Callable[[CompletionUsage], None]) -> AsyncIterator[T]:
    """The stream, recording its usage when it ends: finished, failed or abandoned."""
    try:
        async with aclosing(stream):  # type: ignore[type-var]
            async for item in stream:
                yield item
    finally:
        record(usage.so_far())
