"""The jobs that carry a batch from its input file to its output files.

- ``batch.validate`` checks the input file and splits it into chunks
  (``lines.py``); then, in one transaction, the batch goes in_progress with
  one ``batch.lines`` job per chunk, or fails with its errors.
- ``batch.lines`` runs one chunk's lines, a few at a time, each through its
  endpoint's service as the batch's creator (embedding lines sixteen to a
  call, which the service answers with one engine call), recording the
  answers as they come; a re-run (its worker died) skips the lines already
  answered. After each answer it looks at the batch: once cancelling or past
  its window, it starts no more. A re-run after a worker died goes one line
  at a time, naming each in the job's progress first, and records a line
  that took its worker down twice as a server error instead of running it
  again. Then it marks its chunk done, and the chunk that leaves none undone
  moves the batch to finalizing and enqueues ``batch.finalize`` in the same
  transaction, so exactly one chunk does.
- ``batch.finalize`` writes the output file (lines answered well) and the
  error file (lines refused or failed, and for an expired batch every line
  never run), each in input order, then sets the final status. A file is
  named on the batch in the transaction that makes it visible, so a re-run
  after a crash writes only what is still missing.

Every database and blob call runs in a thread; the loop only awaits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import suppress
from typing import Any

from anyio import to_thread
from pydantic import BaseModel
from sqlalchemy.orm import Session

from hearth.batches.endpoints import Endpoints, token_usage
from hearth.batches.lines import CheckedInput, Line, check_and_split, drop_chunks, read_chunk
from hearth.batches.protocol import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXPIRED,
    FAILED,
    FINAL_STATUSES,
    FINALIZING,
    IN_PROGRESS,
    VALIDATING,
    BatchError,
    BatchStatus,
)
from hearth.caller import Caller
from hearth.errors import APIError, envelope
from hearth.files import service as files
from hearth.files.protocol import OpenAIFile
from hearth.files.service import FileStorage
from hearth.jobs import Handler, JobContext, JobQueue
from hearth.store import batches as repo
from hearth.store import files as files_repo
from hearth.store.batches import LineResult, Tally
from hearth.store.blobs import BlobNotFound
from hearth.store.db import Database
from hearth.store.ids import new_id, now
from hearth.store.tables import Batch, BatchChunk

log = logging.getLogger("hearth.batches")

VALIDATE = "batch.validate"
LINES = "batch.lines"
FINALIZE = "batch.finalize"
# Lines a call for an endpoint whose service answers several requests in one engine call.
JOINED_LINES = 16
# A line whose run killed its worker this many times is recorded as failed, not run again.
CRASHES_PER_LINE = 2
# A killed worker costs its job an attempt; a batch outlives a few of those.
ATTEMPTS = 10

_SERVER_ERROR = ("The server had an error while processing this request. Sorry about that! It can be "
                 "retried in a new batch. (Please include the request ID {} when reporting it.)")
_EXPIRED = "This request could not be executed before the completion window expired."


class _FileAlreadyNamed(Exception):
    """Another run of finalize named the batch's file first; this run's copy is discarded."""


def caller_of(batch: Batch) -> Caller:
    """The batch's creator, as its lines run: its project, and the key they are metered against."""
    return Caller(batch.organization_id, batch.project_id, batch.api_key_id)


def _output_line(custom_id: str, response: dict[str, Any] | None, error: dict[str, str] | None = None) -> str:
    return json.dumps({"id": new_id("batch_req_"), "custom_id": custom_id, "response": response, "error": error},
                      separators=(",", ":"))


def _answered(line: Line, request_id: str, response: BaseModel) -> LineResult:
    body = response.model_dump(mode="json")
    tokens_in, tokens_out = token_usage(response)
    output = _output_line(line.custom_id, {"status_code": 200, "request_id": request_id, "body": body})
    return LineResult(line.number, line.custom_id, True, output, tokens_in, tokens_out)


def _refused(line: Line, request_id: str, status_code: int, body: dict[str, Any]) -> LineResult:
    output = _output_line(line.custom_id, {"status_code": status_code, "request_id": request_id, "body": body})
    return LineResult(line.number, line.custom_id, False, output)


