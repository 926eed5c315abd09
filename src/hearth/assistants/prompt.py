"""A run's turn as a chat completion request: instructions, the thread, the tools.

The thread's messages and its function-calling steps (each call with the
output the client submitted) are laid out in the order they happened, which
their time-ordered ids give; the run's instructions come first as the system
message. ``truncation_strategy: last_messages`` keeps the most recent thread
messages; ``auto`` drops the oldest ones only while the prompt does not fit
the model's context (``execution.py`` retries with one fewer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from hearth.assistants import code_interpreter
from hearth.chat.protocol import CreateChatCompletionRequest
from hearth.errors import invalid_request
from hearth.store.tables import RunRow, RunStepRow, ThreadMessageRow


def _order(object_id: str) -> str:
    # ordered_id: a prefix, then a time-ordered suffix shared by messages and steps.
    return object_id.split("_", 1)[1]


def _text(message: ThreadMessageRow) -> str:
    return "\n".join(part["text"]["value"] for part in message.content if part.get("type") == "text")


def _step_messages(step: RunStepRow, code_as_text: bool = False) -> list[dict[str, Any]]:
    calls = step.step_details.get("tool_calls") or []
    if not calls:
        return []
    tool_calls, results, texts = [], [], []
    for call in calls:
        if call.get("type") == code_interpreter.TYPE and code_as_text:
            texts += code_interpreter.text_messages(call)
            continue
        if call.get("type") == code_interpreter.TYPE:
            tool_call, output = code_interpreter.call_messages(call)
        elif call.get("type") == "function":
            tool_call = {"id": call["id"], "type": "function",
                         "function": {"name": call["function"]["name"], "arguments": call["function"]["arguments"]}}
            output = call["function"].get("output") or ""
        else:
            continue
        tool_calls.append(tool_call)
        results.append({"role": "tool", "tool_call_id": call["id"], "content": output})
    if not tool_calls:
        return texts
    return [*texts, {"role": "assistant", "content": None, "tool_calls": tool_calls}, *results]


def timeline(run: RunRow, messages: list[ThreadMessageRow], steps: list[RunStepRow]) -> list[Any]:
    """The thread as the model reads it: messages (finished ones) and answered tool calls, in order,
    cut to ``last_messages`` when the run says so."""
    kept = [message for message in messages if message.status != "in_progress"]
    strategy = run.truncation_strategy or {}
    if strategy.get("type") == "last_messages" and strategy.get("last_messages"):
        kept = kept[-int(strategy["last_messages"]):]
    if kept:
        first = _order(kept[0].id)
        steps = [step for step in steps if _order(step.id) > first]
    return sorted([*kept, *steps], key=lambda item: _order(item.id))


def chat_request(run: RunRow, items: list[Any], *, stream: bool, max_completion_tokens: int | None = None,
                 code_files: Sequence[str] = (), knowledge: str | None = None) -> CreateChatCompletionRequest:
    """The chat completion request for the run's next turn; a 400 if it cannot be made. ``knowledge``: the
    file search's passages, after the instructions."""
    messages: list[dict[str, Any]] = []
    system = "\n\n".join(part for part in (run.instructions, knowledge) if part)
    if system:
        messages.append({"role": "system", "content": system})
    code_calls = [call for item in items if isinstance(item, RunStepRow) and item.run_id == run.id
                  for call in item.step_details.get("tool_calls") or [] if call.get("type") == code_interpreter.TYPE]
    # The turn that answers from the code's output reads it as text, with no tools to call.
    code_as_text = code_interpreter.answers_from_text(run.tool_choice, run.tools, code_calls)
    for item in items:
        if isinstance(item, RunStepRow):
            messages.extend(_step_messages(item, code_as_text))
        else:
            messages.append({"role": item.role, "content": _text(item)})
    body: dict[str, Any] = {"model": run.model, "messages": messages}
    # file_search and retrieval are not the model's to call: the run searched before the turn.
    tools = [tool for tool in code_interpreter.chat_tools(run.tools, code_files) if tool.get("type") == "function"]
    if tools and not code_as_text:
        body["tools"] = tools
        body["parallel_tool_calls"] = run.parallel_tool_calls
        # A forced choice ("required", or a named function) forces the turn before the run's calls
        # are answered; after them the model reads the outputs and may answer (else it would loop).
        answered = any(isinstance(item, RunStepRow) and item.run_id == run.id and _step_messages(item)
                       for item in items)
        if code_interpreter.enabled(run.tools):
            body["tool_choice"] = code_interpreter.chat_tool_choice(run.tool_choice, run.tools, code_calls,
                                                                    answered)
        elif run.tool_choice is not None:
            body["tool_choice"] = "auto" if answered and run.tool_choice != "none" else run.tool_choice
    for field in ("temperature", "top_p"):
        if getattr(run, field) is not None:
            body[field] = getattr(run, field)
    if max_completion_tokens is not None:
        # What is left of the run's budget: every turn's completion counts against it.
        body["max_completion_tokens"] = max_completion_tokens
    if isinstance(run.response_format, dict) and run.response_format.get("type") != "text":
        body["response_format"] = run.response_format
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    try:
        return CreateChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        raise invalid_request(exc.errors()) from None
