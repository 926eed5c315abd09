"""Chat completions: from a validated request to llama.cpp and back to the wire shapes.

Everything a request can be refused for is checked before generation starts,
so a refusal is always a JSON envelope and never a cut-off stream. Streams are
primed with their first chunk for the same reason: llama.cpp reports a prompt
that does not fit the context window as its first event.
"""

from __future__ import annotations

import json
import threading
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
from hearth.chat.protocol import (
    AllowedToolsChoice,
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceLogprobs,
    ChunkChoice,
    CreateChatCompletionRequest,
    CustomTool,
    CustomToolChoice,
    Delta,
    FunctionMessage,
    NamedFunction,
    NamedToolChoice,
    ResponseMessage,
    TextPart,
    TokenLogprob,
    UserMessage,
)
from hearth.engines import llama
from hearth.engines.registry import LoadedModel
from hearth.errors import InvalidRequest
from hearth.models.service import ModelService
from hearth.streams import prime

EngineRequest = dict[str, Any]
ENDPOINT = "/v1/chat/completions"
# Sampling fields that mean the same to llama.cpp as to the OpenAI reference.
_SAMPLING_FIELDS = ("temperature", "top_p", "n", "stop", "presence_penalty", "frequency_penalty",
                    "logit_bias", "logprobs", "top_logprobs", "seed", "parallel_tool_calls")


# -- checks and translation into an engine request ----------------------------------


def _refuse_unsupported(body: CreateChatCompletionRequest) -> None:
    if "audio" in (body.modalities or []) or body.audio is not None:
        param = "audio" if body.audio is not None else "modalities"
        raise InvalidRequest("Audio output is not supported by this server's chat models; "
                             "use /v1/audio/speech on the text instead.", param=param)
    if body.web_search_options is not None:
        raise InvalidRequest("Web search is not available on this server.",
                             param="web_search_options")
    if body.moderation is not None:
        raise InvalidRequest("Moderation inside chat completions is not supported; "
                             "call /v1/moderations on the input first.", param="moderation")
    if body.stream_options is not None and not body.stream:
        raise InvalidRequest("The 'stream_options' parameter is only allowed when 'stream' is "
                             "enabled.", param="stream_options")
    if body.top_logprobs is not None and not body.logprobs:
        raise InvalidRequest("'logprobs' must be true when 'top_logprobs' is set.",
                             param="top_logprobs")
    if body.functions is not None and body.tools is not None:
        raise InvalidRequest("Use either 'tools' or the deprecated 'functions', not both.",
                             param="functions")


def _message(index: int, message: Any) -> dict[str, Any]:
    """One message as llama.cpp takes it; media parts are refused with their position."""
    if isinstance(message, FunctionMessage):
        # The deprecated function role is a tool result keyed by the function's name.
        return {"role": "tool", "tool_call_id": _legacy_call_id(message.name),
                "content": message.content or ""}
    if isinstance(message, UserMessage) and isinstance(message.content, list):
        for part_index, part in enumerate(message.content):
            if not isinstance(part, TextPart):
                raise InvalidRequest(
                    f"This model reads text only; content part type '{part.type}' needs a model "
                    "with that input modality, and none is installed.",
                    param=f"messages[{index}].content[{part_index}]")
    if isinstance(message, AssistantMessage):
        return _assistant_message(message)
    return message.model_dump(exclude_none=True)


def _assistant_message(message: AssistantMessage) -> dict[str, Any]:
    content = message.content
    if isinstance(content, list):
        # A refusal the assistant gave earlier is part of the conversation like any text.
        content = "".join(getattr(part, "text", None) or getattr(part, "refusal", None) or ""
                          for part in content)
    out: dict[str, Any] = {"role": "assistant", "content": content or message.refusal or ""}
    calls = [call.model_dump() for call in message.tool_calls or []]
    if message.function_call is not None:
        calls.append({"id": _legacy_call_id(message.function_call.name), "type": "function",
                      "function": message.function_call.model_dump()})
    if calls:
        out["tool_calls"] = calls
    return out


def _legacy_call_id(name: str) -> str:
    return f"call_{name}"


def _tools(body: CreateChatCompletionRequest) -> tuple[list[dict[str, Any]], Any]:
    """The function tools and tool choice for llama.cpp, from either the current or legacy form."""
    if body.functions is not None:
        tools = [{"type": "function", "function": f.model_dump(exclude_none=True)}
                 for f in body.functions]
        if isinstance(body.function_call, NamedFunction):
            name = body.function_call.name
            return tools, {"type": "function", "function": {"name": name}}
        return tools, body.function_call
    tools = []
    for index, tool in enumerate(body.tools or []):
        if isinstance(tool, CustomTool):
            raise InvalidRequest("Custom (free-form) tools are not supported; "
                                 "declare a function tool with a JSON schema instead.",
                                 param=f"tools[{index}]")
        tools.append(tool.model_dump(exclude_none=True))
    return tools, _tool_choice(body.tool_choice, tools)


