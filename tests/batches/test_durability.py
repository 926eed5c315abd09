"""Batches across process deaths and several workers, on servers of their own.

- A server SIGKILLed mid-batch: a new server on the same data directory
  finishes it, and the output answers each line exactly once.
- Two ``hearth worker`` processes on PostgreSQL (and S3) drain one batch
  together: every line answered once, every job run once.
- A completion window shortened by the test-only setting: the batch expires,
  keeping what finished and listing the rest as ``batch_expired``.

Embedding lines keep these quick: a line takes milliseconds, so a batch is
long enough to be interrupted without taking long to finish.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hearth.store.db import Database
from hearth.store.tables import Batch, BatchResult, Job
from tests.batches.flow import create, download, embedding_line, wait_for, wait_until
from tests.conftest import LiveServer, start_server, stop_server
from tests.storage_backends import make_backend

EMBEDDINGS_ONLY = json.dumps(["all-minilm-l6-v2"])


def lines(count: int) -> list[dict]:
    return [embedding_line(f"line-{i}", f"sentence number {i} about batches") for i in range(count)]


def results(db: Database, batch_id: str) -> tuple[int, int]:
    """Results recorded for the batch, and how many distinct lines they answer."""
    with db.session() as session:
        return (session.scalar(select(func.count()).where(BatchResult.batch_id == batch_id)) or 0,
                session.scalar(select(func.count(func.distinct(BatchResult.line)))
                               .where(BatchResult.batch_id == batch_id)) or 0)


def assert_each_line_answered_once(live: LiveServer, batch_id: str, count: int) -> None:
    client = live.client()
    batch = wait_for(client, batch_id)
    assert batch.status == "completed", batch
    counts = batch.request_counts
    assert counts is not None and (counts.total, counts.completed, counts.failed) == (count, count, 0)
    output = download(client, batch.output_file_id)
    assert [item["custom_id"] for item in output] == [f"line-{i}" for i in range(count)]
    assert all(item["response"]["status_code"] == 200 for item in output)


def batch_jobs(db: Database) -> list[tuple[str, str, int]]:
    """Every batch job in the (fresh) database: kind, status, attempts."""
    with db.session() as session:
        rows = session.execute(select(Job.kind, Job.status, Job.attempts).where(Job.kind.like("batch.%")))
        return [(kind, status, attempts) for kind, status, attempts in rows]


def settled(db: Database) -> bool:
    return all(status in ("succeeded", "failed", "cancelled") for _, status, _ in batch_jobs(db))


@pytest.fixture
def servers() -> Iterator[list[LiveServer]]:
    """Servers a test starts; any still running at its end are stopped, and their logs shown if it failed."""
    started: list[LiveServer] = []
    yield started
    for live in started:
        if live.process.poll() is None:
            stop_server(live)
        print(f"--- {live.data_dir} (exit {live.process.returncode}) ---\n{live.log()[-5000:]}")


def test_a_killed_server_resumes_the_batch_with_each_line_once(tmp_path: Path, models_dir: Path,
                                                               servers: list[LiveServer]) -> None:
    data_dir = tmp_path / "data"
    settings = {"HEARTH_DEFAULT_MODELS": EMBEDDINGS_ONLY, "HEARTH_JOB_LEASE_SECONDS": "2"}
    first = start_server(data_dir, models_dir, **settings)
    servers.append(first)
    db = Database(f"sqlite:///{data_dir / 'hearth.db'}")
    count = 1000
    batch = create(first.client(), lines(count))
    wait_until(lambda: results(db, batch.id)[0] >= 30, lambda: f"results so far: {results(db, batch.id)}")

    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    answered_before = results(db, batch.id)[0]
    assert answered_before < count, "the batch finished before the kill; make it longer"

    second = start_server(data_dir, models_dir, **settings)
    servers.append(second)
    assert_each_line_answered_once(second, batch.id, count)
    assert results(db, batch.id) == (count, count)
    with db.session() as session:
        attempts = list(session.scalars(select(Job.attempts).where(Job.kind == "batch.lines")))
    assert max(attempts) >= 2  # at least one chunk was taken over after its worker died
    stop_server(second)
    db.dispose()
    assert "Traceback" not in second.log(), second.log()


def test_two_workers_on_postgresql_drain_one_batch_without_duplicates(
        tmp_path: Path, models_dir: Path, servers: list[LiveServer], request: pytest.FixtureRequest) -> None:
    backend = make_backend("postgres-s3", tmp_path, request)
    api = start_server(tmp_path / "api", models_dir, HEARTH_DEFAULT_MODELS="[]", HEARTH_RUN_WORKER="false",
                       **backend.env)
    servers.append(api)
    workers = []
    for index in range(2):
        env = {**os.environ, **backend.env, "HEARTH_DATA_DIR": str(tmp_path / f"worker-{index}"),
               "HEARTH_MODELS_DIR": str(models_dir), "HEARTH_LOG_LEVEL": "warning"}
        log = (tmp_path / f"worker-{index}.log").open("wb")
        workers.append(subprocess.Popen([sys.executable, "-m", "hearth", "worker"], env=env, stdout=log,
                                        stderr=subprocess.STDOUT))
    try:
        count = 400
        batch = create(api.client(), lines(count))
        assert_each_line_answered_once(api, batch.id, count)
        # The batch completes before its finalize job is recorded as done; stop the workers after that.
        wait_until(lambda: settled(backend.db), lambda: f"jobs: {batch_jobs(backend.db)}")
    finally:
        for worker in workers:
            worker.terminate()
        codes = [worker.wait(timeout=60) for worker in workers]
    logs = "\n".join((tmp_path / f"worker-{index}.log").read_text(errors="replace") for index in range(2))
    assert codes == [0, 0] and "Traceback" not in logs, logs

    db = backend.db
    assert results(db, batch.id) == (count, count)
    with db.session() as session:
        chunks = session.scalar(select(Batch.chunks).where(Batch.id == batch.id)) or 0
    jobs = batch_jobs(db)
    assert sorted(kind for kind, _, _ in jobs) == sorted(["batch.validate", "batch.finalize"]
                                                         + ["batch.lines"] * chunks)
    assert all((status, attempts) == ("succeeded", 1) for _, status, attempts in jobs), jobs
    stop_server(api)
    assert "Traceback" not in api.log(), api.log()


def test_a_batch_past_its_window_expires_keeping_what_finished(tmp_path: Path, models_dir: Path,
                                                              servers: list[LiveServer]) -> None:
    live = start_server(tmp_path / "data", models_dir, HEARTH_DEFAULT_MODELS=EMBEDDINGS_ONLY,
                        HEARTH_BATCH_COMPLETION_WINDOW_SECONDS="4")
    servers.append(live)
    client = live.client()
    count = 3000
    created = create(client, lines(count))
    assert created.expires_at == created.created_at + 4
    batch = wait_for(client, created.id)

    assert batch.status == "expired" and batch.expired_at is not None, batch
    counts = batch.request_counts
    assert counts is not None and counts.total == count and 0 < counts.completed < count
    output = download(client, batch.output_file_id)
    expired = download(client, batch.error_file_id)
    assert len(output) == counts.completed
    assert all(item["error"] is None and item["response"]["status_code"] == 200 for item in output)
    assert all(item["response"] is None and item["error"]["code"] == "batch_expired" for item in expired)
    # Every line is in exactly one of the two files, each file in input order.
    answered = [item["custom_id"] for item in output]
    assert sorted(answered + [item["custom_id"] for item in expired], key=lambda name: int(name[5:])) == [
        f"line-{i}" for i in range(count)]
    assert answered == sorted(answered, key=lambda name: int(name[5:]))
    stop_server(live)
    assert "Traceback" not in live.log(), live.log()
