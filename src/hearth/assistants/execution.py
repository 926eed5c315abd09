"""Running a run: one turn of the chat model at a time, every change of state persisted.

``RunExecutor.drive`` takes a run from queued (or from where a dead driver
left it) to its next resting status: requires_action (the model called
functions), completed, incomplete (max tokens), failed or cancelled. It
yields the API's stream events as it goes, and writes each change (run
status, steps, messages, usage) before yielding it, so what a client sees
streamed is what a later retrieve returns.

Two callers drive runs, with the same code:

- a streaming request (``stream=true``) drives its run itself, so tokens
  reach the client as the model makes them (the chat service's stream);
- the ``assistants.run`` job drives every other run (the chat service's
  whole answer, in the background lane), and is also the recovery path.

A run names its driver (``driver``) and the driver beats a heartbeat. The
job of a streamed run is enqueued to look at it later: if the stream's
driver is still beating it looks again later still; if it went silent (its
process died) the job takes the run over and drives it from the top of the
current turn. A driver that stops short of a resting status (a client that
disconnected) hands the run to a job at once. Every write a driver makes is
conditional on still being the run's driver, so two never both write a turn.

``assistants.expire`` ends a run still waiting for tool outputs when its
window closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from anyio import to_thread
from sqlalchemy.orm import Session

from hearth.assistants import code_interpreter, file_search, objects
from hearth.assistants.code_interpreter import CodeInterpreter
from hearth.assistants.file_search import FileSearch
from hearth.assistants.prompt import chat_request, timeline
from hearth.assistants.protocol import Version
from hearth.caller import Caller
from hearth.chat.service import ChatService
from hearth.errors import APIError, InvalidRequest, RateLimited
from hearth.jobs import JobContext, JobQueue
from hearth.jobs.worker import Handler
from hearth.settings import Settings
from hearth.store import assistants as repo
from hearth.store.db import Database
from hearth.store.ids import now
from hearth.store.tables import RunRow, RunStepRow, ThreadMessageRow

log = logging.getLogger("hearth.assistants")

RUN = "assistants.run"
EXPIRE = "assistants.expire"
ENDPOINT = "/v1/threads/runs"
# A run whose job was interrupted this many times is failed instead of tried again.
ATTEMPTS = 3
RESTING = ("requires_action", "cancelled", "failed", "completed", "incomplete", "expired")
FINAL = ("cancelled", "failed", "completed", "incomplete", "expired")
# How often a streaming driver looks for a cancel between tokens.
_CANCEL_CHECK_SECONDS = 0.5

Event = tuple[str, dict[str, Any]]


def caller_of(run: RunRow) -> Caller:
    return Caller(run.organization_id, run.project_id, run.api_key_id)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _added(total: dict[str, int] | None, more: dict[str, int]) -> dict[str, int]:
    total = total or _usage(0, 0)
    return _usage(total["prompt_tokens"] + more["prompt_tokens"],
                  total["completion_tokens"] + more["completion_tokens"])


def last_error_of(exc: APIError) -> dict[str, str]:
    if isinstance(exc, RateLimited):
        return {"code": "rate_limit_exceeded", "message": exc.message}
    if isinstance(exc, InvalidRequest) or exc.status_code == 404:
        return {"code": "invalid_prompt", "message": exc.message}
    return {"code": "server_error", "message": exc.message}


# -- what the model says, whichever way it was asked -----------------------------------------


@dataclass
class _Text:
    value: str


@dataclass
class _Call:
    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass
class _Finish:
    reason: str


@dataclass
class _Usage:
    prompt_tokens: int
    completion_tokens: int


Piece = _Text | _Call | _Finish | _Usage


class _Stop(Exception):
    """This driver no longer drives the run (cancelled, or another driver took it)."""


class _Incomplete(Exception):
    """The run's token budget is spent before the turn could start."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Turn:
    """What one turn has made so far."""

    message: ThreadMessageRow | None = None
    message_step: RunStepRow | None = None
    text: str = ""
    tool_step: RunStepRow | None = None
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish: str | None = None
    usage: dict[str, int] = field(default_factory=lambda: _usage(0, 0))
    # Images the run's code made so far: image_file parts of the answer.
    images: list[str] = field(default_factory=list)


