"""Assistants, their v1 files, threads, messages and v1 message files, as the API sees them.

Every object belongs to the caller's project; another project's id is a 404.
What a version does not have is refused by name, as an unknown argument
would be. Function tools are served by the chat model (``runs.py``,
``execution.py``); ``file_search`` (v2) and ``retrieval`` (v1) by
``file_search.py`` over vector stores; the code interpreter by
``code_interpreter.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from hearth.assistants import code_interpreter, file_search, objects
from hearth.assistants.protocol import (
    CreateAssistantFileRequest,
    CreateAssistantRequest,
    CreateMessageRequest,
    CreateThreadRequest,
    FunctionTool,
    ImageFilePart,
    ImageURLPart,
    ModifyAssistantRequest,
    ModifyMetadataRequest,
    ModifyThreadRequest,
    ResponseFormat,
    ResponseFormatObject,
    TextPart,
    Tool,
    Version,
)
from hearth.caller import Caller
from hearth.errors import InvalidRequest, NotFound
from hearth.models.service import ModelService
from hearth.store import assistants as repo
from hearth.store import files as files_repo
from hearth.store.db import Database
from hearth.store.ids import now
from hearth.store.pagination import PageRequest
from hearth.store.tables import AssistantFileRow, AssistantRow, ThreadMessageRow, ThreadRow
from hearth.vector_stores.service import VectorStoreService

# A run in one of these holds its thread: no message may be added nor another run started.
ACTIVE_RUN_STATUSES = ("queued", "in_progress", "requires_action", "cancelling")
# Fields only one version has; the other refuses them as unknown arguments.
_V1_ONLY = ("file_ids",)
_V2_ONLY = ("tool_resources", "attachments")

Page = tuple[list[dict[str, Any]], bool]


# -- checks shared with runs ------------------------------------------------------------------


def check_version_fields(body: BaseModel, version: Version, prefix: str = "") -> None:
    """Refuse a field the caller's version of the API does not have."""
    foreign = _V2_ONLY if version == "v1" else _V1_ONLY
    for field in foreign:
        if field in body.model_fields_set and getattr(body, field, None) is not None:
            raise InvalidRequest(f"Unrecognized request argument supplied: {prefix}{field}",
                                 param=f"{prefix}{field}")


def check_tools(tools: Sequence[Tool] | None, version: Version, param: str = "tools") -> list[dict[str, Any]]:
    """The tools as stored, or a 400 naming the first one this server cannot run yet."""
    out: list[dict[str, Any]] = []
    for index, tool in enumerate(tools or []):
        if tool.type == code_interpreter.TYPE:
            code_interpreter.check_available(f"{param}[{index}]")
            out.append({"type": code_interpreter.TYPE})
            continue
        if tool.type in file_search.TYPES:
            out.append(file_search.check_tool(tool, version, f"{param}[{index}]"))
            continue
        assert isinstance(tool, FunctionTool)
        out.append({"type": "function", "function": tool.function.model_dump(exclude_none=True)})
    code_interpreter.check_function_names(out, param)
    return out


def check_tool_resources(resources: dict[str, Any] | None, param: str = "tool_resources") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in (resources or {}).items():
        if name == code_interpreter.TYPE:
            out[name] = code_interpreter.check_resource(value, f"{param}.{name}")
            continue
        if name == "file_search":
            out[name] = file_search.check_resource(value, f"{param}.{name}")
            continue
        raise InvalidRequest(f"Unrecognized request argument supplied: {param}.{name}", param=f"{param}.{name}")
    return out


def response_format_value(value: ResponseFormat | None, version: Version, param: str = "response_format") -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        if value == "none" and version == "v2":
            raise InvalidRequest("Invalid value for 'response_format': 'none' is v1's; use 'auto'.",
                                 param=param)
        return "auto" if value == "none" else value
    assert isinstance(value, ResponseFormatObject)
    if value.type == "json_schema":
        if version == "v1":
            raise InvalidRequest("Invalid value for 'response_format.type': 'json_schema' is not part of "
                                 "Assistants v1.", param=f"{param}.type")
        if value.json_schema is None:
            raise InvalidRequest("Missing required parameter: 'response_format.json_schema'.",
                                 param=f"{param}.json_schema")
    return value.model_dump(by_alias=True, exclude_none=True)


def check_files(session: Session, caller: Caller, file_ids: Sequence[str], param: str) -> None:
    for index, file_id in enumerate(file_ids):
        if files_repo.get_file(session, caller.project_id, file_id) is None:
            raise InvalidRequest(f"No such File object: {file_id}", param=f"{param}[{index}]")


