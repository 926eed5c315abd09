"""A run's turn as a chat completion request: instructions, the thread, the tools.

The thread's messages and its function-calling steps (each call with the
output the client submitted) are laid out in the order they happened, which
their time-ordered ids give; the run's instructions come first as the system
message. ``truncation_strategy: last_messages`` keeps the most recent thread
messages; ``auto`` drops the oldest ones only while the prompt does not fit
the model's context (``execution.py`` retries with one fewer).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from hearth.chat.protocol import CreateChatCompletionRequest
from hearth.errors import invalid_request
from hearth.store.tables import RunRow, RunStepRow, ThreadMessageRow


def _order(object_id: str) -> str:
    # ordered_id: a prefix, then a time-ordered suffix shared by messages and steps.
    return object_id.split("_", 1)[1]


def _text(message: ThreadMessageRow) -> str:
    return "\n".join(part["text"]["value"] for part in message.content if part.get("type") == "text")


def _step_messages(step: RunStepRow) -> list[dict[str, Any]]:
    calls = step.step_details.get("tool_calls") or []
    if not calls:
        return []
    out: list[dict[str, Any]] = [{"role": "assistant", "content": None, "tool_calls": [
        {"id": call["id"], "type": "function",
         "function": {"name": call["function"]["name"], "arguments": call["function"]["arguments"]}}
        for call in calls]}]
    out.extend({"role": "tool", "tool_call_id": call["id"], "content": call["function"].get("output") or ""}
               for call in calls)
    return out


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


def chat_request(run: RunRow, items: list[Any], *, stream: bool,
                 max_completion_tokens: int | None = None) -> CreateChatCompletionRequest:
    """The chat completion request for the run's next turn; a 400 if it cannot be made."""
    messages: list[dict[str, Any]] = []
    if run.instructions:
        messages.append({"role": "system", "content": run.instructions})
    for item in items:
        if isinstance(item, RunStepRow):
            messages.extend(_step_messages(item))
        else:
            messages.append({"role": item.role, "content": _text(item)})
    body: dict[str, Any] = {"model": run.model, "messages": messages}
    if run.tools:
        body["tools"] = run.tools
        body["parallel_tool_calls"] = run.parallel_tool_calls
        if run.tool_choice is not None:
            # A forced choice ("required", or a named function) forces the turn before the run's calls
            # are answered; after them the model reads the outputs and may answer (else it would loop).
            answered = any(isinstance(item, RunStepRow) and item.run_id == run.id for item in items)
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
