"""Legacy text completions: prompts in their four forms, echo, suffix, best_of, streams."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from hearth.api.errors import InvalidRequest
from hearth.api.sse import DONE, sse_event
from hearth.engines import llama
from hearth.engines.registry import LoadedModel
from hearth.protocol.completions import (
    CompletionChoice,
    CreateCompletionRequest,
    LegacyLogprobs,
    TextCompletion,
)
from hearth.services.generation import (
    Usage,
    check_choices,
    engine_errors,
    fingerprint,
    start_stream,
)

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
    for key in body.logit_bias or {}:
        if not key.isdigit():
            raise InvalidRequest(f"Invalid key in 'logit_bias': {key!r} is not a token id.",
                                 param="logit_bias")
    check_choices(body.n, model.engine.n_parallel)
    check_choices(body.best_of, model.engine.n_parallel, "best_of")
    request = body.model_dump(include=set(_PASSED_FIELDS), exclude_none=True)
    request["model"] = body.model
    request["prompt"] = body.prompt if body.prompt is not None else "<|endoftext|>"
    return request


def _prompt_tokens(engine: llama.LlamaEngine, prompts: list[str] | list[list[int]]) -> list[int]:
    return [len(p) if isinstance(p, list) else len(engine.tokenize(p)) for p in prompts]


def _complete(engine: llama.LlamaEngine, request: EngineRequest, body: CreateCompletionRequest
              ) -> tuple[dict[str, Any], Usage]:
    """Runs on the model's thread: the completion, with usage over every prompt and choice."""
    if request.get("max_tokens") == 0:
        return _nothing_to_generate(engine, request, body)
    response = engine.complete(request)
    usage = Usage(completion_tokens=response["usage"]["completion_tokens"])
    prompt_tokens = _prompt_tokens(engine, body.prompts)
    usage.prompt_tokens = sum(prompt_tokens)
    if len(response["choices"]) > 1:
        # llama.cpp reports one choice's tokens; count each choice with the real tokenizer.
        n = body.n or 1
        usage.completion_tokens = sum(
            len(engine.tokenize(choice["text"])) - (prompt_tokens[choice["index"] // n]
                                                    if body.echo else 0)
            for choice in response["choices"])
    return response, usage


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


async def create_completion(model: LoadedModel, body: CreateCompletionRequest) -> TextCompletion:
    request = engine_request(body, model)
    with engine_errors(model.engine, "prompt"):
        raw, usage = await model.runner.run(_complete, model.engine, request, body)
    return TextCompletion(
        id=raw["id"], created=raw["created"], model=body.model,
        system_fingerprint=fingerprint(model.spec),
        choices=[_choice(choice) for choice in raw["choices"]], usage=usage.total())


async def open_completion_stream(model: LoadedModel, body: CreateCompletionRequest
                                 ) -> AsyncIterator[bytes]:
    """Start generating and return the SSE byte stream; refusals raise before it starts."""
    raw_chunks = await start_stream(model, engine_request(body, model), "prompt",
                                    model.engine.complete_stream)
    return _events(raw_chunks, body, fingerprint(model.spec))


async def _events(raw_chunks: AsyncIterator[dict[str, Any]], body: CreateCompletionRequest,
                  fingerprint_: str) -> AsyncIterator[bytes]:
    n = body.n or 1
    usage = Usage()
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
                yield sse_event(TextCompletion(**frame, choices=[_choice(c) for c in choices]))
    if frame and body.stream_options is not None and body.stream_options.include_usage:
        yield sse_event(TextCompletion(**frame, choices=[], usage=usage.total()))
    yield DONE