def message_content(body: CreateMessageRequest, param: str) -> list[dict[str, Any]]:
    """The message's content as stored: a list of text parts."""
    if isinstance(body.content, str):
        return [{"type": "text", "text": {"value": body.content, "annotations": []}}]
    parts = []
    for index, part in enumerate(body.content):
        if isinstance(part, (ImageFilePart, ImageURLPart)):
            where = f"{param}.content" if param else "content"
            raise InvalidRequest(f"This server's chat models read text only; content part type '{part.type}' "
                                 "needs a model with image input, and none is installed.",
                                 param=f"{where}[{index}]")
        assert isinstance(part, TextPart)
        parts.append({"type": "text", "text": {"value": part.text, "annotations": []}})
    return parts


def new_message(session: Session, caller: Caller, thread_id: str, body: CreateMessageRequest, version: Version,
                param: str = "", stores: VectorStoreService | None = None) -> ThreadMessageRow:
    """Check a create-message request and add its message to the session (files attached for file search
    join the thread's vector store)."""
    check_version_fields(body, version, param + "." if param else "")
    where = param or "content"
    attachments_param = f"{param}.attachments" if param else "attachments"
    attachments = code_interpreter.check_attachments(file_search.other_attachments(body.attachments),
                                                     attachments_param)
    if attachments is None:
        raise InvalidRequest("Message attachments are for the code_interpreter and file_search tools; another "
                             "tool (or none) was named.", param=attachments_param, code="unsupported_tool")
    searched = file_search.attachment_files(body.attachments)
    if searched:
        check_files(session, caller, searched, attachments_param)
        file_search.attach_to_thread(session, caller, stores, thread_id, searched, attachments_param)
        attachments = file_search.stored_attachments(body.attachments)
    if version == "v1" and not isinstance(body.content, str):
        raise InvalidRequest(f"Invalid type for '{where}': Assistants v1 takes message content as a string.",
                             param=where)
    file_ids = body.file_ids or []
    check_files(session, caller, file_ids, f"{param}.file_ids" if param else "file_ids")
    check_files(session, caller, [item["file_id"] for item in attachments], attachments_param)
    row = ThreadMessageRow(
        id=repo.ordered_id("msg_"), thread_id=thread_id, project_id=caller.project_id, created_at=now(),
        role=body.role, content=message_content(body, param), status="completed", completed_at=now(),
        attachments=attachments, file_ids=file_ids, metadata_=body.metadata,
    )
    session.add(row)
    return row


def new_thread(session: Session, caller: Caller, body: CreateThreadRequest | None, version: Version,
               param: str = "", stores: VectorStoreService | None = None) -> ThreadRow:
    body = body or CreateThreadRequest()
    prefix = param + "." if param else ""
    check_version_fields(body, version, prefix)
    thread = ThreadRow(id=repo.ordered_id("thread_"), organization_id=caller.organization_id,
                       project_id=caller.project_id, created_at=now(),
                       tool_resources=file_search.settle(
                           session, caller, stores, check_tool_resources(body.tool_resources, f"{prefix}tool_resources"),
                           f"{prefix}tool_resources"),
                       metadata_=body.metadata)
    session.add(thread)
    session.flush()  # the thread's row first: its messages refer to it
    for index, message in enumerate(body.messages or []):
        new_message(session, caller, thread.id, message, version, f"{prefix}messages[{index}]", stores)
    return thread


def no_assistant(assistant_id: str) -> NotFound:
    return NotFound(f"No assistant found with id '{assistant_id}'.", param="assistant_id")


def no_thread(thread_id: str) -> NotFound:
    return NotFound(f"No thread found with id '{thread_id}'.", param="thread_id")


def thread_of(session: Session, caller: Caller, thread_id: str) -> ThreadRow:
    thread = repo.get_thread(session, caller.project_id, thread_id)
    if thread is None:
        raise no_thread(thread_id)
    return thread


def refuse_if_active(session: Session, thread_id: str) -> None:
    active = repo.active_run(session, thread_id, ACTIVE_RUN_STATUSES)
    if active is not None:
        raise InvalidRequest(f"Thread {thread_id} already has an active run {active.id}.")


# -- the service -----------------------------------------------------------------------------


