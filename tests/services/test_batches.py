"""Batches in-process over the fake engines: the jobs' flow, line errors, validation, cancel, expiry, re-runs.

A real SQLite database, blob directory, job queue and worker run each
batch; only the models are fakes, so every test takes well under a second.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from hearth.batches.endpoints import Endpoints
from hearth.batches.execution import FINALIZE, LINES, VALIDATE, BatchJobs
from hearth.batches.lines import chunk_key
from hearth.batches.protocol import FINAL_STATUSES, Batch, CreateBatchRequest
from hearth.batches.service import BatchService
from hearth.caller import Caller
from hearth.chat.protocol import CreateChatCompletionRequest
from hearth.chat.service import ChatService
from hearth.completions.service import CompletionService
from hearth.embeddings.service import EmbeddingsService
from hearth.errors import Conflict, InvalidRequest, NotFound, invalid_request
from hearth.files import service as files
from hearth.files.blobio import read_blob_sync
from hearth.files.service import FileStorage
from hearth.jobs import JobQueue, Worker
from hearth.moderations.service import ModerationService
from hearth.settings import Settings
from hearth.store import batches as repo
from hearth.store.batches import LineResult
from hearth.store.db import Database
from hearth.store.ids import now
from hearth.store.pagination import PageRequest
from hearth.store.tables import BatchResult, File, Job, Organization, Project
from tests.services.conftest import CALLER, Hearth

CHAT = "/v1/chat/completions"
OTHER = Caller(organization_id=CALLER.organization_id, project_id="proj_other")


def chat_line(custom_id: str, said: str = "hello batch world", **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": CHAT,
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": said}], **body}}


def jsonl(lines: list[dict[str, Any] | bytes]) -> bytes:
    return b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@dataclass
class Env:
    db: Database
    queue: JobQueue
    storage: FileStorage
    service: BatchService
    jobs: BatchJobs

    async def upload(self, data: bytes, caller: Caller = CALLER, purpose: str = "batch") -> str:
        stored = await files.store_file(self.storage, caller, "input.jsonl", purpose, _once(data))
        return stored.id

    async def create(self, lines: list[dict[str, Any] | bytes], endpoint: str = CHAT) -> Batch:
        file_id = await self.upload(jsonl(lines))
        body = CreateBatchRequest(input_file_id=file_id, endpoint=endpoint, completion_window="24h")
        return self.service.create(CALLER, body)

    async def run(self, batch_id: str, kinds: tuple[str, ...] = (VALIDATE, LINES, FINALIZE),
                  until: Callable[[Batch], bool] | None = None) -> Batch:
        """Run a worker for ``kinds`` until ``until`` holds for the batch (by default: it is final
        and its jobs have all ended)."""
        until = until or (lambda batch: batch.status in FINAL_STATUSES and self.idle())
        handlers = {kind: handler for kind, handler in self.jobs.handlers().items() if kind in kinds}
        worker = Worker(self.queue, handlers, concurrency=2, poll_interval=0.01)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            async with asyncio.timeout(30):
                while not until(batch := self.service.retrieve(CALLER, batch_id)):
                    await asyncio.sleep(0.01)
        finally:
            stop.set()
            await task
        return batch

    def idle(self) -> bool:
        return self.count(Job, Job.status.in_(["queued", "running"])) == 0

    def lines_of(self, file_id: str | None) -> list[dict[str, Any]]:
        if file_id is None:
            return []
        with self.db.session() as session:
            record = session.get_one(File, file_id)
        data = b"".join(read_blob_sync(self.storage.blobs, record.blob_key))
        return [json.loads(line) for line in data.splitlines()]

    def count(self, *where: Any) -> int:
        with self.db.session() as session:
            return session.scalar(select(func.count()).select_from(where[0]).where(*where[1:])) or 0


def _add_projects(db: Database) -> None:
    with db.session() as session:
        session.add(Organization(id=CALLER.organization_id, name="Test", created_at=now()))
        for project_id in (CALLER.project_id, OTHER.project_id):
            session.add(Project(id=project_id, organization_id=CALLER.organization_id, name=project_id,
                                status="active", created_at=now()))


@asynccontextmanager
async def environment(hearth: Hearth, root: Path, **settings: Any) -> AsyncIterator[Env]:
    config = Settings(data_dir=root, database_url=f"sqlite:///{root / 'hearth.db'}", **settings)
    db = Database(config.resolved_database_url)
    db.migrate()
    _add_projects(db)
    storage = await files.open_file_storage(db, config, hearth.meter)
    queue = JobQueue(db)
    models, meter = hearth.models, hearth.meter
    endpoints = Endpoints(ChatService(models, meter), CompletionService(models, meter),
                          EmbeddingsService(models, meter), ModerationService(models, meter))
    jobs = BatchJobs(db, queue, storage, endpoints, line_concurrency=config.batch_line_concurrency)
    try:
        yield Env(db, queue, storage, BatchService(db, queue, config), jobs)
    finally:
        db.dispose()


Scenario = Callable[[Env], Coroutine[Any, Any, None]]


@pytest.fixture
def run_in(hearth: Hearth, tmp_path: Path) -> Iterator[Callable[..., None]]:
    """Runs a scenario on a fresh environment, with settings overridden as given."""

    def run(scenario: Scenario, **settings: Any) -> None:
        async def main() -> None:
            async with environment(hearth, tmp_path, **settings) as env:
                await scenario(env)

        asyncio.run(main())

    yield run


# -- the whole flow ---------------------------------------------------------------------------


def test_a_chat_batch_answers_every_line_once_in_order_metered_as_batch(run_in, hearth: Hearth) -> None:
    """Output lines follow the input's order, one per custom_id, with the service's bodies and usage."""
    said = [f"line number {i}" for i in range(70)]  # three chunks

    async def scenario(env: Env) -> None:
        created = await env.create([chat_line(f"req-{i}", text) for i, text in enumerate(said)])
        assert (created.status, created.request_counts.total) == ("validating", 0)
        batch = await env.run(created.id)

        assert batch.status == "completed" and batch.error_file_id is None
        assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (70, 70, 0)
        assert batch.model == "gpt-4o-mini"
        assert None not in (batch.in_progress_at, batch.finalizing_at, batch.completed_at)
        output = env.lines_of(batch.output_file_id)
        assert [line["custom_id"] for line in output] == [f"req-{i}" for i in range(70)]
        assert len({line["id"] for line in output}) == 70
        for line, text in zip(output, said, strict=True):
            assert line["id"].startswith("batch_req_") and line["error"] is None
            response = line["response"]
            assert response["status_code"] == 200 and response["request_id"].startswith("req_")
            assert response["body"]["object"] == "chat.completion"
            assert response["body"]["choices"][0]["message"]["content"] == text
        events = [event for event in hearth.meter.events if event.kind == "completions"]
        assert len(events) == 70 and all(event.batch and event.caller == CALLER for event in events)
        assert batch.usage.input_tokens == sum(event.input_tokens for event in events)
        assert batch.usage.output_tokens == sum(event.output_tokens for event in events)
        stored = [event for event in hearth.meter.events if event.kind == "files" and event.batch]
        assert [event.endpoint for event in stored] == ["/v1/batches"]
        # The chunks are gone and the database no longer holds the answers' text.
        assert not any(env.storage.blobs.exists(chunk_key(batch.id, index)) for index in range(3))
        assert env.count(BatchResult, BatchResult.batch_id == batch.id, BatchResult.output.is_not(None)) == 0

    run_in(scenario)


def test_embeddings_and_moderations_lines_return_their_endpoints_bodies(run_in) -> None:
    async def scenario(env: Env) -> None:
        embeddings = await env.create([
            {"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
             "body": {"model": "text-embedding-3-small", "input": f"word {i}"}} for i in range(3)],
            endpoint="/v1/embeddings")
        moderations = await env.create([
            {"custom_id": "m", "method": "POST", "url": "/v1/moderations", "body": {"input": "I will kill"}}],
            endpoint="/v1/moderations")
        done = await env.run(embeddings.id)
        assert done.status == "completed" and done.usage.input_tokens > 0
        assert [line["response"]["body"]["object"] for line in env.lines_of(done.output_file_id)] == ["list"] * 3
        done = await env.run(moderations.id)
        [line] = env.lines_of(done.output_file_id)
        assert line["response"]["body"]["results"][0]["flagged"] is True

    run_in(scenario)


def test_bad_lines_get_the_online_refusal_and_the_rest_go_on(run_in) -> None:
    """Unknown model, unknown field, stream: each in the error file with the status and envelope online gives."""
    async def scenario(env: Env) -> None:
        batch = await env.run((await env.create([
            chat_line("good-1"),
            chat_line("unknown-model", model="gpt-4o"),
            chat_line("unknown-field", temperature_typo=1),
            chat_line("streamed", stream=True),
            chat_line("good-2"),
        ])).id)

        assert batch.status == "completed"
        counts = batch.request_counts
        assert (counts.total, counts.completed, counts.failed) == (5, 2, 3)
        assert [line["custom_id"] for line in env.lines_of(batch.output_file_id)] == ["good-1", "good-2"]
        errors = {line["custom_id"]: line["response"] for line in env.lines_of(batch.error_file_id)}
        assert list(errors) == ["unknown-model", "unknown-field", "streamed"]
        assert errors["unknown-model"]["status_code"] == 404
        assert errors["unknown-model"]["body"]["error"]["code"] == "model_not_found"
        body = chat_line("x", temperature_typo=1)["body"]
        with pytest.raises(ValidationError) as refused:
            CreateChatCompletionRequest.model_validate(body)
        assert errors["unknown-field"] == {**errors["unknown-field"], "status_code": 400,
                                           "body": invalid_request(refused.value.errors()).body()}
        assert errors["streamed"]["status_code"] == 400
        assert errors["streamed"]["body"]["error"]["param"] == "stream"

    run_in(scenario)


def test_a_file_that_does_not_validate_fails_the_batch_with_line_errors(run_in) -> None:
    async def scenario(env: Env) -> None:
        batch = await env.run((await env.create([
            chat_line("a"),
            b"{not json",
            chat_line("a"),
            {**chat_line("b"), "url": "/v1/embeddings"},
            {**chat_line("c"), "method": "GET"},
            {"custom_id": "d", "method": "POST", "url": CHAT},
        ])).id)

        assert batch.status == "failed" and batch.failed_at is not None
        assert batch.errors is not None and batch.errors.object == "list"
        found = [(error.line, error.code, error.param) for error in batch.errors.data]
        assert found == [(2, "invalid_json_line", None), (3, "duplicate_custom_id", "custom_id"),
                         (4, "invalid_url", "url"), (5, "invalid_method", "method"),
                         (6, "missing_required_parameter", "body")]
        assert batch.output_file_id is None and batch.request_counts.total == 0
        assert env.count(Job, Job.kind == LINES) == 0
        assert not env.storage.blobs.exists(chunk_key(batch.id, 0))

    run_in(scenario)


def test_an_empty_input_file_fails_the_batch(run_in) -> None:
    async def scenario(env: Env) -> None:
        batch = await env.run((await env.create([])).id)
        assert batch.status == "failed"
        assert [error.code for error in batch.errors.data] == ["empty_file"]  # type: ignore[union-attr]

    run_in(scenario)


# -- create --------------------------------------------------------------------------------


def test_create_refuses_what_it_cannot_run(run_in) -> None:
    async def scenario(env: Env) -> None:
        ours = await env.upload(jsonl([chat_line("a")]))
        theirs = await env.upload(jsonl([chat_line("a")]), caller=OTHER)
        notes = await env.upload(b"notes", purpose="assistants")

        def create(file_id: str, endpoint: str = CHAT) -> Batch:
            return env.service.create(CALLER, CreateBatchRequest(input_file_id=file_id, endpoint=endpoint,
                                                                 completion_window="24h"))

        with pytest.raises(InvalidRequest) as refused:
            create(ours, "/v1/images/generations")
        assert refused.value.param == "endpoint"
        with pytest.raises(NotFound) as missing:
            create(theirs)
        assert missing.value.param == "input_file_id"
        with pytest.raises(InvalidRequest) as wrong:
            create(notes)
        assert wrong.value.param == "input_file_id"
        assert create(ours).status == "validating"

    run_in(scenario)


@pytest.mark.parametrize("metadata", [
    {f"k{i}": "v" for i in range(17)}, {"k" * 65: "v"}, {"k": "v" * 513},
])
def test_metadata_past_its_limits_is_refused(metadata: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as refused:
        CreateBatchRequest(input_file_id="file-x", endpoint=CHAT, completion_window="24h",
                           metadata=metadata)  # type: ignore[arg-type]
    assert invalid_request(refused.value.errors()).param.startswith("metadata")  # type: ignore[union-attr]


def test_metadata_within_its_limits_is_kept(run_in) -> None:
    metadata = {f"k{i}": "v" * 512 for i in range(15)} | {"k" * 64: "v"}

    async def scenario(env: Env) -> None:
        file_id = await env.upload(jsonl([chat_line("a")]))
        created = env.service.create(CALLER, CreateBatchRequest(
            input_file_id=file_id, endpoint=CHAT, completion_window="24h", metadata=metadata))
        assert env.service.retrieve(CALLER, created.id).metadata == metadata
        with pytest.raises(NotFound):
            env.service.retrieve(OTHER, created.id)

    run_in(scenario)


# -- cancel and expiry ---------------------------------------------------------------------


def test_cancel_before_validation_ends_the_batch_cancelled_with_nothing_run(run_in, hearth: Hearth) -> None:
    async def scenario(env: Env) -> None:
        created = await env.create([chat_line("a"), chat_line("b")])
        assert env.service.cancel(CALLER, created.id).status == "cancelling"
        batch = await env.run(created.id)
        assert batch.status == "cancelled" and batch.cancelled_at is not None
        assert (batch.output_file_id, batch.error_file_id) == (None, None)
        assert hearth.engine("fake-llama").requests == []

    run_in(scenario)


def test_cancel_while_running_stops_before_the_next_line(run_in, hearth: Hearth) -> None:
    async def scenario(env: Env) -> None:
        created = await env.create([chat_line(f"r{i}") for i in range(40)])
        await env.run(created.id, kinds=(VALIDATE,), until=lambda batch: batch.status == "in_progress")
        assert env.service.cancel(CALLER, created.id).status == "cancelling"
        assert env.service.cancel(CALLER, created.id).status == "cancelling"  # asking again is no error
        batch = await env.run(created.id)
        assert batch.status == "cancelled"
        assert batch.request_counts.completed == 0 and hearth.engine("fake-llama").requests == []
        with pytest.raises(Conflict):
            env.service.cancel(CALLER, created.id)

    run_in(scenario)


def test_cancel_of_a_finished_batch_is_a_conflict(run_in) -> None:
    async def scenario(env: Env) -> None:
        batch = await env.run((await env.create([chat_line("a")])).id)
        with pytest.raises(Conflict) as refused:
            env.service.cancel(CALLER, batch.id)
        assert refused.value.status_code == 409 and "completed" in refused.value.message

    run_in(scenario)


def test_a_batch_past_its_window_expires_with_its_lines_in_the_error_file(run_in) -> None:
    async def scenario(env: Env) -> None:
        created = await env.create([chat_line(f"r{i}") for i in range(3)])
        batch = await env.run(created.id)
        assert batch.status == "expired" and batch.expired_at is not None
        assert batch.output_file_id is None
        errors = env.lines_of(batch.error_file_id)
        assert [line["custom_id"] for line in errors] == ["r0", "r1", "r2"]
        assert all(line["response"] is None and line["error"]["code"] == "batch_expired" for line in errors)

    run_in(scenario, batch_completion_window_seconds=0)


# -- re-runs after a crash -----------------------------------------------------------------


def test_a_rerun_chunk_skips_the_lines_already_answered(run_in, hearth: Hearth) -> None:
    async def scenario(env: Env) -> None:
        created = await env.create([chat_line("a", "first"), chat_line("b", "second")])
        await env.run(created.id, kinds=(VALIDATE,), until=lambda batch: batch.status == "in_progress")
        earlier = json.dumps({"id": "batch_req_earlier", "custom_id": "a", "response": {}, "error": None})
        with env.db.session() as session:
            repo.record_result(session, created.id, LineResult(1, "a", True, earlier))
        batch = await env.run(created.id)

        assert [request["messages"][0]["content"] for request in hearth.engine("fake-llama").requests] == ["second"]
        assert [line["id"] for line in env.lines_of(batch.output_file_id)][:1] == ["batch_req_earlier"]

    run_in(scenario)


def test_a_line_is_recorded_once_however_often_it_is_answered(run_in) -> None:
    async def scenario(env: Env) -> None:
        created = await env.create([chat_line("a")])
        for output in ("first", "second"):
            with env.db.session() as session:
                repo.record_result(session, created.id, LineResult(1, "a", True, output))
        with env.db.session() as session:
            assert [row.output for row in repo.results_between(session, created.id, 1, 2)] == ["first"]

    run_in(scenario)


def test_finalize_run_again_writes_no_second_file(run_in) -> None:
    """A finalize that crashed after naming its output file, re-run, adds nothing visible."""
    async def scenario(env: Env) -> None:
        created = await env.create([chat_line("a"), chat_line("b", model="gpt-4o")])
        await env.run(created.id, kinds=(VALIDATE, LINES), until=lambda batch: batch.status == "finalizing")
        # A first finalize names the output file, then "crashes" before the error file.
        batch_row = await asyncio.to_thread(env.jobs._load, created.id)
        assert batch_row is not None
        await env.jobs._write_file(batch_row, "output", ok=True, expired=False)
        batch = await env.run(created.id)

        assert batch.status == "completed" and None not in (batch.output_file_id, batch.error_file_id)
        assert env.count(File, File.purpose == "batch_output") == 2
        # And once more, as a job whose success was never recorded would be.
        with env.db.session() as session:
            env.queue.enqueue_in(session, FINALIZE, {"batch_id": batch.id})
        await env.run(batch.id)
        assert env.count(File, File.purpose == "batch_output") == 2

    run_in(scenario)


def test_output_files_expire_as_the_batch_asked(run_in) -> None:
    async def scenario(env: Env) -> None:
        file_id = await env.upload(jsonl([chat_line("a")]))
        created = env.service.create(CALLER, CreateBatchRequest.model_validate({
            "input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h",
            "output_expires_after": {"anchor": "created_at", "seconds": 3600}}))
        batch = await env.run(created.id)
        with env.db.session() as session:
            output = session.get_one(File, batch.output_file_id)
        assert output.expires_at == output.created_at + 3600

    run_in(scenario)


def test_list_pages_newest_first(run_in) -> None:
    async def scenario(env: Env) -> None:
        created = [await env.create([chat_line("a")]) for _ in range(3)]
        first, more = env.service.list_batches(CALLER, PageRequest(limit=2))
        rest, done = env.service.list_batches(CALLER, PageRequest(limit=2, after=first[-1].id))
        assert more and not done
        assert {batch.id for batch in first + rest} == {batch.id for batch in created}
        assert env.service.list_batches(OTHER, PageRequest(limit=2)) == ([], False)

    run_in(scenario)


def test_a_line_that_keeps_killing_its_worker_is_recorded_as_failed_and_the_batch_goes_on(run_in) -> None:
    """A chunk re-run after its worker died runs its lines one at a time, naming each in the job's
    progress first. Here the second line was running when a worker died, twice (as the job row says
    after those deaths): the next run records it as a server error and answers the others."""
    async def scenario(env: Env) -> None:
        created = await env.create([chat_line(f"r{i}", f"line {i}") for i in range(3)])
        await env.run(created.id, kinds=(VALIDATE,), until=lambda batch: batch.status == "in_progress")
        with env.db.session() as session:
            poisonous = repo.get_chunk(session, created.id, 0).first_line + 1
            job = session.scalars(select(Job).where(Job.kind == LINES)).one()
            job.attempts, job.progress = 2, {"running": poisonous, "crashes": {str(poisonous): 1}}

        batch = await env.run(created.id)

        assert batch.status == "completed"
        assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 1)
        assert [line["custom_id"] for line in env.lines_of(batch.output_file_id)] == ["r0", "r2"]
        (failed,) = env.lines_of(batch.error_file_id)
        assert failed["custom_id"] == "r1" and failed["response"]["status_code"] == 500
        assert failed["response"]["body"]["error"]["type"] == "server_error"

    run_in(scenario)