def _result(line: Line, outcome: BaseModel | Exception) -> LineResult:
    """A line's answer, its refusal (the online route's status and body), or a server error."""
    request_id = new_id("req_")
    if isinstance(outcome, APIError):
        return _refused(line, request_id, outcome.status_code, outcome.body())
    if isinstance(outcome, Exception):
        log.error("batch line %d (%s) failed [%s]", line.number, line.custom_id, request_id, exc_info=outcome)
        return _refused(line, request_id, 500, envelope(_SERVER_ERROR.format(request_id), "server_error"))
    return _answered(line, request_id, outcome)


def _final_status(batch: Batch, tally: Tally) -> BatchStatus:
    if batch.cancelling_at is not None:
        return CANCELLED
    return EXPIRED if tally.recorded < batch.request_total else COMPLETED


class BatchJobs:
    """The three job kinds of a batch, over the endpoints its lines call."""

    def __init__(self, db: Database, queue: JobQueue, storage: FileStorage, endpoints: Endpoints, *,
                 line_concurrency: int) -> None:
        self.db = db
        self.queue = queue
        self.storage = storage
        self.endpoints = endpoints
        self.line_concurrency = line_concurrency
        # Shared by every chunk this process runs, so batches together never take more places than this.
        self._places = asyncio.Semaphore(line_concurrency)

    def handlers(self) -> dict[str, Handler]:
        return {VALIDATE: self.validate, LINES: self.run_chunk, FINALIZE: self.finalize}

    # -- batch.validate -----------------------------------------------------------------------

    async def validate(self, ctx: JobContext) -> None:
        batch = await to_thread.run_sync(self._load, ctx.payload["batch_id"])
        if batch is not None and batch.status == VALIDATING:
            checked = await to_thread.run_sync(self._check, batch)
        elif batch is not None and batch.status == CANCELLING and batch.in_progress_at is None:
            checked = CheckedInput()  # cancelled before it was read: nothing to run
        else:
            return
        await to_thread.run_sync(self._settle_validation, batch, checked)

    def _check(self, batch: Batch) -> CheckedInput:
        with self.db.session() as session:
            source = files_repo.get_file(session, batch.project_id, batch.input_file_id)
        if source is not None:
            with suppress(BlobNotFound):
                return check_and_split(self.storage.blobs, source.blob_key, batch.id, batch.endpoint)
        return CheckedInput(errors=[BatchError(
            code="file_not_found", message=f"The input file {batch.input_file_id} no longer exists.",
            param="input_file_id")])

    def _settle_validation(self, batch: Batch, checked: CheckedInput) -> None:
        stamp = now()
        with self.db.session() as session:
            if checked.errors:
                errors = [error.model_dump() for error in checked.errors]
                if repo.move(session, batch.id, [VALIDATING], FAILED, failed_at=stamp, errors=errors):
                    return
            elif repo.move(session, batch.id, [VALIDATING], IN_PROGRESS, in_progress_at=stamp,
                           request_total=checked.total, chunks=len(checked.spans), model=checked.model):
                repo.add_chunks(session, batch.id, checked.spans, done=False)
                for index in range(len(checked.spans)):
                    self.queue.enqueue_in(session, LINES, {"batch_id": batch.id, "index": index},
                                          project_id=batch.project_id, max_attempts=ATTEMPTS)
                return
            # Cancelled meanwhile: no line runs, and finalize drops the chunks stored.
            current = repo.lock_batch(session, batch.id)
            if current is None or current.status != CANCELLING:
                return  # another run of this job settled it
            repo.add_chunks(session, batch.id, checked.spans, done=True)
            self._to_finalizing(session, batch, [CANCELLING], request_total=checked.total,
                                chunks=len(checked.spans))

    def _to_finalizing(self, session: Session, batch: Batch, from_statuses: Collection[str],
                       **values: Any) -> None:
        if repo.move(session, batch.id, from_statuses, FINALIZING, finalizing_at=now(), **values):
            self.queue.enqueue_in(session, FINALIZE, {"batch_id": batch.id}, project_id=batch.project_id,
                                  max_attempts=ATTEMPTS)

    # -- batch.lines --------------------------------------------------------------------------

    async def run_chunk(self, ctx: JobContext) -> None:
        batch_id, index = ctx.payload["batch_id"], ctx.payload["index"]
        start = await to_thread.run_sync(self._chunk_start, batch_id, index)
        if start is None:
            return  # done by an earlier attempt
        batch, chunk, recorded = start
        if _may_run(batch.status, batch.expires_at):
            lines = await to_thread.run_sync(read_chunk, self.storage.blobs, batch_id, index, chunk.first_line)
            pending = [line for line in lines if line.number not in recorded]
            if ctx.attempt == 1:
                await self._run_lines(batch, pending)
            else:
                await self._run_lines_carefully(ctx, batch, pending, recorded)
        await to_thread.run_sync(self._finish_chunk, batch, index)

    async def _run_lines_carefully(self, ctx: JobContext, batch: Batch, lines: list[Line],
                                   recorded: set[int]) -> None:
        """A re-run after an earlier run of the chunk died: the lines go one at a time, each named
        in the job's progress before it runs, so a line that takes its worker down with it is
        known. A line that did so ``CRASHES_PER_LINE`` times is recorded as a server error instead
        of being run again, and the chunk goes on: one poisonous line cannot hold a batch."""
        crashes: dict[str, int] = dict(ctx.progress.get("crashes", {}))
        running = ctx.progress.get("running")
        if running is not None and running not in recorded:
            crashes[str(running)] = crashes.get(str(running), 0) + 1
        caller = caller_of(batch)
        for line in lines:
            if crashes.get(str(line.number), 0) >= CRASHES_PER_LINE:
                request_id = new_id("req_")
                log.error("batch line %d (%s) stopped its worker %d times; recorded as failed [%s]",
                          line.number, line.custom_id, CRASHES_PER_LINE, request_id)
                results = [_refused(line, request_id, 500,
                                    envelope(_SERVER_ERROR.format(request_id), "server_error"))]
            else:
                await ctx.save_progress({"running": line.number, "crashes": crashes})
                results = await self._answer(batch.endpoint, caller, [line])
            if not await to_thread.run_sync(self._record, batch.id, results):
                break
        await ctx.save_progress({"crashes": crashes})

    def _chunk_start(self, batch_id: str, index: int) -> tuple[Batch, BatchChunk, set[int]] | None:
        with self.db.session() as session:
            batch = repo.get_batch(session, batch_id)
            chunk = repo.get_chunk(session, batch_id, index)
            if batch is None or chunk is None or chunk.done:
                return None
            return batch, chunk, repo.recorded_lines(session, batch_id, chunk.first_line, chunk.end_line)

    async def _run_lines(self, batch: Batch, lines: list[Line]) -> None:
        """Answer ``lines``, with the process's other chunks up to ``line_concurrency`` calls at
        once, until done or told to stop. An endpoint whose service joins requests (embeddings)
        gets ``JOINED_LINES`` lines a call; the others one."""
        caller = caller_of(batch)
        size = JOINED_LINES if self.endpoints.joins(batch.endpoint) else 1
        groups = [lines[start:start + size] for start in range(0, len(lines), size)]
        pending = iter(groups)
        stop = asyncio.Event()

        async def work() -> None:
            while not stop.is_set():
                async with self._places:
                    if stop.is_set() or (group := next(pending, None)) is None:
                        return
                    results = await self._answer(batch.endpoint, caller, group)
                if not await to_thread.run_sync(self._record, batch.id, results):
                    stop.set()

        # Twice as many workers as places: while one records its answers, another already holds
        # the place it left, so the model never waits on the database between lines.
        async with asyncio.TaskGroup() as group:
            for _ in range(min(2 * self.line_concurrency, len(groups))):
                group.create_task(work())

    async def _answer(self, endpoint: str, caller: Caller, lines: list[Line]) -> list[LineResult]:
        outcomes: Sequence[BaseModel | Exception]
        try:
            if self.endpoints.joins(endpoint):
                outcomes = await self.endpoints.call_many(endpoint, caller, [line.body for line in lines])
            else:
                (line,) = lines
                outcomes = [await self.endpoints.call(endpoint, caller, line.body)]
        except Exception as exc:  # noqa: BLE001 (an APIError or a fault: each line records it)
            outcomes = [exc] * len(lines)
        return [_result(line, outcome) for line, outcome in zip(lines, outcomes, strict=True)]

    def _record(self, batch_id: str, results: list[LineResult]) -> bool:
        """Record lines' results in one transaction; says whether the batch still wants more run."""
        with self.db.session() as session:
            for result in results:
                repo.record_result(session, batch_id, result)
            batch = repo.get_batch(session, batch_id)
            return batch is not None and _may_run(batch.status, batch.expires_at)

    def _finish_chunk(self, batch: Batch, index: int) -> None:
        with self.db.session() as session:
            if repo.finish_chunk(session, batch.id, index):
                self._to_finalizing(session, batch, [IN_PROGRESS, CANCELLING])

    # -- batch.finalize -----------------------------------------------------------------------

    async def finalize(self, ctx: JobContext) -> None:
        batch = await to_thread.run_sync(self._load, ctx.payload["batch_id"])
        if batch is None:
            return
        if batch.status == FINALIZING:
            tally = (await to_thread.run_sync(self._tallies, [batch.id])).get(batch.id, Tally())
            status = _final_status(batch, tally)
            if batch.output_file_id is None and tally.ok:
                await self._write_file(batch, "output", ok=True, expired=False)
            if batch.error_file_id is None and (tally.failed or status == EXPIRED):
                await self._write_file(batch, "error", ok=False, expired=status == EXPIRED)
            await to_thread.run_sync(self._settle, batch.id, status)
        elif batch.status not in FINAL_STATUSES:
            return
        await to_thread.run_sync(self._tidy, batch)

    async def _write_file(self, batch: Batch, kind: str, *, ok: bool, expired: bool) -> None:
        column = f"{kind}_file_id"

        def name_it(session: Session, stored: OpenAIFile) -> None:
            if not repo.set_file(session, batch.id, column, stored.id):
                raise _FileAlreadyNamed

        caller = caller_of(batch)
        try:
            stored = await files.store_file(
                self.storage, caller, f"{batch.id}_{kind}.jsonl", "batch_output",
                self._file_lines(batch, ok=ok, expired=expired), expires_after=batch.output_expires_after,
                on_visible=name_it)
        except _FileAlreadyNamed:
            return
        files.record_stored(self.storage, caller, "/v1/batches", stored.bytes, batch=True)

    async def _file_lines(self, batch: Batch, *, ok: bool, expired: bool) -> AsyncIterator[bytes]:
        """The output (``ok``) or error file's lines, chunk by chunk, in input order."""
        for chunk in await to_thread.run_sync(self._chunks, batch.id):
            if block := await to_thread.run_sync(self._chunk_file_lines, batch, chunk, ok, expired):
                yield block

    def _chunk_file_lines(self, batch: Batch, chunk: BatchChunk, ok: bool, expired: bool) -> bytes:
        with self.db.session() as session:
            results = repo.results_between(session, batch.id, chunk.first_line, chunk.end_line)
        lines = {result.line: result.output for result in results
                 if result.ok == ok and result.output is not None}
        if expired and len(results) < chunk.end_line - chunk.first_line:
            answered = {result.line for result in results}
            for line in read_chunk(self.storage.blobs, batch.id, chunk.index, chunk.first_line):
                if line.number not in answered:
                    lines[line.number] = _output_line(line.custom_id, None,
                                                      {"code": "batch_expired", "message": _EXPIRED})
        return "".join(lines[number] + "\n" for number in sorted(lines)).encode()

    def _settle(self, batch_id: str, status: BatchStatus) -> None:
        with self.db.session() as session:
            repo.move(session, batch_id, [FINALIZING], status, **{f"{status}_at": now()})

    def _tidy(self, batch: Batch) -> None:
        """Once the files hold the answers: drop the chunks and the answers' copies in the database."""
        drop_chunks(self.storage.blobs, batch.id, batch.chunks)
        with self.db.session() as session:
            repo.forget_outputs(session, batch.id)

    # -- reads --------------------------------------------------------------------------------

    def _load(self, batch_id: str) -> Batch | None:
        with self.db.session() as session:
            return repo.get_batch(session, batch_id)

    def _tallies(self, batch_ids: list[str]) -> dict[str, Tally]:
        with self.db.session() as session:
            return repo.tallies(session, batch_ids)

    def _chunks(self, batch_id: str) -> list[BatchChunk]:
        with self.db.session() as session:
            return repo.chunks_of(session, batch_id)


def _may_run(status: str, expires_at: int) -> bool:
    """Whether a batch in this state still wants lines run: in progress, and within its window."""
    return status == IN_PROGRESS and time.time() < expires_at