def _tool_choice(choice: Any, tools: list[dict[str, Any]]) -> Any:
    if isinstance(choice, CustomToolChoice):
        raise InvalidRequest("Custom tools are not supported.", param="tool_choice")
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in _names(tools):
            raise InvalidRequest(f"tool_choice names the function '{choice.function.name}', "
                                 "which is not among 'tools'.", param="tool_choice")
        return choice.model_dump()
    if isinstance(choice, AllowedToolsChoice):
        allowed = {(tool.get("function") or {}).get("name") for tool in choice.allowed_tools.tools}
        tools[:] = [tool for tool in tools if tool["function"]["name"] in allowed]
        if not tools:
            raise InvalidRequest("allowed_tools names none of the functions in 'tools'.",
                                 param="tool_choice")
        return choice.allowed_tools.mode
    if choice in ("required",) and not tools:
        raise InvalidRequest("tool_choice 'required' needs at least one tool.", param="tool_choice")
    return choice


def _names(tools: list[dict[str, Any]]) -> set[str]:
    return {tool["function"]["name"] for tool in tools}


def _response_format(body: CreateChatCompletionRequest) -> dict[str, Any] | None:
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_schema" and fmt.json_schema.schema_ is None:
        return {"type": "json_object"}
    return fmt.model_dump(by_alias=True, exclude_none=True)


def engine_request(body: CreateChatCompletionRequest, model: LoadedModel) -> EngineRequest:
    """Check everything that can be refused and build llama.cpp's request."""
    _refuse_unsupported(body)
    max_tokens_param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    check_limits(model.engine, body.max_completion_tokens or body.max_tokens, max_tokens_param,
                 body.logit_bias)
    check_choices(body.n, model.engine.n_parallel)
    request: EngineRequest = {
        "model": body.model,
        "messages": [_message(index, message) for index, message in enumerate(body.messages)],
    }
    request.update(body.model_dump(include=set(_SAMPLING_FIELDS), exclude_none=True))
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None:
        request["max_tokens"] = max_tokens
    tools, tool_choice = _tools(body)
    if tools:
        request["tools"] = tools
        if tool_choice is not None:
            request["tool_choice"] = tool_choice
    if (response_format := _response_format(body)) is not None:
        request["response_format"] = response_format
    return request


# -- responses --------------------------------------------------------------------


def _logprobs(raw: dict[str, Any] | None) -> ChoiceLogprobs | None:
    if not raw:
        return None
    content = [TokenLogprob.model_validate(entry) for entry in raw.get("content") or []]
    return ChoiceLogprobs(content=content, refusal=None)


def _choice(raw: dict[str, Any], legacy_functions: bool) -> ChatChoice:
    message = ResponseMessage.model_validate({**raw["message"], "refusal": None})
    finish_reason = raw["finish_reason"]
    if legacy_functions and message.tool_calls:
        message.function_call = message.tool_calls[0].function
        message.tool_calls = None
        finish_reason = "function_call"
    return ChatChoice(index=raw["index"], message=message, logprobs=_logprobs(raw.get("logprobs")),
                      finish_reason=finish_reason)


def _generated_text(choice: dict[str, Any]) -> str:
    message = choice["message"]
    calls = message.get("tool_calls") or []
    return (message.get("content") or "") + "".join(json.dumps(call["function"]) for call in calls)


def _chat(engine: llama.LlamaEngine, request: EngineRequest,
          stop: threading.Event | None = None) -> dict[str, Any]:
    """Runs on the model's thread: the completion, with usage counted over every choice."""
    response = engine.chat(request, stop=stop)
    if len(response["choices"]) > 1:
        # llama.cpp reports one choice's tokens; count each choice with the real tokenizer.
        response["usage"]["completion_tokens"] = sum(
            _choice_tokens(engine, choice, stop_words=bool(request.get("stop")))
            for choice in response["choices"])
    return response


def _choice_tokens(engine: llama.LlamaEngine, choice: dict[str, Any], *, stop_words: bool) -> int:
    """The tokens a choice generated, counted as llama.cpp counts them when it streams.

    Its text, plus the end-of-generation token when the model stopped by
    itself: that token is generated (and counted) but never part of the text.
    With stop sequences a "stop" may instead be a matched word, whose tokens
    are cut from the text; that case stays an estimate.
    """
    tokens = len(engine.tokenize(_generated_text(choice)))
    return tokens + 1 if choice.get("finish_reason") == "stop" and not stop_words else tokens