class AssistantsService:
    def __init__(self, db: Database, models: ModelService, vector_stores: VectorStoreService | None = None) -> None:
        self.db = db
        self.models = models
        # Makes the stores of tool_resources.file_search.vector_stores (None: file search refused).
        self.vector_stores = vector_stores

    # assistants

    def create_assistant(self, caller: Caller, body: CreateAssistantRequest, version: Version) -> dict[str, Any]:
        check_version_fields(body, version)
        self.models.resolve(body.model, "chat")
        row = AssistantRow(
            id=repo.ordered_id("asst_"), organization_id=caller.organization_id, project_id=caller.project_id,
            created_at=now(), name=body.name, description=body.description, model=body.model,
            instructions=body.instructions, tools=check_tools(body.tools, version),
            tool_resources=check_tool_resources(body.tool_resources),
            file_ids=list(dict.fromkeys(body.file_ids or [])),
            metadata_=body.metadata, temperature=body.temperature, top_p=body.top_p,
            response_format=response_format_value(body.response_format, version),
        )
        with self.db.session() as session:
            check_files(session, caller, row.file_ids, "file_ids")
            row.tool_resources = file_search.settle(session, caller, self.vector_stores, row.tool_resources)
            session.add(row)
            session.flush()  # the assistant's row first: its files refer to it
            for file_id in row.file_ids:
                repo.attach_file(session, row.id, file_id, row.created_at)
        return objects.assistant_object(row, version)

    def _assistant(self, session: Session, caller: Caller, assistant_id: str) -> AssistantRow:
        row = repo.get_assistant(session, caller.project_id, assistant_id)
        if row is None:
            raise no_assistant(assistant_id)
        return row

    def retrieve_assistant(self, caller: Caller, assistant_id: str, version: Version) -> dict[str, Any]:
        with self.db.session() as session:
            return objects.assistant_object(self._assistant(session, caller, assistant_id), version)

    def list_assistants(self, caller: Caller, page: PageRequest, version: Version) -> Page:
        with self.db.session() as session:
            rows, has_more = repo.list_assistants(session, caller.project_id, page)
            return [objects.assistant_object(row, version) for row in rows], has_more

    def modify_assistant(self, caller: Caller, assistant_id: str, body: ModifyAssistantRequest,
                         version: Version) -> dict[str, Any]:
        check_version_fields(body, version)
        given = body.model_fields_set
        with self.db.session() as session:
            row = self._assistant(session, caller, assistant_id)
            if body.model is not None:
                self.models.resolve(body.model, "chat")
                row.model = body.model
            for field in ("name", "description", "instructions", "temperature", "top_p"):
                if field in given:
                    setattr(row, field, getattr(body, field))
            if "tools" in given:
                row.tools = check_tools(body.tools, version)
            if "tool_resources" in given:
                row.tool_resources = file_search.settle(session, caller, self.vector_stores,
                                                        check_tool_resources(body.tool_resources))
            if "metadata" in given:
                row.metadata_ = body.metadata
            if "response_format" in given:
                row.response_format = response_format_value(body.response_format, version)
            if "file_ids" in given:
                file_ids = body.file_ids or []
                check_files(session, caller, file_ids, "file_ids")
                repo.delete_assistant_files(session, row.id)
                session.flush()
                for file_id in dict.fromkeys(file_ids):
                    repo.attach_file(session, row.id, file_id, now())
                row.file_ids = list(dict.fromkeys(file_ids))
            session.flush()
            return objects.assistant_object(row, version)

    def delete_assistant(self, caller: Caller, assistant_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            self._assistant(session, caller, assistant_id)
            repo.delete_assistant(session, assistant_id)
        return objects.deleted(assistant_id, "assistant")

    # v1 assistant files

    def create_assistant_file(self, caller: Caller, assistant_id: str,
                              body: CreateAssistantFileRequest) -> dict[str, Any]:
        with self.db.session() as session:
            row = self._assistant(session, caller, assistant_id)
            check_files(session, caller, [body.file_id], "file_id")
            existing = repo.get_assistant_file(session, assistant_id, body.file_id)
            if existing is not None:
                return objects.assistant_file_object(existing)
            if len(row.file_ids) >= 20:
                raise InvalidRequest("An assistant can have at most 20 files attached.", param="file_id")
            attached = repo.attach_file(session, assistant_id, body.file_id, now())
            row.file_ids = [*row.file_ids, body.file_id]
            return objects.assistant_file_object(attached)

    def _assistant_file(self, session: Session, caller: Caller, assistant_id: str,
                        file_id: str) -> AssistantFileRow:
        self._assistant(session, caller, assistant_id)
        attached = repo.get_assistant_file(session, assistant_id, file_id)
        if attached is None:
            raise NotFound(f"No file found with id '{file_id}' on assistant '{assistant_id}'.", param="file_id")
        return attached

    def retrieve_assistant_file(self, caller: Caller, assistant_id: str, file_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            return objects.assistant_file_object(self._assistant_file(session, caller, assistant_id, file_id))

    def list_assistant_files(self, caller: Caller, assistant_id: str, page: PageRequest) -> Page:
        with self.db.session() as session:
            self._assistant(session, caller, assistant_id)
            rows, has_more = repo.list_assistant_files(session, assistant_id, page)
            return [objects.assistant_file_object(row) for row in rows], has_more

    def delete_assistant_file(self, caller: Caller, assistant_id: str, file_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            attached = self._assistant_file(session, caller, assistant_id, file_id)
            row = self._assistant(session, caller, assistant_id)
            row.file_ids = [kept for kept in row.file_ids if kept != file_id]
            session.delete(attached)
        return objects.deleted(file_id, "assistant.file")

    # threads

    def create_thread(self, caller: Caller, body: CreateThreadRequest | None, version: Version) -> dict[str, Any]:
        with self.db.session() as session:
            thread = new_thread(session, caller, body, version, stores=self.vector_stores)
            return objects.thread_object(thread, version)

    def retrieve_thread(self, caller: Caller, thread_id: str, version: Version) -> dict[str, Any]:
        with self.db.session() as session:
            return objects.thread_object(thread_of(session, caller, thread_id), version)

    def modify_thread(self, caller: Caller, thread_id: str, body: ModifyThreadRequest,
                      version: Version) -> dict[str, Any]:
        check_version_fields(body, version)
        with self.db.session() as session:
            thread = thread_of(session, caller, thread_id)
            if "tool_resources" in body.model_fields_set:
                thread.tool_resources = file_search.settle(session, caller, self.vector_stores,
                                                           check_tool_resources(body.tool_resources))
            if "metadata" in body.model_fields_set:
                thread.metadata_ = body.metadata
            session.flush()
            return objects.thread_object(thread, version)

    def delete_thread(self, caller: Caller, thread_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            thread_of(session, caller, thread_id)
            repo.delete_thread(session, thread_id)
        return objects.deleted(thread_id, "thread")

    # messages

    def create_message(self, caller: Caller, thread_id: str, body: CreateMessageRequest,
                       version: Version) -> dict[str, Any]:
        with self.db.session() as session:
            thread_of(session, caller, thread_id)
            refuse_if_active(session, thread_id)
            return objects.message_object(new_message(session, caller, thread_id, body, version,
                                                      stores=self.vector_stores), version)

    def _message(self, session: Session, caller: Caller, thread_id: str, message_id: str) -> ThreadMessageRow:
        thread_of(session, caller, thread_id)
        row = repo.get_message(session, thread_id, message_id)
        if row is None:
            raise NotFound(f"No message found with id '{message_id}'.", param="message_id")
        return row

    def retrieve_message(self, caller: Caller, thread_id: str, message_id: str, version: Version) -> dict[str, Any]:
        with self.db.session() as session:
            return objects.message_object(self._message(session, caller, thread_id, message_id), version)

    def list_messages(self, caller: Caller, thread_id: str, page: PageRequest, run_id: str | None,
                      version: Version) -> Page:
        with self.db.session() as session:
            thread_of(session, caller, thread_id)
            rows, has_more = repo.list_messages(session, thread_id, page, run_id)
            return [objects.message_object(row, version) for row in rows], has_more

    def modify_message(self, caller: Caller, thread_id: str, message_id: str, body: ModifyMetadataRequest,
                       version: Version) -> dict[str, Any]:
        with self.db.session() as session:
            row = self._message(session, caller, thread_id, message_id)
            if "metadata" in body.model_fields_set:
                row.metadata_ = body.metadata
            session.flush()
            return objects.message_object(row, version)

    def delete_message(self, caller: Caller, thread_id: str, message_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            row = self._message(session, caller, thread_id, message_id)
            session.delete(row)
        return objects.deleted(message_id, "thread.message")

    # v1 message files

    def list_message_files(self, caller: Caller, thread_id: str, message_id: str, page: PageRequest) -> Page:
        with self.db.session() as session:
            row = self._message(session, caller, thread_id, message_id)
            items = [objects.message_file_object(row, file_id) for file_id in row.file_ids]
        return _page_of(items, page)

    def retrieve_message_file(self, caller: Caller, thread_id: str, message_id: str,
                              file_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            row = self._message(session, caller, thread_id, message_id)
            if file_id not in row.file_ids:
                raise NotFound(f"No file found with id '{file_id}' on message '{message_id}'.", param="file_id")
            return objects.message_file_object(row, file_id)


def _page_of(items: list[dict[str, Any]], page: PageRequest) -> Page:
    """A page of a short list held in memory (a message's files: at most 10), in the order they were
    attached."""
    ordered = items if page.order == "asc" else items[::-1]
    ids = [item["id"] for item in ordered]
    start, end = 0, len(ordered)
    for param, cursor in (("after", page.after), ("before", page.before)):
        if cursor is None:
            continue
        if cursor not in ids:
            raise InvalidRequest(f"Invalid '{param}': no object with id '{cursor}' in this listing.", param=param)
        if param == "after":
            start = ids.index(cursor) + 1
        else:
            end = ids.index(cursor)
    window = ordered[start:end]
    if page.before is not None and page.after is None:
        return window[-page.limit:], len(window) > page.limit
    return window[:page.limit], len(window) > page.limit
