"""Legacy text completions: prompts in their four forms, echo, suffix, best_of, streams."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from hearth.accounting.meter import Meter
from hearth.caller import Caller
from hearth.chat.generation import (
    Usage,
    check_choices,
    check_limits,
    engine_errors,
    fingerprint,
    generate_whole,
    metered,
    start_stream,
    usage_event,
)
from hearth.completions.protocol import (
    CompletionChoice,
    CreateCompletionRequest,
    LegacyLogprobs,
    TextCompletion,
)
from hearth.engines import llama
from hearth.engines.registry import LoadedModel
from hearth.errors import InvalidRequest
from hearth.models.service import ModelService
from hearth.streams import prime

EngineRequest = dict[str, Any]
_PASSED_FIELDS = ("prompt", "suffix", "max_tokens", "temperature", "top_p", "n", "best_of",
                  "logprobs", "echo", "stop", "presence_penalty", "frequency_penalty",
                  "logit_bias", "seed")


def engine_request(body: CreateCompletionRequest, model: LoadedModel) -> EngineRequest:
    """Check everything that can be refused and build llama.cpp's request."""
    n = body.n or 1
    if body.best_of is not None and body.best_of < n:
        raise InvalidRequest(f"'best_of' ({body.best_of}) must be at least 'n' ({n}).",
                             param="best_of")
    if body.stream and (body.best_of or 1) > n:
        raise InvalidRequest("'best_of' cannot be used with 'stream'.", param="best_of")
    if body.stream_options is not None and not body.stream:
        raise InvalidRequest("The 'stream_options' parameter is only allowed when 'stream' is "
                             "enabled.", param="stream_options")
    check_limits(model.engine, body.max_tokens, "max_tokens", body.logit_bias)
    check_choices(body.n, model.engine.n_parallel)
    check_choices(body.best_of, model.engine.n_parallel, "best_of")
    request = body.model_dump(include=set(_PASSED_FIELDS), exclude_none=True)
    request["model"] = body.model
    request["prompt"] = body.prompt if body.prompt is not None else "<|endoftext|>"
    return request


def _prompt_tokens(engine: llama.LlamaEngine, prompts: list[str] | list[list[int]]) -> list[int]:
    return [len(p) if isinstance(p, list) else len(engine.tokenize(p)) for p in prompts]


def _complete(engine: llama.LlamaEngine, request: EngineRequest, body: CreateCompletionRequest,
              stop: threading.Event | None = None) -> tuple[dict[str, Any], Usage]:
    """Runs on the model's thread: the completion, with usage over every prompt and choice."""
    if request.get("max_tokens") == 0:
        return _nothing_to_generate(engine, request, body)
    response = engine.complete(request, stop=stop)
    usage = Usage(completion_tokens=response["usage"]["completion_tokens"])
    prompt_tokens = _prompt_tokens(engine, body.prompts)
    usage.prompt_tokens = sum(prompt_tokens)
    if len(response["choices"]) > 1:
        # llama.cpp reports one choice's tokens; count each choice with the real tokenizer.
        n = body.n or 1
        usage.completion_tokens = sum(
            len(engine.tokenize(choice["text"]))
            - (prompt_tokens[choice["index"] // n] if body.echo else 0)
            + _end_token(choice, stop_words=bool(request.get("stop")))
            for choice in response["choices"])
    return response, usage


def _end_token(choice: dict[str, Any], *, stop_words: bool) -> int:
    """The end-of-generation token a choice that stopped by itself generated but never shows;
    llama.cpp counts it. A "stop" with stop words may be a matched word instead (an estimate)."""
    return 1 if choice.get("finish_reason") == "stop" and not stop_words else 0


def _nothing_to_generate(engine: llama.LlamaEngine, request: EngineRequest,
                         body: CreateCompletionRequest) -> tuple[dict[str, Any], Usage]:
    """max_tokens 0 asks for no new tokens (llama.cpp would still generate one): each choice
    is the echoed prompt, or empty."""
    n = body.n or 1
    prompts = body.prompts
    texts = [p if isinstance(p, str) else engine.detokenize(p) for p in prompts]
    choices = [{"index": i, "text": texts[i // n] if body.echo else "", "logprobs": None,
                "finish_reason": "length"} for i in range(len(prompts) * n)]
    response = {"id": f"cmpl-{secrets.token_urlsafe(24)}", "created": int(time.time()),
                "choices": choices}
    return response, Usage(prompt_tokens=sum(_prompt_tokens(engine, prompts)))


def _choice(raw: dict[str, Any]) -> CompletionChoice:
    logprobs = raw.get("logprobs")
    return CompletionChoice(
        index=raw["index"], text=raw["text"],
        logprobs=LegacyLogprobs.model_validate(logprobs) if logprobs else None,
        finish_reason=raw.get("finish_reason"))


ENDPOINT = "/v1/completions"


class CompletionService:
    """Legacy text completions for any caller: an HTTP request or a batch line."""

    def __init__(self, models: ModelService, meter: Meter) -> None:
        self.models = models
        self.meter = meter

    async def create(self, caller: Caller, body: CreateCompletionRequest, *,
                     background: bool = False) -> TextCompletion:
        model = await self.models.load(body.model, "chat", caller)
        request = engine_request(body, model)
        with await self.models.admit(model, background=background) as admission, \
                engine_errors(model.engine, "prompt"):
            raw, usage = await generate_whole(model, _complete, model.engine, request, body,
                                              admission=admission)
        self.meter.record(usage_event(caller, ENDPOINT, body.model, usage.total(),
                                      batch=background))
        return TextCompletion(
            id=raw["id"], created=raw["created"], model=body.model,
            system_fingerprint=fingerprint(model.spec),
            choices=[_choice(choice) for choice in raw["choices"]], usage=usage.total())

    async def stream(self, caller: Caller, body: CreateCompletionRequest
                     ) -> AsyncIterator[TextCompletion]:
        """Start generating and return the chunks; refusals raise before the first one."""
        model = await self.models.load(body.model, "chat", caller)
        request = engine_request(body, model)
        admission = await self.models.admit(model)
        raw_chunks = await start_stream(model, request, "prompt", model.engine.complete_stream,
                                        admission)
        usage = Usage()
        # Primed again, so that closing what is returned meters the stream even unread.
        return await prime(metered(
            _chunks(raw_chunks, body, fingerprint(model.spec), usage), usage,
            lambda total: self.meter.record(usage_event(caller, ENDPOINT, body.model, total))))


async def _chunks(raw_chunks: AsyncIterator[dict[str, Any]], body: CreateCompletionRequest,
                  fingerprint_: str, usage: Usage) -> AsyncIterator[TextCompletion]:
    n = body.n or 1
    frame: dict[str, Any] = {}
    async with aclosing(raw_chunks):  # type: ignore[type-var]
        async for raw in raw_chunks:
            frame = frame or {"id": raw["id"], "created": raw["created"], "model": body.model,
                              "system_fingerprint": fingerprint_}
            choices = raw.get("choices", [])
            if (counts := raw.get("usage")) is not None:
                # Each choice reports its own tokens; its prompt counts once per n choices.
                first_of_prompt = bool(choices) and choices[0]["index"] % n == 0
                usage.add(counts["prompt_tokens"] if first_of_prompt else 0,
                          counts["completion_tokens"], once_prompt=False)
            if choices:
                usage.streamed += sum(1 for choice in choices if choice.get("text"))
                yield TextCompletion(**frame, choices=[_choice(c) for c in choices])
    if frame and body.stream_options is not None and body.stream_options.include_usage:
        yield TextCompletion(**frame, choices=[], usage=usage.total())
