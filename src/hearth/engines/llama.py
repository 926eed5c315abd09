"""Chat and text completions on a GGUF model through llama.cpp's own server code.

xllamacpp embeds llama.cpp's C++ server in-process. Its OpenAI handlers already
apply chat templates, parse tool calls, turn JSON schemas into grammars, sample
with seeds, and schedule concurrent requests over parallel slots with continuous
batching, so this module only fills the gaps between those handlers and the
OpenAI reference and turns llama.cpp's error bodies into exceptions.

Every public method blocks; callers run them on worker threads.
"""

from __future__ import annotations

import copy
import json
import queue
import re
import secrets
import threading
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import xllamacpp

from hearth.engines import tool_calls

__all__ = [
    "ContextLengthExceeded",
    "EngineFailure",
    "InvalidRequest",
    "LlamaEngine",
    "LlamaError",
    "Stopped",
]

Request = dict[str, Any]
Chunk = dict[str, Any]

# Content part types that need a multimodal projector this engine does not load.
_MEDIA_PARTS = frozenset({"image_url", "input_audio", "file"})
# Fill-in-the-middle control tokens used by Qwen2.5-Coder, StarCoder and SmolLM.
_FIM_TOKENS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
_FIELD_IN_MESSAGE = re.compile(r"Field '([^']+)'")
_TOKENS_PREDICTED = re.compile(r"^llamacpp:tokens_predicted_total (\d+)", re.MULTILINE)
_END_OF_STREAM = object()


class LlamaError(Exception):
    """A request llama.cpp refused; `param` names the offending field when known."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(LlamaError):
    """The request is malformed or asks for something this model cannot do."""


class ContextLengthExceeded(InvalidRequest):
    """The prompt plus requested output does not fit the context window."""


class EngineFailure(LlamaError):
    """llama.cpp failed for a reason that is not the client's fault."""


class Stopped(LlamaError):
    """Generation was stopped before the answer was whole (its caller went away)."""


