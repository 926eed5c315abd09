"""Tool calls a small model wrote as plain text, recognised as the calls they are.

With ``tool_choice: "auto"`` a chat template asks the model to wrap each call
in its family's markers (``<tool_call>`` for Qwen and Hermes); llama.cpp parses
those. Small models often drop the markers and write the call as bare JSON,
fenced JSON, or one JSON object per line. Such text is a call only when every
value in it is ``{"name": <a declared function>, "arguments": {...}}`` (or
``"parameters"``, which some families write), so prose and JSON answers that
merely mention a function stay content.

After a tool result the same models tend to echo the call they already made
instead of answering. :func:`repeats_answered_call` spots that, and
:data:`PROSE_GRAMMAR` lets the engine ask again for an answer in words.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable
from typing import Any

__all__ = ["PROSE_GRAMMAR", "could_be_call", "parse_calls", "repeats_answered_call"]

# An answer in words: it starts with a letter or digit and holds no JSON braces
# or markup, so it cannot be another call in any of the forms above.
PROSE_GRAMMAR = r"root ::= [A-Za-z0-9] [^{}<\x00]*"

_FENCE = re.compile(r"^```[A-Za-z]*\s*\n?(.*?)\n?```$", re.DOTALL)
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
# The start of a call written as JSON, however mangled its braces.
_CALL_OPENING = re.compile(r'^[\s`{\[]*"name"\s*:\s*"([^"]*)"')
# What the text of a call may start with: a JSON value, a fence, or a marker tag.
_CALL_OPENINGS = ("{", "[", "`", "<")


def could_be_call(text: str) -> bool:
    """Whether a reply that begins with ``text`` may still turn out to be a call.

    Streaming holds the reply back while this is true; an empty or blank start
    is undecided.
    """
    start = text.lstrip()
    return not start or start.startswith(_CALL_OPENINGS)


def parse_calls(text: str, tools: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The tool calls ``text`` consists of, in the API's shape, or None if it is not calls."""
    declared = {tool["function"]["name"]: tool["function"] for tool in tools
                if tool.get("type", "function") == "function"}
    values = _json_values(_unwrapped(text.strip()))
    if not values:
        return None
    calls: list[dict[str, Any]] = []
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            call = _as_call(item, declared)
            if call is None:
                return None
            calls.append(call)
    return calls or None


def repeats_answered_call(text: str, calls: list[dict[str, Any]] | None,
                          messages: list[dict[str, Any]]) -> bool:
    """Whether a reply to tool results only calls again what those results answered.

    Small models, shown a call and its result, tend to write the call out again
    (often with the result pasted into its arguments) instead of answering. A
    reply counts as such when the conversation ends in tool results and the
    reply's calls, or the first JSON value of its text, name only functions
    those results came from; a call to another function is a new step.
    """
    answered = _functions_just_answered(messages)
    if not answered:
        return False
    if calls:
        return all(call["function"]["name"] in answered for call in calls)
    values = _json_values(_unwrapped(text.strip()), leading_only=True)
    if values:
        return isinstance(values[0], dict) and values[0].get("name") in answered
    # Not even JSON ('{{"name": ...'): a call's opening naming an answered function still counts.
    opening = _CALL_OPENING.match(text)
    return opening is not None and opening.group(1) in answered


def _functions_just_answered(messages: list[dict[str, Any]]) -> set[str]:
    """The functions whose results end the conversation."""
    ids: set[str] = set()
    for message in reversed(messages):
        if message.get("role") != "tool":
            if message.get("role") != "assistant" or not ids:
                return set()
            return {call["function"]["name"] for call in message.get("tool_calls") or []
                    if call.get("id") in ids}
        ids.add(message.get("tool_call_id") or "")
    return set()


def _unwrapped(text: str) -> str:
    """The text inside a code fence or ``<tool_call>`` tags, if it is wrapped in them."""
    fenced = _FENCE.match(text)
    if fenced:
        return fenced.group(1).strip()
    tagged = _TAGGED.findall(text)
    if tagged and _TAGGED.sub("", text).strip() == "":
        return "\n".join(tagged)
    return text


def _json_values(text: str, *, leading_only: bool = False) -> list[Any]:
    """The JSON values ``text`` consists of (one, or several in a row), or [] if it is not
    JSON; with ``leading_only``, the values it starts with, whatever follows them."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    position = 0
    while position < len(text):
        if text[position].isspace() or text[position] == ",":
            position += 1
            continue
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return values if leading_only else []
        values.append(value)
    return values


def _as_call(item: Any, declared: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if not isinstance(item, dict) or set(item) - {"name", "arguments", "parameters"}:
        return None
    function = declared.get(item.get("name"))  # type: ignore[arg-type]
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if function is None or not isinstance(arguments, dict) or not _has_required(arguments, function):
        return None
    return {"id": f"call_{secrets.token_hex(12)}", "type": "function",
            "function": {"name": function["name"], "arguments": json.dumps(arguments)}}


def _has_required(arguments: dict[str, Any], function: dict[str, Any]) -> bool:
    required: Iterable[str] = (function.get("parameters") or {}).get("required") or ()
    return all(name in arguments for name in required)
