"""Runs and run steps as the API sees them: create (on a thread, or with a new thread), list,
retrieve, modify, cancel, submit tool outputs.

A run is created queued, in one transaction with whatever it brings (a new
thread, additional messages) and with its ``assistants.run`` job, so it
exists exactly when its work is queued. A streamed create also writes the
run with the request as its driver and returns the events of driving it
(``execution.py``); its job is set to look at it only later, to take over
if the request's process dies.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from anyio import to_thread
from sqlalchemy.orm import Session

from hearth.assistants import code_interpreter, file_search, objects
from hearth.assistants.execution import ATTEMPTS, RUN, Event, RunExecutor, expire_if_due
from hearth.assistants.protocol import (
    CreateRunRequest,
    CreateThreadAndRunRequest,
    ModifyMetadataRequest,
    NamedToolChoice,
    SubmitToolOutputsRequest,
    Version,
)
from hearth.assistants.service import (
    check_tool_resources,
    check_tools,
    check_version_fields,
    new_message,
    new_thread,
    no_assistant,
    refuse_if_active,
    response_format_value,
    thread_of,
)
from hearth.caller import Caller
from hearth.errors import InvalidRequest, NotFound
from hearth.jobs import JobQueue
from hearth.models.service import ModelService
from hearth.settings import Settings
from hearth.store import assistants as repo
from hearth.store.db import Database
from hearth.store.ids import new_id, now
from hearth.store.pagination import PageRequest
from hearth.store.tables import RunRow, RunStepRow, ThreadRow

Page = tuple[list[dict[str, Any]], bool]
# What `include[]` may ask of run steps: the text of file search results.
STEP_INCLUDES = ("step_details.tool_calls[*].file_search.results[*].content",)


def _tool_choice(choice: Any, tools: list[dict[str, Any]]) -> Any:
    if choice is None or isinstance(choice, str):
        if choice == "required" and not tools:
            raise InvalidRequest("tool_choice 'required' needs at least one tool.", param="tool_choice")
        return choice
    assert isinstance(choice, NamedToolChoice)
    if choice.type == code_interpreter.TYPE:
        if not code_interpreter.enabled(tools):
            raise InvalidRequest("tool_choice names the 'code_interpreter' tool, which is not among the run's "
                                 "tools.", param="tool_choice")
        return {"type": code_interpreter.TYPE}
    if choice.type != "function":
        raise InvalidRequest(f"tool_choice names the '{choice.type}' tool, which is not available on this "
                             "server yet.", param="tool_choice.type", code="unsupported_tool")
    if choice.function is None:
        raise InvalidRequest("Missing required parameter: 'tool_choice.function'.", param="tool_choice.function")
    if choice.function.name not in {tool["function"]["name"] for tool in tools if tool["type"] == "function"}:
        raise InvalidRequest(f"tool_choice names the function '{choice.function.name}', which is not among "
                             "the run's tools.", param="tool_choice")
    return {"type": "function", "function": {"name": choice.function.name}}


class RunService:
    def __init__(self, db: Database, queue: JobQueue, models: ModelService, executor: RunExecutor,
                 settings: Settings) -> None:
        self.db = db
        self.queue = queue
        self.models = models
        self.executor = executor
        self.settings = settings

    # -- create -----------------------------------------------------------------------------

    def _new_run(self, session: Session, caller: Caller, thread: ThreadRow,
                 body: CreateRunRequest | CreateThreadAndRunRequest, version: Version, driver: str | None) -> RunRow:
        assistant = repo.get_assistant(session, caller.project_id, body.assistant_id)
        if assistant is None:
            raise no_assistant(body.assistant_id)
        model = body.model or assistant.model
        self.models.resolve(model, "chat")
        tools = check_tools(body.tools, version) if body.tools is not None else assistant.tools
        if code_interpreter.enabled(tools):
            code_interpreter.check_available("tools")
        instructions = body.instructions if body.instructions is not None else assistant.instructions or ""
        if isinstance(body, CreateRunRequest) and body.additional_instructions:
            instructions = f"{instructions}\n\n{body.additional_instructions}" if instructions \
                else body.additional_instructions
        truncation = body.truncation_strategy
        if truncation is not None and truncation.type == "last_messages" and truncation.last_messages is None:
            raise InvalidRequest("Missing required parameter: 'truncation_strategy.last_messages'.",
                                 param="truncation_strategy.last_messages")
        created = now()
        run = RunRow(
            id=repo.ordered_id("run_"), organization_id=caller.organization_id, project_id=caller.project_id,
            api_key_id=caller.api_key_id, thread_id=thread.id, assistant_id=assistant.id, created_at=created,
            status="queued", expires_at=created + self.settings.assistants_requires_action_seconds,
            model=model, instructions=instructions, tools=tools, file_ids=list(assistant.file_ids),
            metadata_=body.metadata,
            temperature=body.temperature if body.temperature is not None else assistant.temperature,
            top_p=body.top_p if body.top_p is not None else assistant.top_p,
            max_prompt_tokens=body.max_prompt_tokens, max_completion_tokens=body.max_completion_tokens,
            truncation_strategy=truncation.model_dump() if truncation else {"type": "auto", "last_messages": None},
            tool_choice=_tool_choice(body.tool_choice, tools) or "auto",
            parallel_tool_calls=body.parallel_tool_calls if body.parallel_tool_calls is not None else True,
            response_format=(response_format_value(body.response_format, version)
                             if body.response_format is not None else assistant.response_format) or "auto",
            driver=driver, heartbeat_at=time.time() if driver else None,
        )
        session.add(run)
        # A streamed run's job only watches over the request driving it: it looks once the
        # request could have gone silent. Any other run's job runs it now.
        self.queue.enqueue_in(session, RUN, {"run_id": run.id}, project_id=caller.project_id,
                              run_at=time.time() + self.executor.takeover_seconds if driver else None,
                              max_attempts=ATTEMPTS)
        return run

    def create(self, caller: Caller, thread_id: str, body: CreateRunRequest, version: Version,
               driver: str | None = None) -> dict[str, Any]:
        check_version_fields(body, version)
        with self.db.session() as session:
            thread = thread_of(session, caller, thread_id)
            refuse_if_active(session, thread_id)
            for index, message in enumerate(body.additional_messages or []):
                new_message(session, caller, thread_id, message, version, f"additional_messages[{index}]",
                            self.executor.file_search.stores if self.executor.file_search is not None else None)
            run = self._new_run(session, caller, thread, body, version, driver)
            session.flush()
            return objects.run_object(run, version)

    def create_thread_and_run(self, caller: Caller, body: CreateThreadAndRunRequest, version: Version,
                              driver: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        check_version_fields(body, version)
        with self.db.session() as session:
            stores = self.executor.file_search.stores if self.executor.file_search is not None else None
            thread = new_thread(session, caller, body.thread, version, "thread", stores=stores)
            if body.tool_resources is not None:
                thread.tool_resources = file_search.settle(session, caller, stores,
                                                           check_tool_resources(body.tool_resources))
            run = self._new_run(session, caller, thread, body, version, driver)
            session.flush()
            return objects.thread_object(thread, version), objects.run_object(run, version)

    async def stream(self, caller: Caller, thread_id: str, body: CreateRunRequest,
                     version: Version) -> AsyncIterator[Event]:
        """Create the run and drive it here; refusals raise before the first event."""
        driver = new_id("stream:")
        run = await to_thread.run_sync(self.create, caller, thread_id, body, version, driver)
        return self._streamed([("thread.run.created", run), ("thread.run.queued", run)], run["id"], driver,
                              version)

    async def stream_thread_and_run(self, caller: Caller, body: CreateThreadAndRunRequest,
                                    version: Version) -> AsyncIterator[Event]:
        driver = new_id("stream:")
        thread, run = await to_thread.run_sync(self.create_thread_and_run, caller, body, version, driver)
        return self._streamed([("thread.created", thread), ("thread.run.created", run), ("thread.run.queued", run)],
                              run["id"], driver, version)

    async def _streamed(self, first: list[Event], run_id: str, driver: str, version: Version
                        ) -> AsyncIterator[Event]:
        for event in first:
            yield event
        # Closed with this stream, so a client that leaves hands the run to its job at once.
        async with aclosing(self.executor.drive(run_id, driver, streaming=True, version=version)) as events:
            async for event in events:
                yield event

    # -- read, modify, cancel ------------------------------------------------------------------

    def _run(self, session: Session, caller: Caller, thread_id: str, run_id: str) -> RunRow:
        thread_of(session, caller, thread_id)
        run = repo.get_run(session, thread_id, run_id)
        if run is None:
            raise NotFound(f"No run found with id '{run_id}'.", param="run_id")
        expire_if_due(session, run)
        return run

    def retrieve(self, caller: Caller, thread_id: str, run_id: str, version: Version) -> dict[str, Any]:
        with self.db.session() as session:
            return objects.run_object(self._run(session, caller, thread_id, run_id), version)

    def list_runs(self, caller: Caller, thread_id: str, page: PageRequest, version: Version) -> Page:
        with self.db.session() as session:
            thread_of(session, caller, thread_id)
            rows, has_more = repo.list_runs(session, thread_id, page)
            for row in rows:
                expire_if_due(session, row)
            return [objects.run_object(row, version) for row in rows], has_more

    def modify(self, caller: Caller, thread_id: str, run_id: str, body: ModifyMetadataRequest,
               version: Version) -> dict[str, Any]:
        with self.db.session() as session:
            run = self._run(session, caller, thread_id, run_id)
            if "metadata" in body.model_fields_set:
                run.metadata_ = body.metadata
            session.flush()
            return objects.run_object(run, version)

    def cancel(self, caller: Caller, thread_id: str, run_id: str, version: Version) -> dict[str, Any]:
        """Ask the run to stop: it turns cancelling, then cancelled once whoever drives it has stopped
        (at once when nobody does)."""
        with self.db.session() as session:
            run = self._run(session, caller, thread_id, run_id)
            was = run.status
            if not repo.move_run(session, run_id, ["queued", "in_progress", "requires_action"],
                                 status="cancelling"):
                raise InvalidRequest(f"Cannot cancel run with status '{run.status}'.", param="run_id")
            if was == "requires_action":
                # Nobody drives a run that waits for the client: a job settles it now.
                self.queue.enqueue_in(session, RUN, {"run_id": run_id}, project_id=run.project_id,
                                      max_attempts=ATTEMPTS)
            session.refresh(run)
            return objects.run_object(run, version)

    # -- tool outputs ----------------------------------------------------------------------------

    def submit_tool_outputs(self, caller: Caller, thread_id: str, run_id: str, body: SubmitToolOutputsRequest,
                            version: Version, driver: str | None = None) -> dict[str, Any]:
        with self.db.session() as session:
            run = self._run(session, caller, thread_id, run_id)
            if run.status != "requires_action":
                raise InvalidRequest(f"Runs in status \"{run.status}\" do not accept tool outputs.",
                                     param="run_id")
            calls = [call["id"] for call in run.required_action["submit_tool_outputs"]["tool_calls"]]  # type: ignore[index]
            outputs: dict[str, str] = {}
            for index, output in enumerate(body.tool_outputs):
                if output.tool_call_id is None:
                    raise InvalidRequest(f"Missing required parameter: 'tool_outputs[{index}].tool_call_id'.",
                                         param=f"tool_outputs[{index}].tool_call_id")
                if output.tool_call_id not in calls:
                    raise InvalidRequest(f"No tool call found with id '{output.tool_call_id}' in this run's "
                                         "required action.", param=f"tool_outputs[{index}].tool_call_id")
                outputs[output.tool_call_id] = output.output or ""
            missing = [call for call in calls if call not in outputs]
            if missing:
                raise InvalidRequest(f"Expected tool outputs for call_ids {calls}, got {list(outputs)}; "
                                     f"missing {missing}.", param="tool_outputs")
            if not repo.move_run(session, run_id, ["requires_action"], status="queued", required_action=None,
                                 expires_at=now() + self.settings.assistants_requires_action_seconds,
                                 driver=driver, heartbeat_at=time.time() if driver else None):
                raise InvalidRequest("The run is no longer waiting for tool outputs.", param="run_id")
            stamp = now()
            for step in repo.steps_of_run(session, run_id, ["in_progress"]):
                if step.type == "tool_calls":
                    _answer(step, outputs, stamp)
            self.queue.enqueue_in(session, RUN, {"run_id": run_id}, project_id=run.project_id,
                                  run_at=time.time() + self.executor.takeover_seconds if driver else None,
                                  max_attempts=ATTEMPTS)
            session.flush()
            session.refresh(run)
            return objects.run_object(run, version)

    async def stream_tool_outputs(self, caller: Caller, thread_id: str, run_id: str,
                                  body: SubmitToolOutputsRequest, version: Version) -> AsyncIterator[Event]:
        driver = new_id("stream:")
        run = await to_thread.run_sync(self.submit_tool_outputs, caller, thread_id, run_id, body, version, driver)
        steps = await to_thread.run_sync(self._answered_steps, run_id, version)
        return self._streamed([*steps, ("thread.run.queued", run)], run_id, driver, version)

    def _answered_steps(self, run_id: str, version: Version) -> list[Event]:
        with self.db.session() as session:
            steps = [step for step in repo.steps_of_run(session, run_id, ["completed"]) if step.type == "tool_calls"]
            return [("thread.run.step.completed", objects.step_object(steps[-1], version))] if steps else []

    # -- steps -----------------------------------------------------------------------------------

    def list_steps(self, caller: Caller, thread_id: str, run_id: str, page: PageRequest,
                   include: list[str], version: Version) -> Page:
        _check_include(include)
        with self.db.session() as session:
            self._run(session, caller, thread_id, run_id)
            rows, has_more = repo.list_steps(session, run_id, page)
            return [objects.step_object(row, version, include_content=bool(include)) for row in rows], has_more

    def retrieve_step(self, caller: Caller, thread_id: str, run_id: str, step_id: str, include: list[str],
                      version: Version) -> dict[str, Any]:
        _check_include(include)
        with self.db.session() as session:
            self._run(session, caller, thread_id, run_id)
            step = repo.get_step(session, run_id, step_id)
            if step is None:
                raise NotFound(f"No run step found with id '{step_id}'.", param="step_id")
            return objects.step_object(step, version, include_content=bool(include))


def _answer(step: RunStepRow, outputs: dict[str, str], stamp: int) -> None:
    calls = step.step_details.get("tool_calls") or []
    step.step_details = {"type": "tool_calls", "tool_calls": [
        {**call, "function": {**call["function"], "output": outputs.get(call["id"], "")}}
        if call.get("type") == "function" else call for call in calls]}
    step.status, step.completed_at = "completed", stamp


def _check_include(include: list[str]) -> None:
    for index, value in enumerate(include):
        if value not in STEP_INCLUDES:
            raise InvalidRequest(f"Invalid value for 'include[{index}]': '{value}'; supported values are "
                                 f"{list(STEP_INCLUDES)}.", param="include")
