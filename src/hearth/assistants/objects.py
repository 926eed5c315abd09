"""The Assistants API's objects as each version shows them, from the rows both versions share.

v2 (``OpenAI-Beta: assistants=v2``) has ``tool_resources``, message
``attachments`` and ``parallel_tool_calls``; v1 has ``file_ids`` on
assistants, messages and runs instead. Everything else is common.
"""

from __future__ import annotations

from typing import Any

from hearth.assistants import file_search
from hearth.assistants.protocol import Version
from hearth.store.tables import AssistantFileRow, AssistantRow, RunRow, RunStepRow, ThreadMessageRow, ThreadRow


def assistant_object(row: AssistantRow, version: Version) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": row.id, "object": "assistant", "created_at": row.created_at, "name": row.name,
        "description": row.description, "model": row.model, "instructions": row.instructions,
        "tools": row.tools, "metadata": row.metadata_ or {},
    }
    if version == "v1":
        body["file_ids"] = row.file_ids
    else:
        body["tool_resources"] = row.tool_resources or {}
    body.update(temperature=row.temperature if row.temperature is not None else 1.0,
                top_p=row.top_p if row.top_p is not None else 1.0,
                response_format=row.response_format if row.response_format is not None else "auto")
    return body


def assistant_file_object(row: AssistantFileRow) -> dict[str, Any]:
    return {"id": row.file_id, "object": "assistant.file", "created_at": row.created_at,
            "assistant_id": row.assistant_id}


def thread_object(row: ThreadRow, version: Version) -> dict[str, Any]:
    body: dict[str, Any] = {"id": row.id, "object": "thread", "created_at": row.created_at,
                            "metadata": row.metadata_ or {}}
    if version == "v2":
        body["tool_resources"] = row.tool_resources or {}
    return body


def message_object(row: ThreadMessageRow, version: Version) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": row.id, "object": "thread.message", "created_at": row.created_at, "thread_id": row.thread_id,
        "status": row.status, "incomplete_details": row.incomplete_details, "completed_at": row.completed_at,
        "incomplete_at": row.incomplete_at, "role": row.role, "content": row.content,
        "assistant_id": row.assistant_id, "run_id": row.run_id, "metadata": row.metadata_ or {},
    }
    if version == "v1":
        body["file_ids"] = row.file_ids
    else:
        body["attachments"] = row.attachments or []
    return body


def message_file_object(row: ThreadMessageRow, file_id: str) -> dict[str, Any]:
    return {"id": file_id, "object": "thread.message.file", "created_at": row.created_at, "message_id": row.id}


def run_object(row: RunRow, version: Version) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": row.id, "object": "thread.run", "created_at": row.created_at, "thread_id": row.thread_id,
        "assistant_id": row.assistant_id, "status": row.status, "required_action": row.required_action,
        "last_error": row.last_error, "expires_at": row.expires_at, "started_at": row.started_at,
        "cancelled_at": row.cancelled_at, "failed_at": row.failed_at, "completed_at": row.completed_at,
        "incomplete_details": row.incomplete_details, "model": row.model, "instructions": row.instructions,
        "tools": row.tools, "metadata": row.metadata_ or {}, "usage": row.usage,
        "temperature": row.temperature if row.temperature is not None else 1.0,
        "top_p": row.top_p if row.top_p is not None else 1.0,
        "max_prompt_tokens": row.max_prompt_tokens, "max_completion_tokens": row.max_completion_tokens,
        "truncation_strategy": row.truncation_strategy or {"type": "auto", "last_messages": None},
        "tool_choice": row.tool_choice if row.tool_choice is not None else "auto",
        "response_format": row.response_format if row.response_format is not None else "auto",
    }
    if version == "v1":
        body["file_ids"] = row.file_ids
    else:
        body["parallel_tool_calls"] = row.parallel_tool_calls
    return body


def step_object(row: RunStepRow, version: Version, include_content: bool = False) -> dict[str, Any]:
    """``include_content``: file search results with their text (``include[]`` asked for it)."""
    details = row.step_details
    if details.get("type") == "tool_calls" and any(call.get("type") in file_search.TYPES
                                                   for call in details.get("tool_calls") or []):
        details = {**details, "tool_calls": [file_search.shown(call, include_content)
                                             for call in details["tool_calls"]]}
    return {
        "id": row.id, "object": "thread.run.step", "created_at": row.created_at, "assistant_id": row.assistant_id,
        "thread_id": row.thread_id, "run_id": row.run_id, "type": row.type, "status": row.status,
        "step_details": details, "last_error": row.last_error, "expired_at": row.expired_at,
        "cancelled_at": row.cancelled_at, "failed_at": row.failed_at, "completed_at": row.completed_at,
        "metadata": row.metadata_ or {}, "usage": row.usage,
    }


def deleted(object_id: str, kind: str) -> dict[str, Any]:
    return {"id": object_id, "object": f"{kind}.deleted", "deleted": True}