class LlamaEngine:
    """One loaded GGUF model serving up to `n_parallel` requests at once."""

    def __init__(self, model_path: Path, *, n_ctx: int, n_parallel: int, threads: int,
                 prompt_cache_mib: int = 256, gpu_layers: int = 0,
                 adapters: Sequence[Path] = ()) -> None:
        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        # Fine-tuned models of this base: LoRA GGUFs llama.cpp applies to the (quantized) base
        # weights, loaded switched off; each request names the one it wants (with_adapter).
        self.adapters = tuple(adapters)
        params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(path), 0.0) for path in self.adapters]
        params.lora_init_without_apply = True
        self._lora = _lora_scales(self.adapters, None)
        # llama.cpp splits n_ctx across slots; Hearth's n_ctx is the per-request window.
        params.n_ctx = n_ctx * n_parallel
        params.n_parallel = n_parallel
        # Layers offloaded to a GPU (HEARTH_DEVICE); 0 keeps the model on the CPU.
        params.n_gpu_layers = gpu_layers
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        # llama.cpp's threads spin while they wait for work by default; on a
        # small machine that spinning takes the cores the HTTP side needs to
        # hand each token on (measured: 0.93 -> 0.95 of in-process speed).
        params.cpuparams.poll = 0
        # llama.cpp's own counters (tokens generated, ...), read by tokens_generated().
        params.endpoint_metrics = True
        # llama.cpp keeps finished prompts' state in host memory to reuse their
        # prefixes, up to 8 GiB by default: every distinct chat grew the process
        # by ~165 KB with no plateau. Bounded, it evicts the oldest.
        params.cache_ram_mib = prompt_cache_mib
        params.verbosity = 1
        # The embedded server also listens on loopback; it is only used for
        # tokenizing, so lock it behind a key nobody else knows.
        self._key = secrets.token_urlsafe(24)
        params.api_keys = [self._key]
        params.port = 0
        params.n_threads_http = 1
        self._server = xllamacpp.Server(params)
        self._address = self._server.listening_address
        self.context_length = n_ctx
        self.n_parallel = n_parallel
        self.vocab_size: int = self._local_get("/v1/models")["data"][0]["meta"]["n_vocab"]
        self._fim = self._has_fim_tokens()

    def with_adapter(self, adapter: Path) -> LlamaEngine:
        """This engine answering as the fine-tuned model ``adapter`` (one of ``adapters``): the
        same llama.cpp server, its slots and queue shared with the base and its other adapters."""
        if adapter not in self.adapters:
            raise ValueError(f"adapter {adapter} is not loaded")
        adapted = copy.copy(self)
        adapted._lora = _lora_scales(self.adapters, adapter)
        return adapted

    # -- chat ----------------------------------------------------------------

    def chat(self, request: Request, *, stop: threading.Event | None = None) -> dict[str, Any]:
        """Create a chat completion (the body of POST /v1/chat/completions, stream false).

        Setting ``stop`` (the caller went away) ends generation at the next token
        with :class:`Stopped`.
        """
        body, forced_tools = self._chat_body(request, stream=False)
        response = self._whole(self._server.handle_chat_completions, body, stop)
        if forced_tools:
            _as_tool_calls(response["choices"], forced_tools)
        elif _offers_tools(body):
            self._recognise_calls(body, response)
        return _finish(response, request)

    def chat_stream(self, request: Request) -> Iterator[Chunk]:
        """Yield `chat.completion.chunk` objects; closing the iterator stops generation."""
        body, forced_tools = self._chat_body(request, stream=True)
        if forced_tools:
            # The call is short and grammar-bound; its arguments only mean
            # something once complete, so it is generated whole and then chunked.
            yield from _completion_as_chunks(self.chat({**request, "stream": False}), request)
            return
        if _offers_tools(body):
            yield from self._stream_recognising_calls(request, body)
            return
        for chunk in self._stream(self._server.handle_chat_completions, body):
            yield _finish(chunk, request)

    def _recognise_calls(self, body: Request, response: dict[str, Any]) -> None:
        """Turn calls the model wrote as text into tool calls; where it only repeated a
        call already answered, ask again for an answer in words."""
        repeated = []
        for choice in response["choices"]:
            message = choice["message"]
            text = message.get("content") or ""
            calls = message.get("tool_calls") or tool_calls.parse_calls(text, body["tools"])
            if tool_calls.repeats_answered_call(text, calls, body["messages"]):
                repeated.append(choice)
                continue
            if not calls:
                continue
            if body.get("parallel_tool_calls") is False:
                calls = calls[:1]
            message.update(content=None, tool_calls=calls)
            choice["finish_reason"] = "tool_calls"
        if repeated:
            answer = self._call(self._server.handle_chat_completions, _prose_body(body))
            for choice in repeated:
                choice.update(answer["choices"][choice["index"]])
            usage, extra = response.get("usage") or {}, answer.get("usage") or {}
            for key in ("completion_tokens", "total_tokens"):
                if key in usage:
                    usage[key] += extra.get("completion_tokens", 0)

    def _stream_recognising_calls(self, request: Request, body: Request) -> Iterator[Chunk]:
        """Stream a reply that may be a call written as text.

        A reply is passed on as it comes once its start rules out a call
        (:func:`tool_calls.could_be_call`); until then it is held, and when it
        ends it goes out as the tool calls it was, or as held.
        """
        if (body.get("n") or 1) > 1:
            yield from _completion_as_chunks(self.chat({**request, "stream": False}), request)
            return
        held: list[Chunk] = []
        text = ""
        stream = self._stream(self._server.handle_chat_completions, body)
        for chunk in stream:
            held.append(chunk)
            deltas = [choice.get("delta") or {} for choice in chunk.get("choices", [])]
            text += "".join(delta.get("content") or "" for delta in deltas)
            if any(delta.get("tool_calls") for delta in deltas) or not tool_calls.could_be_call(text):
                yield from (_finish(held_chunk, request) for held_chunk in held)
                yield from (_finish(rest, request) for rest in stream)
                return
        calls = tool_calls.parse_calls(text, body["tools"]) if text.strip() else None
        if tool_calls.repeats_answered_call(text, calls, body["messages"]):
            for chunk in self._stream(self._server.handle_chat_completions, _prose_body(body)):
                yield _finish(chunk, request)
        elif calls:
            if body.get("parallel_tool_calls") is False:
                calls = calls[:1]
            yield from _completion_as_chunks(_held_as_calls(held, calls), request)
        else:
            yield from (_finish(chunk, request) for chunk in held)

    def _chat_body(self, request: Request, *, stream: bool) -> tuple[Request, list[str]]:
        """llama.cpp's request, and the functions one of which must be called (if forced)."""
        body = _without(request, "model", "stream", "store", "metadata", "user", "service_tier")
        _reject_media(body.get("messages", []))
        if "max_completion_tokens" in body:
            body["max_tokens"] = body.pop("max_completion_tokens")
        body["stream"] = stream
        body.update(self._lora)
        forced_tools = _constrain_to_tool_call(body) if _forces_tool_call(body) else []
        _make_refs_resolvable(body)
        return body, forced_tools

    # -- legacy completions ---------------------------------------------------

    def complete(self, request: Request, *, stop: threading.Event | None = None) -> dict[str, Any]:
        """Create a text completion (the body of POST /v1/completions, stream false);
        ``stop`` as for :meth:`chat`."""
        body = self._completion_body(request, stream=False)
        n = request.get("n") or 1
        best_of = request.get("best_of") or n
        wanted_logprobs = request.get("logprobs")
        if best_of > n:
            body["n"] = best_of
            body["logprobs"] = max(wanted_logprobs or 0, 1)
        response = self._whole(self._server.handle_completions, body, stop)
        if best_of > n:
            response["choices"] = _best_choices(response["choices"], best_of, n)
        for choice in response["choices"]:
            echo = self._echo(request, choice["index"] // n)
            logprobs = choice.get("logprobs") if wanted_logprobs is not None else None
            choice["logprobs"] = _legacy_logprobs(logprobs, start=len(echo))
            choice["text"] = echo + choice["text"]
        return _finish(response, request)

    def complete_stream(self, request: Request) -> Iterator[Chunk]:
        """Yield `text_completion` chunks; closing the iterator stops generation."""
        if (request.get("best_of") or 1) > (request.get("n") or 1):
            raise InvalidRequest("best_of cannot be used with stream", "best_of")
        body = self._completion_body(request, stream=True)
        n = request.get("n") or 1
        # Where each choice's next text starts, so logprob offsets count from its first chunk.
        offsets: dict[int, int] = {}
        for chunk in self._stream(self._server.handle_completions, body):
            for choice in chunk.get("choices", []):
                index = choice["index"]
                echo = "" if index in offsets else self._echo(request, index // n)
                start = offsets.get(index, len(echo))
                if request.get("logprobs") is not None:
                    choice["logprobs"] = _legacy_logprobs(choice.get("logprobs"), start=start)
                offsets[index] = start + len(choice["text"])
                choice["text"] = echo + choice["text"]
            yield _finish(chunk, request)

    def _completion_body(self, request: Request, *, stream: bool) -> Request:
        body = _without(request, "model", "stream", "echo", "suffix", "best_of", "user")
        body["stream"] = stream
        body.update(self._lora)
        suffix = request.get("suffix")
        if suffix:
            body["prompt"] = self._fill_in_middle(request.get("prompt", ""), suffix)
        return body

    def _fill_in_middle(self, prompt: Any, suffix: str) -> str:
        if not self._fim:
            raise InvalidRequest("this model does not support suffix (fill-in-the-middle)", "suffix")
        if not isinstance(prompt, str):
            raise InvalidRequest("suffix needs prompt to be a single string", "prompt")
        prefix, middle_suffix, middle = _FIM_TOKENS
        return f"{prefix}{prompt}{middle_suffix}{suffix}{middle}"

    def _echo(self, request: Request, prompt_index: int) -> str:
        """The prompt text to put before a choice when the client asked for echo."""
        if not request.get("echo"):
            return ""
        prompt = request.get("prompt", "")
        if isinstance(prompt, str):
            return prompt
        if prompt and isinstance(prompt[0], int):
            return self.detokenize(prompt)
        item = prompt[prompt_index]
        return item if isinstance(item, str) else self.detokenize(item)

    # -- tokens and status -----------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` by the model's own tokenizer (special tokens parsed)."""
        return self._local_post("/tokenize", {"content": text, "parse_special": True})["tokens"]

    def detokenize(self, tokens: list[int]) -> str:
        return self._local_post("/detokenize", {"tokens": tokens})["content"]

    def tokens_generated(self) -> int:
        """Tokens generated since the model loaded, by llama.cpp's own count."""
        metrics = self._server.handle_metrics()
        found = _TOKENS_PREDICTED.search(metrics) if isinstance(metrics, str) else None
        if found is None:
            raise EngineFailure(f"llama.cpp reported no token count: {metrics!r:.200}")
        return int(found.group(1))

    def active_requests(self) -> int:
        """How many slots are generating right now."""
        request = urllib.request.Request(f"{self._address}/slots", headers=self._auth())
        with urllib.request.urlopen(request) as response:
            return sum(slot["is_processing"] for slot in json.load(response))

    def _local_get(self, path: str) -> dict[str, Any]:
        request = urllib.request.Request(f"{self._address}{path}", headers=self._auth())
        with urllib.request.urlopen(request) as response:
            return json.load(response)

    def _local_post(self, path: str, body: Request) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self._address}{path}",
            data=json.dumps(body).encode(),
            headers={**self._auth(), "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            return json.load(response)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"}

    def _has_fim_tokens(self) -> bool:
        return all(len(self.tokenize(token)) == 1 for token in _FIM_TOKENS)

    # -- calling llama.cpp ------------------------------------------------------

    @staticmethod
    def _call(handler: Callable[..., Any], body: Request) -> dict[str, Any]:
        try:
            response = handler(body)
        except (RuntimeError, ValueError) as exc:
            raise InvalidRequest(*_client_message(str(exc))) from exc
        _raise_for_error(response)
        return response

    def _whole(self, handler: Callable[..., Any], body: Request,
               stop: threading.Event | None) -> dict[str, Any]:
        """A whole answer, which ``stop`` can end early.

        llama.cpp cannot cancel a request it answers whole, so one that may be
        stopped is generated as a stream and put together here. Several
        answers (``n``, or several prompts) are generated whole: their
        per-choice streams carry usage that only llama.cpp's whole answer adds up.
        """
        if stop is None or not _one_answer(body):
            return self._call(handler, body)
        streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
        chunks = list(self._stream(handler, streamed, stop))
        if stop.is_set():
            raise Stopped("the caller stopped waiting for the answer")
        return _assembled(chunks)

    @staticmethod
    def _stream(handler: Callable[..., Any], body: Request,
                stop: threading.Event | None = None) -> Iterator[Chunk]:
        """Run a streaming handler on its own thread and hand its chunks over.

        llama.cpp pushes chunks into a callback; returning True from it cancels the
        task and frees the slot, which is how a consumer that stops iterating
        (a disconnected client) stops generation.
        """
        chunks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        cancelled = threading.Event()

        def on_chunk(chunk: Chunk | None) -> bool:
            if cancelled.is_set() or (stop is not None and stop.is_set()):
                return True
            # A multi-prompt completion stream starts with an empty (None) event.
            if chunk is not None:
                chunks.put(chunk)
            return False

        def produce() -> None:
            try:
                handler(body, on_chunk)
            except (RuntimeError, ValueError) as exc:
                chunks.put(InvalidRequest(*_client_message(str(exc))))
            finally:
                chunks.put(_END_OF_STREAM)

        threading.Thread(target=produce, name="llama-stream", daemon=True).start()
        try:
            while (item := chunks.get()) is not _END_OF_STREAM:
                if isinstance(item, LlamaError):
                    raise item
                _raise_for_error(item)
                yield item
        finally:
            cancelled.set()

    def close(self) -> None:
        """Stop llama.cpp's loop and free the model."""
        del self._server


# -- request shaping ----------------------------------------------------------


def _lora_scales(adapters: Sequence[Path], chosen: Path | None) -> Request:
    """The ``lora`` field of a request to a server with ``adapters``: the chosen one on, every
    other off. Every request names them all: a base request that left the list out, sent after
    an adapted one, came back garbled (llama.cpp kept part of the previous adapter state)."""
    if not adapters:
        return {}
    return {"lora": [{"id": index, "scale": 1.0 if path == chosen else 0.0}
                     for index, path in enumerate(adapters)]}


def _without(request: Request, *keys: str) -> Request:
    body = {key: value for key, value in request.items() if key not in keys and value is not None}
    if "seed" in body:
        # A prompt prefix reused from the KV cache was computed in a different batch
        # shape, which shifts logits slightly; recomputing keeps seeded runs repeatable.
        body.setdefault("cache_prompt", False)
    return body


def _reject_media(messages: list[dict[str, Any]]) -> None:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and any(part.get("type") in _MEDIA_PARTS for part in content):
            raise InvalidRequest("this model accepts text content parts only", "messages")


def _offers_tools(body: Request) -> bool:
    """Whether the model may answer with a tool call or in words (``tool_choice`` auto)."""
    return bool(body.get("tools")) and body.get("tool_choice", "auto") == "auto"


def _prose_body(body: Request) -> Request:
    """The same request, asking for an answer in words: no tools, no JSON."""
    prose = _without(body, "tools", "tool_choice", "parallel_tool_calls")
    if not prose.get("response_format"):
        prose["grammar"] = tool_calls.PROSE_GRAMMAR
    return prose


def _held_as_calls(held: list[Chunk], calls: list[dict[str, Any]]) -> dict[str, Any]:
    """A held stream, which turned out to be tool calls, as one whole completion."""
    first = held[0]
    usage = next((chunk["usage"] for chunk in reversed(held) if chunk.get("usage")), None)
    return {**{key: first.get(key) for key in ("id", "created", "model", "system_fingerprint")},
            "object": "chat.completion", "usage": usage,
            "choices": [{"index": 0, "finish_reason": "tool_calls",
                         "message": {"role": "assistant", "content": None, "tool_calls": calls}}]}


def _forces_tool_call(body: Request) -> bool:
    choice = body.get("tool_choice")
    return bool(body.get("tools")) and (choice == "required" or isinstance(choice, dict))


def _constrain_to_tool_call(body: Request) -> list[str]:
    """Make a required or named tool call certain; returns the names it may call.

    llama.cpp's tool grammar lets text come before the first call, and small
    models often answer in prose. The tools stay in the prompt (the template
    shows them to the model) but the output is bound to one call's JSON.
    """
    tools = body["tools"]
    choice = body.pop("tool_choice")
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        tools = [tool for tool in tools if tool["function"]["name"] == name]
        if not tools:
            raise InvalidRequest(f"tool_choice names an unknown function: {name}", "tool_choice")
    if len(tools) == 1:
        schema = _call_schema(tools[0]["function"], "#/properties/arguments")
    else:
        schema = {"anyOf": [_call_schema(tool["function"], f"#/anyOf/{i}/properties/arguments")
                            for i, tool in enumerate(tools)]}
    body["tool_choice"] = "none"
    body.pop("parallel_tool_calls", None)
    body["response_format"] = {"type": "json_schema",
                               "json_schema": {"name": "tool_call", "schema": schema}}
    return [tool["function"]["name"] for tool in tools]


def _call_schema(function: dict[str, Any], arguments_at: str) -> dict[str, Any]:
    """One call's JSON: the function's name and its parameters, which now live at
    ``arguments_at`` inside the new schema, so their own references are moved there."""
    return {
        "type": "object",
        "properties": {
            "name": {"const": function["name"]},
            "arguments": _relocated(function.get("parameters") or {"type": "object"}, arguments_at),
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _relocated(schema: Any, base: str) -> Any:
    """``schema`` with every local ``$ref`` rewritten for its new place ``base``
    (``#`` -> ``base``, ``#/$defs/X`` -> ``base/$defs/X``)."""
    if isinstance(schema, list):
        return [_relocated(item, base) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _relocated(value, base) for key, value in schema.items()}
    ref = schema.get("$ref")
    if isinstance(ref, str) and (ref == "#" or ref.startswith("#/")):
        out["$ref"] = base + ref[1:]
    return out


def _refers_to_root(schema: Any) -> bool:
    if isinstance(schema, list):
        return any(_refers_to_root(item) for item in schema)
    if not isinstance(schema, dict):
        return False
    return schema.get("$ref") == "#" or any(_refers_to_root(value) for value in schema.values())


def _make_refs_resolvable(body: Request) -> None:
    """llama.cpp resolves ``#/...`` references but not ``#`` itself, which a recursive
    schema (a tree whose children are trees) uses: such a schema moves under ``$defs``
    and its root becomes a reference to it."""
    fmt = body.get("response_format") or {}
    holder = fmt.get("json_schema") if fmt.get("type") == "json_schema" else None
    if not isinstance(holder, dict):
        return
    schema = holder.get("schema")
    if isinstance(schema, dict) and _refers_to_root(schema):
        holder["schema"] = {"$defs": {"root": _relocated(schema, "#/$defs/root")},
                            "$ref": "#/$defs/root"}


# -- response shaping ---------------------------------------------------------


def _raise_for_error(response: dict[str, Any]) -> None:
    error = response.get("error")
    if error is None:
        return
    message = error.get("message", "llama.cpp error")
    if error.get("type") == "exceed_context_size_error":
        raise ContextLengthExceeded(message, "messages")
    if error.get("code") == 400 or error.get("type") == "invalid_request_error":
        raise InvalidRequest(*_client_message(message))
    raise EngineFailure(message)


# llama.cpp's own words for a client's mistake, and how the API says each; its
# messages otherwise quote library internals (nlohmann::json's error codes, ...).
_CLIENT_MESSAGES = (
    ("Failed to parse tool call arguments as JSON",
     "The `arguments` of a tool call in the messages is not valid JSON.", "messages"),
    ("Unable to generate parser for this template",
     "The tools or response format cannot be expressed for this model: {detail}", None),
    ("failed to parse grammar",
     "The JSON schema could not be compiled into a grammar for this model.", "response_format"),
    ("json.exception", "A field has a value of the wrong type{field}.", None),
)
# The part of llama.cpp's schema refusal that names the offending place in the schema.
_DETAIL = re.compile(r"(JSON schema error at [^\n]*)")


def _client_message(message: str) -> tuple[str, str | None]:
    """The message and the field for a refusal llama.cpp worded."""
    found = _FIELD_IN_MESSAGE.search(message)
    field = found.group(1) if found else None
    for marker, wording, param in _CLIENT_MESSAGES:
        if marker in message:
            detail = _DETAIL.search(message)
            return wording.format(detail=detail.group(1) if detail else "it is not supported.",
                                  field=f": '{field}'" if field else ""), param or field
    return message, field


def _finish(response: dict[str, Any], request: Request) -> dict[str, Any]:
    """Drop llama.cpp's extra timing data and name the model the client asked for."""
    response.pop("timings", None)
    if response.get("object") == "text_completion":
        # llama.cpp reuses its chat id prefix; the reference uses cmpl- for these.
        response["id"] = "cmpl-" + response["id"].removeprefix("chatcmpl-")
    if "model" in request:
        response["model"] = request["model"]
    return response


def _one_answer(body: Request) -> bool:
    """Whether a request asks for one answer: one choice, to messages or to one prompt."""
    prompt = body.get("prompt")
    one_prompt = prompt is None or isinstance(prompt, str) or (
        isinstance(prompt, list) and (len(prompt) == 1 or all(isinstance(item, int) for item in prompt)))
    return (body.get("n") or 1) == 1 and one_prompt


def _assembled(chunks: list[Chunk]) -> dict[str, Any]:
    """A streamed answer (chat or text completion, one choice) as the whole answer it was."""
    first = chunks[0]
    is_chat = first.get("object") == "chat.completion.chunk"
    text, finish_reason = "", None
    logprobs: list[dict[str, Any]] = []
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for part in chunk.get("choices", []):
            delta = part.get("delta") or {}
            text += (delta.get("content") or "") if is_chat else (part.get("text") or "")
            logprobs += (part.get("logprobs") or {}).get("content") or []
            finish_reason = part.get("finish_reason") or finish_reason
            for call in delta.get("tool_calls") or []:
                whole = calls.setdefault(call.get("index", 0), {"id": call.get("id"), "type": "function",
                                                                "function": {"name": "", "arguments": ""}})
                whole["id"] = call.get("id") or whole["id"]
                function = call.get("function") or {}
                whole["function"]["name"] += function.get("name") or ""
                whole["function"]["arguments"] += function.get("arguments") or ""
    usage = next((chunk["usage"] for chunk in reversed(chunks) if chunk.get("usage")), None)
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason,
                              "logprobs": {"content": logprobs} if logprobs else None}
    if is_chat:
        choice["message"] = {"role": "assistant", "content": text or None,
                             **({"tool_calls": list(calls.values())} if calls else {})}
    else:
        choice["text"] = text
    return {**{key: first.get(key) for key in ("id", "created", "model", "system_fingerprint")},
            "object": "chat.completion" if is_chat else "text_completion",
            "choices": [choice], "usage": usage}


def _as_tool_calls(choices: list[dict[str, Any]], names: list[str]) -> None:
    """A forced call's JSON (``{"name", "arguments"}``) as the tool call it is."""
    for choice in choices:
        message = choice["message"]
        if choice["finish_reason"] == "length":
            # Cut off by max_tokens: a truncated call, as OpenAI returns one.
            name, arguments = _partial_call(message["content"] or "", names)
        else:
            call = json.loads(message["content"])
            name, arguments = call["name"], json.dumps(call["arguments"])
            choice["finish_reason"] = "tool_calls"
        message["content"] = None
        message["tool_calls"] = [{"id": f"call_{secrets.token_hex(12)}", "type": "function",
                                  "function": {"name": name, "arguments": arguments}}]


_CALLED_NAME = re.compile(r'^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_ARGUMENTS_START = re.compile(r'"arguments"\s*:\s*')


def _partial_call(text: str, names: list[str]) -> tuple[str, str]:
    """The function name and the arguments generated so far, from a cut-off call's JSON."""
    named = _CALLED_NAME.match(text)
    name = named.group(1) if named else names[0] if len(names) == 1 else ""
    start = _ARGUMENTS_START.search(text)
    return name, text[start.end():] if start else ""


def _completion_as_chunks(completion: dict[str, Any], request: Request) -> Iterator[Chunk]:
    frame = {key: completion[key] for key in ("id", "created", "model", "system_fingerprint")}
    frame["object"] = "chat.completion.chunk"
    for choice in completion["choices"]:
        message = choice["message"]
        calls = [{"index": i, **call} for i, call in enumerate(message.get("tool_calls") or [])]
        delta = {"role": "assistant", "content": message.get("content"), **({"tool_calls": calls} if calls else {})}
        yield {**frame, "choices": [{"index": choice["index"], "delta": delta, "finish_reason": None}]}
        yield {**frame, "choices": [{"index": choice["index"], "delta": {}, "finish_reason": choice["finish_reason"]}]}
    if (request.get("stream_options") or {}).get("include_usage"):
        yield {**frame, "choices": [], "usage": completion["usage"]}


def _legacy_logprobs(logprobs: dict[str, Any] | None, *, start: int = 0) -> dict[str, Any] | None:
    """Turn llama.cpp's chat-style token list into the /v1/completions shape.

    `start` is where the tokens begin in the returned text (after an echoed prompt).
    """
    if not logprobs:
        return None
    entries = logprobs.get("content") or []
    offsets, position = [], start
    for entry in entries:
        offsets.append(position)
        position += len(entry["token"])
    return {
        "tokens": [entry["token"] for entry in entries],
        "token_logprobs": [entry["logprob"] for entry in entries],
        "top_logprobs": [{top["token"]: top["logprob"] for top in entry.get("top_logprobs", [])} for entry in entries],
        "text_offset": offsets,
    }


def _best_choices(choices: list[dict[str, Any]], best_of: int, n: int) -> list[dict[str, Any]]:
    """OpenAI's best_of: per prompt, keep the n candidates with the best mean token log probability."""

    def mean_logprob(choice: dict[str, Any]) -> float:
        entries = (choice.get("logprobs") or {}).get("content") or []
        return sum(entry["logprob"] for entry in entries) / len(entries) if entries else float("-inf")

    ordered = sorted(choices, key=lambda choice: choice["index"])
    kept = []
    for start in range(0, len(ordered), best_of):
        kept += sorted(ordered[start : start + best_of], key=mean_logprob, reverse=True)[:n]
    for index, choice in enumerate(kept):
        choice["index"] = index
    return kept