class RunExecutor:
    def __init__(self, db: Database, queue: JobQueue, chat: ChatService, settings: Settings,
                 code: CodeInterpreter | None = None, file_search: FileSearch | None = None) -> None:
        self.db = db
        # Runs the file_search / retrieval tools' searches (None: a run with them fails with a clear error).
        self.file_search = file_search
        self.queue = queue
        self.chat = chat
        # Runs the code_interpreter tool's calls (None: a run with that tool fails with a clear error).
        self.code = code
        # A driver silent this long is presumed dead; its run's job takes over.
        self.takeover_seconds = settings.job_lease_seconds
        self.window_seconds = settings.assistants_requires_action_seconds

    def handlers(self) -> dict[str, Handler]:
        return {RUN: self.run_job, EXPIRE: self.expire_job}

    # -- jobs -------------------------------------------------------------------------------

    async def run_job(self, ctx: JobContext) -> None:
        run_id = ctx.payload["run_id"]
        token = f"job:{ctx.job_id}"
        if await to_thread.run_sync(self._claim_for_job, run_id, token, ctx.attempt):
            async for _ in self.drive(run_id, token, streaming=False):
                pass

    def _claim_for_job(self, run_id: str, token: str, attempt: int) -> bool:
        with self.db.session() as session:
            run = repo.run_by_id(session, run_id)
            if run is None or run.status in RESTING:
                return False
            if run.status == "cancelling":
                self._settle_cancelled(session, run)
                return False
            beat = run.heartbeat_at or 0.0
            if run.driver not in (None, token) and time.time() - beat < self.takeover_seconds:
                # A streaming request is driving it: look again once its heartbeat could be stale.
                self.queue.enqueue_in(session, RUN, {"run_id": run_id}, project_id=run.project_id,
                                      run_at=beat + self.takeover_seconds, max_attempts=ATTEMPTS)
                return False
            if not repo.take_over(session, run_id, run.driver, token, time.time()):
                return False
            if attempt >= ATTEMPTS:
                self._fail(session, run, token, {
                    "code": "server_error",
                    "message": f"The run was interrupted {attempt - 1} times while the server restarted "
                               "or lost its worker, and was stopped. Create a new run to try again."})
                return False
            return True

    async def expire_job(self, ctx: JobContext) -> None:
        await to_thread.run_sync(self.expire_if_due, ctx.payload["run_id"])

    def expire_if_due(self, run_id: str) -> bool:
        with self.db.session() as session:
            run = repo.run_by_id(session, run_id)
            return run is not None and expire_if_due(session, run)

    # -- driving ----------------------------------------------------------------------------

    async def drive(self, run_id: str, token: str, *, streaming: bool, version: Version = "v2"
                    ) -> AsyncGenerator[Event]:
        """Take the run to its next resting status, yielding each event once it is stored."""
        beating = asyncio.create_task(self._beat(run_id, token))
        rested = False
        try:
            async with aclosing(self._drive(run_id, token, streaming, version)) as events:
                async for event in events:
                    yield event
            rested = True
        finally:
            beating.cancel()
            if not rested and streaming:
                await to_thread.run_sync(self._hand_to_job, run_id, token)

    async def _drive(self, run_id: str, token: str, streaming: bool, version: Version) -> AsyncGenerator[Event]:
        run = await to_thread.run_sync(self._load, run_id)
        if run is None or run.driver != token:
            return
        if run.status == "cancelling":
            for event in await to_thread.run_sync(self._cancel_now, run_id, version):
                yield event
            return
        if run.status == "queued":
            started = await to_thread.run_sync(self._start, run, token)
            if started is None:  # cancelled before it started, or taken by another driver
                for event in await to_thread.run_sync(self._cancel_now, run_id, version):
                    yield event
                return
            run = started
            yield "thread.run.in_progress", objects.run_object(run, version)
        elif run.status == "in_progress":
            await to_thread.run_sync(self._discard_unfinished, run, token)
        else:
            return
        turn = _Turn()
        try:
            async with aclosing(self._search(run, token, version)) as searched:
                async for event in searched:
                    yield event
            while True:
                async with aclosing(self._generate(run, token, turn, streaming, version)) as generated:
                    async for event in generated:
                        yield event
                if not _code_calls(turn) or turn.finish == "length":
                    break
                # The model wrote code: run it, record it, and let the model read what it printed.
                async with aclosing(self._run_code(run, token, turn, version)) as ran:
                    async for event in ran:
                        yield event
                if _function_calls(turn):
                    break
                run = await to_thread.run_sync(self._load_run, run.id)
                turn = _Turn(images=turn.images)
            for event in await to_thread.run_sync(self._conclude, run, token, turn, version):
                yield event
        except _Stop:
            for event in await to_thread.run_sync(self._cancel_now, run_id, version):
                yield event
        except _Incomplete as short:
            for event in await to_thread.run_sync(self._end_incomplete, run, token, short.reason, version):
                yield event
        except APIError as exc:
            for event in await to_thread.run_sync(self._fail_turn, run, token, last_error_of(exc), version):
                yield event
        except Exception:
            log.exception("run %s failed", run_id)
            error = {"code": "server_error", "message": "The server had an error while running the model."}
            for event in await to_thread.run_sync(self._fail_turn, run, token, error, version):
                yield event

    async def _generate(self, run: RunRow, token: str, turn: _Turn, streaming: bool,
                        version: Version) -> AsyncGenerator[Event]:
        checked = time.monotonic()
        async with aclosing(self._pieces(run, streaming)) as pieces:
            async for piece in pieces:
                if isinstance(piece, _Text):
                    if turn.message is None:
                        for event in await to_thread.run_sync(self._open_message, run, token, turn, version):
                            yield event
                    turn.text += piece.value
                    assert turn.message is not None
                    yield "thread.message.delta", {"id": turn.message.id, "object": "thread.message.delta",
                                                   "delta": {"content": [{"index": 0, "type": "text", "text": {
                                                       "value": piece.value, "annotations": []}}]}}
                elif isinstance(piece, _Call):
                    if turn.tool_step is None:
                        for event in await to_thread.run_sync(self._open_tool_step, run, token, turn, version):
                            yield event
                    assert turn.tool_step is not None
                    delta = self._call_delta(turn, piece, code_interpreter.enabled(run.tools))
                    if delta is not None:
                        yield "thread.run.step.delta", delta
                elif isinstance(piece, _Finish):
                    turn.finish = piece.reason
                else:
                    turn.usage = _usage(piece.prompt_tokens, piece.completion_tokens)
                if streaming and time.monotonic() - checked > _CANCEL_CHECK_SECONDS:
                    checked = time.monotonic()
                    if not await to_thread.run_sync(self._still_driving, run.id, token):
                        raise _Stop
        if not await to_thread.run_sync(self._still_driving, run.id, token):
            raise _Stop

    @staticmethod
    def _call_delta(turn: _Turn, piece: _Call, code_enabled: bool = False) -> dict[str, Any] | None:
        assert turn.tool_step is not None
        call = turn.calls.setdefault(piece.index, {"id": None, "name": "", "arguments": ""})
        if code_enabled and (call.get("code") or (piece.name == code_interpreter.FUNCTION and not call["name"])):
            # The code interpreter's call: its input and outputs are sent whole once it has run.
            first = not call.get("code")
            call.update(code=True, name=code_interpreter.FUNCTION)
            call["id"] = call["id"] or piece.id or f"call_{repo.ordered_id('')[-20:]}"
            call["arguments"] += piece.arguments
            if not first:
                return None
            code_delta = {"index": piece.index, "id": call["id"], "type": code_interpreter.TYPE,
                          code_interpreter.TYPE: {"input": "", "outputs": []}}
            return {"id": turn.tool_step.id, "object": "thread.run.step.delta",
                    "delta": {"step_details": {"type": "tool_calls", "tool_calls": [code_delta]}}}
        delta: dict[str, Any] = {"index": piece.index, "type": "function", "function": {"arguments": piece.arguments}}
        if call["id"] is None:
            call["id"] = piece.id or f"call_{repo.ordered_id('')[-20:]}"
            delta["id"] = call["id"]
        if piece.name and not call["name"]:
            call["name"] = piece.name
            delta["function"]["name"] = piece.name
        call["arguments"] += piece.arguments
        return {"id": turn.tool_step.id, "object": "thread.run.step.delta",
                "delta": {"step_details": {"type": "tool_calls", "tool_calls": [delta]}}}

    async def _pieces(self, run: RunRow, streaming: bool) -> AsyncGenerator[Piece]:
        """The model's answer to the run's next turn: streamed token by token, or whole.

        With ``truncation_strategy: auto`` a thread too long for the model's
        context loses its oldest messages until it fits.
        """
        items = await to_thread.run_sync(self._timeline, run)
        items, completion_budget = await self._fit(run, items)
        code_files: list[str] = []
        if code_interpreter.enabled(run.tools) and self.code is not None:
            code_files = await to_thread.run_sync(self.code.file_names, run)
        knowledge = None
        if file_search.enabled(run.tools):
            sources = await to_thread.run_sync(self._sources, run)
            knowledge = FileSearch.instructions(sources) if sources is not None else None
        while True:
            body = chat_request(run, items, stream=streaming, max_completion_tokens=completion_budget,
                                code_files=code_files, knowledge=knowledge)
            try:
                if streaming:
                    chunks = await self.chat.stream(caller_of(run), body, endpoint=ENDPOINT)
                else:
                    completion = await self.chat.create(caller_of(run), body, background=True, endpoint=ENDPOINT,
                                                        batch=False)
            except InvalidRequest as exc:
                if exc.code == "context_length_exceeded" and _auto_truncation(run) and len(items) > 1:
                    items = items[1:]
                    continue
                raise
            break
        if not streaming:
            choice = completion.choices[0]
            if choice.message.content:
                yield _Text(choice.message.content)
            for index, tool_call in enumerate(choice.message.tool_calls or []):
                yield _Call(index, tool_call.id, tool_call.function.name, tool_call.function.arguments)
            yield _Finish(choice.finish_reason)
            yield _Usage(completion.usage.prompt_tokens, completion.usage.completion_tokens)
            return
        async with aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                if chunk.usage is not None:
                    yield _Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for streamed in chunk.choices[:1] if chunk.choices and chunk.choices[0].index == 0 else []:
                    if streamed.delta.content:
                        yield _Text(streamed.delta.content)
                    for call in streamed.delta.tool_calls or []:
                        function = call.function
                        yield _Call(call.index, call.id, function.name if function else None,
                                    (function.arguments if function else None) or "")
                    if streamed.finish_reason:
                        yield _Finish(streamed.finish_reason)

    async def _fit(self, run: RunRow, items: list[Any]) -> tuple[list[Any], int | None]:
        """The turn's items and completion limit within the run's token budgets (``max_prompt_tokens``
        and ``max_completion_tokens`` count over the whole run, every turn together).

        Prompt tokens are counted with the model's tokenizer, plus a few a message for the chat
        template; ``truncation_strategy: auto`` drops the oldest items until the prompt fits.
        """
        used = run.usage or _usage(0, 0)
        completion_budget = None
        if run.max_completion_tokens is not None:
            completion_budget = run.max_completion_tokens - used["completion_tokens"]
            if completion_budget <= 0:
                raise _Incomplete("max_completion_tokens")
        if run.max_prompt_tokens is None:
            return items, completion_budget
        budget = run.max_prompt_tokens - used["prompt_tokens"]
        engine = (await self.chat.models.load(run.model, "chat")).engine
        fixed, counts = await to_thread.run_sync(_token_counts, engine, run, items)
        while fixed + sum(counts) > budget and len(items) > 1 and _auto_truncation(run):
            items, counts = items[1:], counts[1:]
        if fixed + sum(counts) > budget:
            raise _Incomplete("max_prompt_tokens")
        return items, completion_budget

    # -- each change, stored (these run in threads) -------------------------------------------

    def _load(self, run_id: str) -> RunRow | None:
        with self.db.session() as session:
            return repo.run_by_id(session, run_id)

    # -- file search ------------------------------------------------------------------------

    async def _search(self, run: RunRow, token: str, version: Version) -> AsyncGenerator[Event]:
        """Search the run's files for the user's latest message once, as a completed tool_calls step."""
        tool = file_search.enabled(run.tools)
        if tool is None or await to_thread.run_sync(self._sources, run) is not None:
            return
        if self.file_search is None:
            raise APIError("File search is not available in this process.", status_code=500)
        step = await to_thread.run_sync(self._open_search_step, run, token)
        body = objects.step_object(step, version)
        yield "thread.run.step.created", body
        yield "thread.run.step.in_progress", body
        call = await self.file_search.search(run, tool)
        yield "thread.run.step.completed", await to_thread.run_sync(self._close_search_step, run, token, step.id,
                                                                    call, version)

    def _open_search_step(self, run: RunRow, token: str) -> RunStepRow:
        with self.db.session() as session:
            self._guarded(session, run, token)
            step = self._new_step(run, "tool_calls", {"type": "tool_calls", "tool_calls": []})
            session.add(step)
        return step

    def _close_search_step(self, run: RunRow, token: str, step_id: str, call: dict[str, Any] | None,
                           version: Version) -> dict[str, Any]:
        with self.db.session() as session:
            self._guarded(session, run, token)
            step = session.get_one(RunStepRow, step_id)
            step.step_details = {"type": "tool_calls", "tool_calls": [call] if call else []}
            step.status, step.completed_at = "completed", now()
            session.flush()
            return objects.step_object(step, version)

    def _sources(self, run: RunRow) -> list[file_search.Source] | None:
        with self.db.session() as session:
            return file_search.run_sources(session, run)

    def _load_run(self, run_id: str) -> RunRow:
        run = self._load(run_id)
        if run is None:
            raise _Stop
        return run

    # -- the code interpreter ---------------------------------------------------------------

    async def _run_code(self, run: RunRow, token: str, turn: _Turn, version: Version) -> AsyncGenerator[Event]:
        """Run the turn's code_interpreter calls, each recorded in the turn's step with its outputs; with no
        function calls beside them the step completes and the run goes on to its next turn."""
        assert turn.tool_step is not None
        if self.code is None:
            raise APIError("The code interpreter is not available in this process.", status_code=500)
        first = await to_thread.run_sync(self._first_code_of_run, run.id)
        for index in sorted(turn.calls):
            call = turn.calls[index]
            if not call.get("code") or call.get("record"):
                continue
            executed = await self.code.execute(run, call["id"], call["arguments"], first_of_run=first)
            first = False
            call["record"] = executed.call
            turn.images += executed.image_file_ids
            details = executed.call[code_interpreter.TYPE]
            yield "thread.run.step.delta", {
                "id": turn.tool_step.id, "object": "thread.run.step.delta",
                "delta": {"step_details": {"type": "tool_calls", "tool_calls": [{
                    "index": index, "id": call["id"], "type": code_interpreter.TYPE,
                    code_interpreter.TYPE: {"input": details["input"], "outputs": [
                        {"index": position, **output} for position, output in enumerate(details["outputs"])]}}]}}}
        if not _function_calls(turn):
            for event in await to_thread.run_sync(self._complete_code_step, run, token, turn, version):
                yield event

    def _first_code_of_run(self, run_id: str) -> bool:
        with self.db.session() as session:
            return not any(call.get("type") == code_interpreter.TYPE
                           for step in repo.steps_of_run(session, run_id, ["completed"])
                           for call in step.step_details.get("tool_calls") or [])

    def _complete_code_step(self, run: RunRow, token: str, turn: _Turn, version: Version) -> list[Event]:
        assert turn.tool_step is not None
        stamp = now()
        with self.db.session() as session:
            self._guarded(session, run, token)
            step = session.get_one(RunStepRow, turn.tool_step.id)
            step.step_details = {"type": "tool_calls",
                                 "tool_calls": [turn.calls[index]["record"] for index in sorted(turn.calls)]}
            step.status, step.completed_at, step.usage = "completed", stamp, turn.usage
            current = session.get_one(RunRow, run.id)
            current.usage = _added(current.usage, turn.usage)
            session.flush()
            body = objects.step_object(step, version)
        turn.tool_step = None
        return [("thread.run.step.completed", body)]

    def _timeline(self, run: RunRow) -> list[Any]:
        with self.db.session() as session:
            return timeline(run, repo.thread_messages(session, run.thread_id),
                            repo.tool_steps_of_thread(session, run.thread_id))

    def _still_driving(self, run_id: str, token: str) -> bool:
        with self.db.session() as session:
            run = repo.run_by_id(session, run_id)
            return run is not None and run.driver == token and run.status == "in_progress"

    def _start(self, run: RunRow, token: str) -> RunRow | None:
        with self.db.session() as session:
            if not repo.move_run(session, run.id, ["queued"], by=token, status="in_progress",
                                 started_at=now()):
                return None
            return repo.run_by_id(session, run.id)

    def _discard_unfinished(self, run: RunRow, token: str) -> None:
        """A driver died mid-turn: what it left half-made is dropped, and the turn starts again."""
        with self.db.session() as session:
            for step in repo.steps_of_run(session, run.id, ["in_progress"]):
                session.delete(step)
            for message in repo.run_messages(session, run.id, ["in_progress"]):
                session.delete(message)

    def _new_step(self, run: RunRow, kind: str, details: dict[str, Any]) -> RunStepRow:
        return RunStepRow(id=repo.ordered_id("step_"), run_id=run.id, thread_id=run.thread_id,
                          assistant_id=run.assistant_id, project_id=run.project_id, created_at=now(), type=kind,
                          status="in_progress", step_details=details)

    def _guarded(self, session: Session, run: RunRow, token: str) -> None:
        current = repo.run_by_id(session, run.id)
        if current is None or current.driver != token or current.status != "in_progress":
            raise _Stop

    def _open_message(self, run: RunRow, token: str, turn: _Turn, version: Version) -> list[Event]:
        with self.db.session() as session:
            self._guarded(session, run, token)
            message = ThreadMessageRow(
                id=repo.ordered_id("msg_"), thread_id=run.thread_id, project_id=run.project_id, created_at=now(),
                role="assistant", content=[], status="in_progress", assistant_id=run.assistant_id, run_id=run.id,
                attachments=[], file_ids=[], metadata_={})
            step = self._new_step(run, "message_creation",
                                  {"type": "message_creation", "message_creation": {"message_id": message.id}})
            session.add_all([message, step])
        turn.message, turn.message_step = message, step
        step_body, message_body = objects.step_object(step, version), objects.message_object(message, version)
        return [("thread.run.step.created", step_body), ("thread.run.step.in_progress", step_body),
                ("thread.message.created", message_body), ("thread.message.in_progress", message_body)]

    def _open_tool_step(self, run: RunRow, token: str, turn: _Turn, version: Version) -> list[Event]:
        events = self._close_message(run, token, turn, version, usage=_usage(0, 0)) if turn.message else []
        with self.db.session() as session:
            self._guarded(session, run, token)
            step = self._new_step(run, "tool_calls", {"type": "tool_calls", "tool_calls": []})
            session.add(step)
        turn.tool_step = step
        body = objects.step_object(step, version)
        return [*events, ("thread.run.step.created", body), ("thread.run.step.in_progress", body)]

    def _close_message(self, run: RunRow, token: str, turn: _Turn, version: Version,
                       usage: dict[str, int], incomplete: bool = False) -> list[Event]:
        """Finish the turn's message and its step (the message incomplete when cut at max tokens)."""
        assert turn.message is not None and turn.message_step is not None
        stamp = now()
        with self.db.session() as session:
            self._guarded(session, run, token)
            message = session.get_one(ThreadMessageRow, turn.message.id)
            sources = file_search.run_sources(session, run) if file_search.enabled(run.tools) else None
            text, annotations = FileSearch.cite(turn.text, sources) if sources else (turn.text, [])
            message.content = [{"type": "text", "text": {"value": text, "annotations": annotations}},
                               *({"type": "image_file", "image_file": {"file_id": file_id}}
                                 for file_id in turn.images)]
            if incomplete:
                message.status, message.incomplete_at = "incomplete", stamp
                message.incomplete_details = {"reason": "max_tokens"}
            else:
                message.status, message.completed_at = "completed", stamp
            step = session.get_one(RunStepRow, turn.message_step.id)
            step.status, step.completed_at, step.usage = "completed", stamp, usage
            session.flush()
            message_body, step_body = objects.message_object(message, version), objects.step_object(step, version)
        turn.message = None
        # Citations: what the text gained (a marker) and the annotations, as a last delta before the end.
        cited = [file_search.citation_delta(message.id, turn.text, text, annotations)] if annotations else []
        return [*cited, ("thread.message.incomplete" if incomplete else "thread.message.completed", message_body),
                ("thread.run.step.completed", step_body)]

    def _conclude(self, run: RunRow, token: str, turn: _Turn, version: Version) -> list[Event]:
        """End the turn: requires_action if the model called functions, else completed or incomplete."""
        if turn.calls and turn.finish == "length":
            # A call cut off mid-arguments cannot be made.
            return self._end_incomplete(run, token, "max_completion_tokens", version, usage=turn.usage)
        if turn.calls:
            return self._require_action(run, token, turn, version)
        events = []
        if turn.message is None:
            # The model said nothing: the turn still ends with its (empty) message.
            events += self._open_message(run, token, turn, version)
        cut = turn.finish == "length"
        events += self._close_message(run, token, turn, version, usage=turn.usage, incomplete=cut)
        stamp = now()
        with self.db.session() as session:
            current = session.get_one(RunRow, run.id)
            values: dict[str, Any] = {"usage": _added(current.usage, turn.usage), "driver": None,
                                      "expires_at": None}
            if cut:
                values.update(status="incomplete", incomplete_details={"reason": "max_completion_tokens"})
            else:
                values.update(status="completed", completed_at=stamp)
            if not repo.move_run(session, run.id, ["in_progress"], by=token, **values):
                raise _Stop
            session.refresh(current)
            body = objects.run_object(current, version)
        return [*events, (f"thread.run.{body['status']}", body)]

    def _require_action(self, run: RunRow, token: str, turn: _Turn, version: Version) -> list[Event]:
        assert turn.tool_step is not None
        calls, recorded = [], []
        for index in sorted(turn.calls):
            call = turn.calls[index]
            if call.get("record"):
                recorded.append(call["record"])  # a code_interpreter call, already run
                continue
            try:
                json.loads(call["arguments"] or "{}")
            except ValueError:
                raise APIError(f"The model called '{call['name']}' with arguments that are not valid JSON.",
                               status_code=500) from None
            calls.append({"id": call["id"], "type": "function",
                          "function": {"name": call["name"], "arguments": call["arguments"] or "{}"}})
        stamp = now()
        expires_at = stamp + self.window_seconds
        with self.db.session() as session:
            self._guarded(session, run, token)
            step = session.get_one(RunStepRow, turn.tool_step.id)
            step.step_details = {"type": "tool_calls", "tool_calls": [*recorded, *(
                {**call, "function": {**call["function"], "output": None}} for call in calls)]}
            step.usage = turn.usage
            current = session.get_one(RunRow, run.id)
            required = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": calls}}
            if not repo.move_run(session, run.id, ["in_progress"], by=token, status="requires_action",
                                 required_action=required, expires_at=expires_at, driver=None,
                                 usage=_added(current.usage, turn.usage)):
                raise _Stop
            self.queue.enqueue_in(session, EXPIRE, {"run_id": run.id}, project_id=run.project_id,
                                  run_at=float(expires_at), max_attempts=ATTEMPTS)
            session.refresh(current)
            body = objects.run_object(current, version)
        return [("thread.run.requires_action", body)]

    def _end_incomplete(self, run: RunRow, token: str, reason: str, version: Version,
                        usage: dict[str, int] | None = None) -> list[Event]:
        """End the run incomplete: its token budget ran out before or during a turn."""
        stamp = now()
        with self.db.session() as session:
            current = session.get_one(RunRow, run.id)
            total = _added(current.usage, usage) if usage else current.usage
            if not repo.move_run(session, run.id, ["in_progress"], by=token, status="incomplete",
                                 incomplete_details={"reason": reason}, driver=None, expires_at=None, usage=total):
                return []
            _end_steps(session, run.id, "failed", stamp, {
                "code": "server_error", "message": f"The model's output was cut off by the run's {reason}."})
            for message in repo.run_messages(session, run.id, ["in_progress"]):
                message.status, message.incomplete_at = "incomplete", stamp
                message.incomplete_details = {"reason": "max_tokens"}
            session.refresh(current)
            return [("thread.run.incomplete", objects.run_object(current, version))]

    def _fail_turn(self, run: RunRow, token: str, error: dict[str, str], version: Version) -> list[Event]:
        with self.db.session() as session:
            current = repo.run_by_id(session, run.id)
            if current is None or not self._fail(session, current, token, error):
                return []
            session.refresh(current)
            return [("thread.run.failed", objects.run_object(current, version))]

    def _fail(self, session: Session, run: RunRow, token: str, error: dict[str, str]) -> bool:
        stamp = now()
        if not repo.move_run(session, run.id, ["queued", "in_progress"], by=token, status="failed",
                             failed_at=stamp, last_error=error, driver=None, expires_at=None):
            return False
        _end_steps(session, run.id, "failed", stamp, error)
        _end_messages(session, run.id, "run_failed", stamp)
        session.flush()
        return True

    def _cancel_now(self, run_id: str, version: Version) -> list[Event]:
        with self.db.session() as session:
            run = repo.run_by_id(session, run_id)
            if run is None or not self._settle_cancelled(session, run):
                return []
            session.refresh(run)
            return [("thread.run.cancelled", objects.run_object(run, version))]

    @staticmethod
    def _settle_cancelled(session: Session, run: RunRow) -> bool:
        stamp = now()
        if not repo.move_run(session, run.id, ["cancelling"], status="cancelled", cancelled_at=stamp,
                             required_action=None, expires_at=None, driver=None):
            return False
        _end_steps(session, run.id, "cancelled", stamp)
        _end_messages(session, run.id, "run_cancelled", stamp)
        return True

    def _hand_to_job(self, run_id: str, token: str) -> None:
        """A streaming driver stopped short (its client went away): a job finishes the run now."""
        with self.db.session() as session:
            run = repo.run_by_id(session, run_id)
            if run is None or run.status in RESTING or not repo.take_over(session, run_id, token, None, 0.0):
                return
            self.queue.enqueue_in(session, RUN, {"run_id": run_id}, project_id=run.project_id,
                                  max_attempts=ATTEMPTS)

    async def _beat(self, run_id: str, token: str) -> None:
        while True:
            await asyncio.sleep(self.takeover_seconds / 4)
            try:
                await to_thread.run_sync(self._beat_once, run_id, token)
            except Exception:
                log.warning("heartbeat of run %s failed; retrying", run_id, exc_info=True)

    def _beat_once(self, run_id: str, token: str) -> None:
        with self.db.session() as session:
            repo.heartbeat(session, run_id, token, time.time())


