"""Between the Responses API's shapes and the chat service's.

A Responses request becomes a chat completion request: ``instructions`` a
system message, input items messages (a ``function_call`` an assistant tool
call, a ``function_call_output`` a tool message), ``text.format`` the
response format, function tools the chat's function tools,
``max_output_tokens`` ``max_tokens``. The chat answer (whole or streamed)
comes back as output items. Generation itself is the chat service's, so the
two APIs cannot drift apart.

Input items are normalized once, on the way in, to the shapes the API lists
them in (``input_items``, conversation items): ids given, text parts typed,
status set. Stored context (earlier turns, a conversation) is kept in that
shape, so it translates the same way the new input does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import ValidationError

from hearth.chat.protocol import ChatCompletion, ChoiceLogprobs, CreateChatCompletionRequest
from hearth.errors import APIError, InvalidRequest, invalid_request
from hearth.responses.protocol import CreateResponseRequest, TextFormatJSONObject, TextFormatJSONSchema
from hearth.store.ids import new_id

Item = dict[str, Any]
LOGPROBS_INCLUDE = "message.output_text.logprobs"
# The `include` values that name data this server can produce (or that is simply absent here).
INCLUDABLE = {LOGPROBS_INCLUDE, "reasoning.encrypted_content", "message.input_image.image_url"}

# Built-in tools of the OpenAI platform, by type, and why this server cannot run them.
_BUILT_IN_TOOLS = {
    "web_search": "Web search is not available on this server: it has no route to the internet.",
    "web_search_preview": "Web search is not available on this server: it has no route to the internet.",
    "web_search_2025_08_26": "Web search is not available on this server: it has no route to the internet.",
    "web_search_preview_2025_03_11": "Web search is not available on this server: it has no route to the internet.",
    "file_search": "The file_search tool needs vector stores, which this server does not have yet.",
    "computer": "Computer use is not available on this server.",
    "computer_use": "Computer use is not available on this server.",
    "computer_use_preview": "Computer use is not available on this server.",
    "image_generation": "Image generation is not available as a tool on this server.",
    "code_interpreter": "The code interpreter is not available on this server.",
    "mcp": "Remote MCP servers are not available: this server does not reach outside services.",
    "local_shell": "The local_shell tool is not available on this server.",
    "shell": "The shell tool is not available on this server.",
    "apply_patch": "The apply_patch tool is not available on this server.",
    "custom": "Custom (free-form) tools are not supported; declare a function tool with a JSON schema instead.",
    "namespace": "Tool namespaces are not supported; declare function tools directly.",
    "tool_search": "The tool_search tool is not available on this server.",
    "programmatic_tool_calling": "Programmatic tool calling is not available on this server.",
}


def _refuse_tool(tool_type: str, param: str) -> InvalidRequest:
    reason = _BUILT_IN_TOOLS.get(tool_type, "This server does not know that tool type.")
    return InvalidRequest(f"The tool '{tool_type}' is not supported. {reason} "
                          "Declare a function tool and run it yourself instead.",
                          param=param, code="unsupported_tool")


# -- input items --------------------------------------------------------------------------


def _text_parts(content: Any, param: str, *, assistant: bool) -> list[Item]:
    """A message's content as typed parts: input_text for others, output_text for the assistant."""
    if isinstance(content, str):
        content = [{"type": "output_text" if assistant else "input_text", "text": content}]
    if not isinstance(content, list) or not content:
        raise InvalidRequest(f"Invalid value for '{param}': it must be a string or a non-empty array "
                             "of content parts.", param=param)
    parts: list[Item] = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidRequest(f"Missing required parameter: '{where}.text'.", param=f"{where}.text")
            if assistant:
                parts.append({"type": "output_text", "text": text,
                              "annotations": list(part.get("annotations") or []),
                              "logprobs": list(part.get("logprobs") or [])})
            else:
                parts.append({"type": "input_text", "text": text})
        elif kind == "refusal" and assistant and isinstance(part.get("refusal"), str):
            parts.append({"type": "refusal", "refusal": part["refusal"]})
        elif kind == "input_file" and not assistant:
            parts.append(_file_part(part, where))
        elif kind in ("input_image", "input_file", "input_audio"):
            raise InvalidRequest(f"This model reads text only; content part type '{kind}' needs a model with "
                                 "that input modality, and none is installed.", param=where)
        else:
            raise InvalidRequest(f"Invalid content part type {kind!r} at '{where}'.", param=where)
    return parts