# -- streams ----------------------------------------------------------------------


class _ChunkShaper:
    """Turns llama.cpp's chunks into the reference's, and tallies usage across choices."""

    def __init__(self, body: CreateChatCompletionRequest, fingerprint_: str) -> None:
        self.body = body
        self.fingerprint = fingerprint_
        self.usage = Usage()
        self.frame: dict[str, Any] = {}

    def shape(self, raw: dict[str, Any]) -> ChatCompletionChunk | None:
        """The chunk to send, or None for llama.cpp's per-choice usage events (tallied instead)."""
        if not self.frame:
            self.frame = {"id": raw["id"], "created": raw["created"], "model": self.body.model,
                          "system_fingerprint": self.fingerprint}
            if self.body.service_tier:
                self.frame["service_tier"] = "default"
        if (usage := raw.get("usage")) is not None:
            self.usage.add(usage["prompt_tokens"], usage["completion_tokens"], once_prompt=True)
        choices = [self._choice(choice) for choice in raw.get("choices", [])]
        self.usage.streamed += sum(1 for choice in choices
                                   if choice.delta.content or choice.delta.tool_calls
                                   or choice.delta.function_call)
        return ChatCompletionChunk(**self.frame, choices=choices) if choices else None

    def _choice(self, raw: dict[str, Any]) -> ChunkChoice:
        delta = Delta.model_validate(raw.get("delta") or {})
        finish_reason = raw.get("finish_reason")
        if self.body.functions is not None:
            if delta.tool_calls:
                delta.function_call = delta.tool_calls[0].function
                delta.tool_calls = None
            if finish_reason == "tool_calls":
                finish_reason = "function_call"
        return ChunkChoice(index=raw["index"], delta=delta, logprobs=_logprobs(raw.get("logprobs")),
                           finish_reason=finish_reason)

    def usage_chunk(self) -> ChatCompletionChunk:
        return ChatCompletionChunk(**self.frame, choices=[], usage=self.usage.total())


# -- the service ------------------------------------------------------------------


class ChatService:
    """Chat completions for any caller: an HTTP request, a batch line, an assistant run."""

    def __init__(self, models: ModelService, meter: Meter) -> None:
        self.models = models
        self.meter = meter

    async def create(self, caller: Caller, body: CreateChatCompletionRequest, *,
                     background: bool = False, endpoint: str = ENDPOINT,
                     batch: bool | None = None) -> ChatCompletion:
        """``endpoint`` and ``batch`` say how usage is metered (other APIs built on chat name
        their own); ``batch`` defaults to ``background``."""
        model = await self.models.load(body.model, "chat", caller)
        request = engine_request(body, model)
        with await self.models.admit(model, background=background) as admission, \
                engine_errors(model.engine, "messages"):
            raw = await generate_whole(model, _chat, model.engine, request, admission=admission)
        usage = Usage.of(raw["usage"]["prompt_tokens"], raw["usage"]["completion_tokens"])
        self.meter.record(usage_event(caller, endpoint, body.model, usage,
                                      batch=background if batch is None else batch))
        return ChatCompletion(
            id=raw["id"], created=raw["created"], model=body.model,
            system_fingerprint=fingerprint(model.spec),
            choices=[_choice(choice, body.functions is not None) for choice in raw["choices"]],
            usage=usage, service_tier="default" if body.service_tier else None,
        )

    async def stream(self, caller: Caller, body: CreateChatCompletionRequest, *,
                     endpoint: str = ENDPOINT) -> AsyncIterator[ChatCompletionChunk]:
        """Start generating and return the chunks; refusals raise before the first one."""
        model = await self.models.load(body.model, "chat", caller)
        request = engine_request(body, model)
        admission = await self.models.admit(model)
        raw_chunks = await start_stream(model, request, "messages", model.engine.chat_stream,
                                        admission)
        shaper = _ChunkShaper(body, fingerprint(model.spec))
        # Primed again, so that closing what is returned meters the stream even unread.
        return await prime(metered(
            _chunks(raw_chunks, shaper, body), shaper.usage,
            lambda usage: self.meter.record(usage_event(caller, endpoint, body.model, usage))))


async def _chunks(raw_chunks: AsyncIterator[dict[str, Any]], shaper: _ChunkShaper,
                  body: CreateChatCompletionRequest) -> AsyncIterator[ChatCompletionChunk]:
    async with aclosing(raw_chunks):  # type: ignore[type-var]
        async for raw in raw_chunks:
            if (chunk := shaper.shape(raw)) is not None:
                yield chunk
    if body.stream_options is not None and body.stream_options.include_usage:
        yield shaper.usage_chunk()