# What a chat template adds around each message, roughly: role markers and separators.
_MESSAGE_OVERHEAD = 4


def _token_counts(engine: Any, run: RunRow, items: list[Any]) -> tuple[int, list[int]]:
    """Tokens of the instructions (and tools), and of each item, by the model's tokenizer."""
    def count(text: str) -> int:
        return len(engine.tokenize(text)) + _MESSAGE_OVERHEAD if text else _MESSAGE_OVERHEAD

    fixed = count(run.instructions) + (count(json.dumps(run.tools)) if run.tools else 0)
    counts = []
    for item in items:
        if isinstance(item, RunStepRow):
            counts.append(sum(count(tool_call["function"]["arguments"]) + count(output)
                              for tool_call, output in map(_as_chat_call, item.step_details.get("tool_calls") or [])))
        else:
            counts.append(count("\n".join(part["text"]["value"] for part in item.content
                                          if part.get("type") == "text")))
    return fixed, counts


def _as_chat_call(call: dict[str, Any]) -> tuple[dict[str, Any], str]:
    if call.get("type") == code_interpreter.TYPE:
        return code_interpreter.call_messages(call)
    if call.get("type") in file_search.TYPES:
        # The search's passages are counted with the instructions they join; the call itself adds nothing.
        return {"function": {"arguments": ""}}, ""
    return call, call["function"].get("output") or ""