def _file_part(part: Item, param: str) -> Item:
    """A file the model is to read: one of the caller's files, or its contents inline."""
    if part.get("file_url") is not None:
        raise InvalidRequest("Files by URL cannot be read: this server does not fetch from the internet. "
                             "Upload the file and give its file_id, or send it as file_data.", param=f"{param}.file_url")
    fields = {key: part[key] for key in ("file_id", "filename", "file_data") if isinstance(part.get(key), str)}
    if "file_id" not in fields and "file_data" not in fields:
        raise InvalidRequest("An input_file part needs a 'file_id' or 'file_data'.", param=param)
    return {"type": "input_file", **fields}


def file_key(part: Item) -> str:
    """What names a file part's text among those read for a request."""
    if "file_id" in part:
        return f"id:{part['file_id']}"
    return "data:" + hashlib.sha256(part["file_data"].encode()).hexdigest()


def file_parts(items: list[Item]) -> list[tuple[str, Item]]:
    """The input_file parts of messages and tool outputs, each with the parameter that names it."""
    found: list[tuple[str, Item]] = []
    for index, item in enumerate(items):
        key = {"message": "content", "function_call_output": "output"}.get(item["type"])
        parts = item.get(key) if key else None
        if isinstance(parts, list):
            found.extend((f"input[{index}].{key}[{part_index}]", part)
                         for part_index, part in enumerate(parts) if part["type"] == "input_file")
    return found