def _code_calls(turn: _Turn) -> bool:
    return any(call.get("code") for call in turn.calls.values())


def _function_calls(turn: _Turn) -> bool:
    return any(not call.get("code") for call in turn.calls.values())


def _auto_truncation(run: RunRow) -> bool:
    return (run.truncation_strategy or {}).get("type", "auto") == "auto"


def _end_steps(session: Session, run_id: str, status: str, stamp: int,
               error: dict[str, str] | None = None) -> None:
    for step in repo.steps_of_run(session, run_id, ["in_progress"]):
        step.status = status
        setattr(step, f"{status}_at", stamp)
        if error is not None:
            step.last_error = {"code": "rate_limit_exceeded" if error["code"] == "rate_limit_exceeded"
                               else "server_error", "message": error["message"]}


def _end_messages(session: Session, run_id: str, reason: str, stamp: int) -> None:
    for message in repo.run_messages(session, run_id, ["in_progress"]):
        message.status, message.incomplete_at = "incomplete", stamp
        message.incomplete_details = {"reason": reason}


def expire_if_due(session: Session, run: RunRow) -> bool:
    """Expire a run whose window for tool outputs has closed; True if this call did."""
    stamp = now()
    if run.status != "requires_action" or run.expires_at is None or run.expires_at > stamp:
        return False
    if not repo.move_run(session, run.id, ["requires_action"], status="expired", required_action=None,
                         driver=None):
        return False
    _end_steps(session, run.id, "expired", stamp)
    session.refresh(run)
    return True