def _string(raw: Item, key: str, param: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise InvalidRequest(f"Missing required parameter: '{param}.{key}'." if value is None
                             else f"Invalid type for '{param}.{key}': expected a string.", param=f"{param}.{key}")
    return value


def _output_text(output: Any, param: str) -> Any:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return _text_parts(output, f"{param}.output", assistant=False)
    raise InvalidRequest(f"Invalid type for '{param}.output': expected a string or an array of content parts.",
                         param=f"{param}.output")


def normalize_item(raw: Any, param: str) -> Item:
    """One input item, checked, in the shape the API lists it in (with an id and a status)."""
    if not isinstance(raw, dict):
        raise InvalidRequest(f"Invalid type for '{param}': expected an object.", param=param)
    kind = raw.get("type") or "message"
    item_id = raw.get("id") if isinstance(raw.get("id"), str) and raw.get("id") else None
    if kind == "message":
        role = raw.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise InvalidRequest(f"Invalid value for '{param}.role': it must be one of user, assistant, system, "
                                 "developer.", param=f"{param}.role")
        assistant = role == "assistant"
        return {"id": item_id or new_id("msg_"), "type": "message", "role": role, "status": "completed",
                "content": _text_parts(raw.get("content"), f"{param}.content", assistant=assistant)}
    if kind == "function_call":
        return {"id": item_id or new_id("fc_"), "type": "function_call", "status": "completed",
                "call_id": _string(raw, "call_id", param), "name": _string(raw, "name", param),
                "arguments": _string(raw, "arguments", param)}
    if kind == "function_call_output":
        return {"id": item_id or new_id("fco_"), "type": "function_call_output", "status": "completed",
                "call_id": _string(raw, "call_id", param), "output": _output_text(raw.get("output"), param)}
    if kind == "item_reference":
        raise InvalidRequest("Item references are not supported; send the item itself, or chain with "
                             "previous_response_id.", param=param)
    if kind == "reasoning":
        raise InvalidRequest("Reasoning items cannot be used: this server's models do not reason, so they "
                             "cannot continue another model's reasoning. Leave them out of the input.", param=param)
    raise InvalidRequest(f"Input items of type '{kind}' are not supported by this server; it takes messages, "
                         "function_call and function_call_output items.", param=f"{param}.type")


def normalize_input(value: str | list[Any] | None, param: str = "input") -> list[Item]:
    if value is None:
        return []
    if isinstance(value, str):
        return [normalize_item({"type": "message", "role": "user", "content": value}, param)]
    return [normalize_item(raw, f"{param}[{index}]") for index, raw in enumerate(value)]


# -- to a chat request ----------------------------------------------------------------------


def _joined(parts: Any, files: dict[str, str]) -> str:
    if isinstance(parts, str):
        return parts
    return "\n".join(_part_text(part, files) for part in parts)


def _part_text(part: Item, files: dict[str, str]) -> str:
    if part["type"] == "input_file":
        name = part.get("filename") or part.get("file_id") or "file"
        return f"<file name={json.dumps(name)}>\n{files[file_key(part)]}\n</file>"
    return str(part.get("text") or part.get("refusal") or "")


def chat_messages(instructions: str | None, items: list[Item],
                  files: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The conversation as chat messages; consecutive function calls share one assistant turn.

    ``files`` holds the text of every input_file part, by ``file_key``.
    """
    files = files or {}
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    for item in items:
        kind = item["type"]
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": _joined(item["content"], files)})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"],
                             "content": _joined(item["output"], files)})
        # Output items of other kinds are never produced here, so stored context holds none.
    return messages


def _tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for index, tool in enumerate(tools or []):
        param = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise InvalidRequest(f"Invalid type for '{param}': expected an object.", param=param)
        kind = tool.get("type")
        if kind != "function":
            raise _refuse_tool(str(kind), param)
        name = tool.get("name")
        if not isinstance(name, str):
            raise InvalidRequest(f"Missing required parameter: '{param}.name'.", param=f"{param}.name")
        function = {"name": name, "description": tool.get("description"), "parameters": tool.get("parameters"),
                    "strict": tool.get("strict")}
        out.append({"type": "function", "function": {k: v for k, v in function.items() if v is not None}})
    return out


def _tool_choice(choice: str | dict[str, Any] | None) -> Any:
    if choice is None or isinstance(choice, str):
        return choice
    kind = choice.get("type")
    if kind == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if kind == "allowed_tools":
        tools = []
        for index, tool in enumerate(choice.get("tools") or []):
            if not isinstance(tool, dict) or tool.get("type") != "function":
                raise _refuse_tool(str(tool.get("type") if isinstance(tool, dict) else tool),
                                   f"tool_choice.tools[{index}]")
            tools.append({"type": "function", "function": {"name": tool.get("name")}})
        return {"type": "allowed_tools", "allowed_tools": {"mode": choice.get("mode"), "tools": tools}}
    raise _refuse_tool(str(kind), "tool_choice")


def _response_format(body: CreateResponseRequest) -> dict[str, Any] | None:
    fmt = body.text.format if body.text else None
    if isinstance(fmt, TextFormatJSONObject):
        return {"type": "json_object"}
    if isinstance(fmt, TextFormatJSONSchema):
        schema = {"name": fmt.name, "schema": fmt.schema_, "description": fmt.description, "strict": fmt.strict}
        return {"type": "json_schema", "json_schema": {k: v for k, v in schema.items() if v is not None}}
    return None


def _check_call_outputs(context: list[Item], items: list[Item]) -> None:
    """Every function_call_output answers a function call made earlier in the conversation."""
    calls = {item["call_id"] for item in context if item["type"] == "function_call"}
    for index, item in enumerate(items):
        if item["type"] == "function_call":
            calls.add(item["call_id"])
        elif item["type"] == "function_call_output" and item["call_id"] not in calls:
            raise InvalidRequest(f"No tool call found for function call output with call_id {item['call_id']}.",
                                 param=f"input[{index}].call_id")


def chat_request(body: CreateResponseRequest, model: str, context: list[Item], items: list[Item],
                 files: dict[str, str] | None = None) -> CreateChatCompletionRequest:
    """The chat completion request that generates this response."""
    _check_call_outputs(context, items)
    request: dict[str, Any] = {
        "model": model,
        "messages": chat_messages(body.instructions, [*context, *items], files),
        "temperature": body.temperature, "top_p": body.top_p, "max_tokens": body.max_output_tokens,
        "parallel_tool_calls": body.parallel_tool_calls, "user": body.user,
        "response_format": _response_format(body),
    }
    if tools := _tools(body.tools):
        request["tools"] = tools
        request["tool_choice"] = _tool_choice(body.tool_choice)
    elif body.tool_choice not in (None, "none", "auto"):
        raise InvalidRequest("tool_choice names a tool, but 'tools' declares none.", param="tool_choice")
    if LOGPROBS_INCLUDE in (body.include or []):
        request["logprobs"] = True
        request["top_logprobs"] = body.top_logprobs or 0
    if body.stream:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    if not request["messages"]:
        raise InvalidRequest("The input is empty: give 'input', or continue a conversation or an earlier "
                             "response that has some.", param="input")
    try:
        with chat_params():
            return CreateChatCompletionRequest.model_validate(
                {key: value for key, value in request.items() if value is not None})
    except ValidationError as exc:
        raise renamed(invalid_request(exc.errors())) from None


# Chat's parameter names, as the Responses API calls them.
_PARAMS = {"messages": "input", "max_tokens": "max_output_tokens", "response_format": "text.format"}


def renamed(exc: APIError) -> APIError:
    """A chat refusal worded for the Responses request that caused it."""
    head = (exc.param or "").split(".")[0].split("[")[0]
    if head in _PARAMS:
        exc.message = exc.message.replace(f"'{head}'", f"'{_PARAMS[head]}'").replace(
            f"the {head}", f"the {_PARAMS[head]}")
        exc.param = _PARAMS[head]
    return exc


@contextmanager
def chat_params() -> Iterator[None]:
    """Chat refusals raised inside, renamed to the Responses request's parameters."""
    try:
        yield
    except APIError as exc:
        raise renamed(exc) from None


# -- from a chat answer ---------------------------------------------------------------------


def logprobs(raw: ChoiceLogprobs | None) -> list[dict[str, Any]]:
    if raw is None or not raw.content:
        return []
    return [{"token": entry.token, "logprob": entry.logprob, "bytes": entry.bytes or [],
             "top_logprobs": [{"token": top.token, "logprob": top.logprob, "bytes": top.bytes or []}
                              for top in entry.top_logprobs]}
            for entry in raw.content]


def message_item(item_id: str, text: str, status: str, token_logprobs: list[dict[str, Any]]) -> Item:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": token_logprobs}]}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> Item:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def output_items(completion: ChatCompletion) -> tuple[list[Item], str]:
    """The answer's output items, and its finish reason."""
    choice = completion.choices[0]
    message = choice.message
    cut = choice.finish_reason == "length"
    items: list[Item] = []
    calls = message.tool_calls or []
    if message.content or not calls:
        items.append(message_item(new_id("msg_"), message.content or "", "incomplete" if cut else "completed",
                                  logprobs(choice.logprobs)))
    for call in calls:
        items.append(function_call_item(new_id("fc_"), call.id, call.function.name, call.function.arguments,
                                        "incomplete" if cut else "completed"))
    return items, choice.finish_reason


def usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens}


def echoed_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Function tools as the response object echoes them (every required key present)."""
    return [{"type": "function", "name": tool["name"], "description": tool.get("description"),
             "parameters": tool.get("parameters"), "strict": tool.get("strict")} for tool in tools or []]


def echoed_text(body: CreateResponseRequest) -> dict[str, Any]:
    fmt = body.text.format if body.text and body.text.format else None
    text: dict[str, Any] = {"format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"}}
    if body.text and body.text.verbosity:
        text["verbosity"] = body.text.verbosity
    return text

