"""/v1/batches through the official SDK, on the suite's live server and its real models.

Each endpoint's batch runs end to end (upload, create, poll, download) and
every answer is checked against OpenAI's schema for that endpoint; bad lines
are compared with what the online route answers the same body; cancel keeps
what finished; the meter records every line as batch usage.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from sqlalchemy import select

from hearth.store.db import Database
from hearth.store.tables import UsageRecord
from tests.batches.flow import (
    CHAT_MODEL,
    chat_line,
    create,
    download,
    embedding_line,
    line,
    upload,
    wait_for,
    wait_until,
)
from tests.conftest import LiveServer
from tests.spec import assert_matches_schema
from tests.storage_backends import new_project_key


@pytest.fixture(scope="module")
def db(server: LiveServer) -> Iterator[Database]:
    database = Database(f"sqlite:///{server.data_dir / 'hearth.db'}")
    yield database
    database.dispose()


def raw_batch(server: LiveServer, batch_id: str, api_key: str | None = None) -> dict[str, Any]:
    response = httpx.get(f"{server.base_url}/v1/batches/{batch_id}", timeout=60,
                         headers={"Authorization": f"Bearer {api_key or server.api_key}"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_matches_schema(body, "Batch")
    return body


ENDPOINTS = {
    "chat": ("CreateChatCompletionResponse", [chat_line(f"chat-{i}", f"Name a colour, {i}.") for i in range(3)]),
    "completions": ("CreateCompletionResponse", [
        line(f"text-{i}", "/v1/completions", {"model": CHAT_MODEL, "prompt": f"{i}, {i + 1},", "max_tokens": 6})
        for i in range(3)]),
    "embeddings": ("CreateEmbeddingResponse", [embedding_line(f"vec-{i}", f"sentence {i}") for i in range(6)]),
    "moderations": ("CreateModerationResponse", [
        line(f"mod-{i}", "/v1/moderations", {"input": text})
        for i, text in enumerate(["I love kittens.", "I will hurt you.", "Have a nice day."])]),
}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_a_batch_answers_every_line_through_the_sdk(server: LiveServer, client: OpenAI, endpoint: str) -> None:
    schema, lines = ENDPOINTS[endpoint]
    created = create(client, lines, metadata={"suite": endpoint})
    assert (created.status, created.endpoint, created.metadata) == ("validating", lines[0]["url"],
                                                                     {"suite": endpoint})
    assert created.id.startswith("batch_") and created.expires_at == created.created_at + 24 * 3600
    raw_batch(server, created.id)

    batch = wait_for(client, created.id)
    body = raw_batch(server, created.id)
    assert batch.status == "completed", batch
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (
        len(lines), len(lines), 0)
    assert body["created_at"] <= body["in_progress_at"] <= body["finalizing_at"] <= body["completed_at"]
    assert batch.error_file_id is None
    assert batch.model == lines[0]["body"].get("model")  # every line names the same model, if any
    output_file = client.files.retrieve(batch.output_file_id)  # type: ignore[arg-type]
    assert (output_file.purpose, output_file.filename) == ("batch_output", f"{batch.id}_output.jsonl")

    output = download(client, batch.output_file_id)
    assert [item["custom_id"] for item in output] == [item["custom_id"] for item in lines]
    for item in output:
        assert item["id"].startswith("batch_req_") and item["error"] is None
        assert item["response"]["status_code"] == 200
        assert item["response"]["request_id"].startswith("req_")
        assert_matches_schema(item["response"]["body"], schema)
    if endpoint != "moderations":  # moderations report no tokens
        assert batch.usage is not None and batch.usage.input_tokens > 0


def test_bad_lines_are_answered_as_online_and_the_rest_go_on(client: OpenAI, http: httpx.Client) -> None:
    bad = {
        "unknown-model": {"model": "no-such-model"},
        "bad-value": {"temperature": "very hot"},
        "unknown-field": {"temprature": 0.5},
    }
    lines = [chat_line("good-1"), *(chat_line(name, **fields) for name, fields in bad.items()),
             chat_line("streamed", stream=True), chat_line("good-2")]
    batch = wait_for(client, create(client, lines).id)

    assert batch.status == "completed"
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (6, 2, 4)
    assert [item["custom_id"] for item in download(client, batch.output_file_id)] == ["good-1", "good-2"]
    errors = {item["custom_id"]: item for item in download(client, batch.error_file_id)}
    assert list(errors) == [*bad, "streamed"]
    for name in bad:
        online = http.post("/v1/chat/completions", json=next(item for item in lines
                                                                if item["custom_id"] == name)["body"])
        response = errors[name]["response"]
        assert (response["status_code"], response["body"]) == (online.status_code, online.json())
        assert errors[name]["error"] is None
    streamed = errors["streamed"]["response"]
    assert streamed["status_code"] == 400 and streamed["body"]["error"]["param"] == "stream"


def test_lines_that_do_not_fit_the_batch_fail_it_with_their_line_numbers(server: LiveServer,
                                                                          client: OpenAI) -> None:
    # The upload accepts any batchable url; the batch wants every line on its own endpoint.
    lines = [chat_line("a"), embedding_line("b"), chat_line("c"), embedding_line("d")]
    batch = wait_for(client, create(client, lines).id)
    raw_batch(server, batch.id)

    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.errors is not None
    assert [(error.line, error.code, error.param) for error in batch.errors.data or []] == [
        (2, "invalid_url", "url"), (4, "invalid_url", "url")]
    assert batch.output_file_id is None and batch.error_file_id is None


def test_what_a_batch_cannot_be_created_from(server: LiveServer, client: OpenAI, db: Database) -> None:
    file_id = upload(client, [embedding_line("a")])
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(input_file_id=file_id, endpoint="/v1/responses", completion_window="24h")
    assert refused.value.param == "endpoint"  # type: ignore[attr-defined]
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings",
                              completion_window="48h")  # type: ignore[arg-type]
    assert refused.value.param == "completion_window"  # type: ignore[attr-defined]
    notes = client.files.create(file=("notes.txt", b"hello"), purpose="assistants").id
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(input_file_id=notes, endpoint="/v1/embeddings", completion_window="24h")
    assert refused.value.param == "input_file_id"  # type: ignore[attr-defined]

    other = server.client(api_key=new_project_key(db)[2])
    with pytest.raises(openai.NotFoundError) as missing:
        other.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    assert missing.value.param == "input_file_id"  # type: ignore[attr-defined]
    mine = client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.batches.cancel(mine.id)


@pytest.mark.parametrize("metadata", [
    {f"key{i}": "value" for i in range(17)}, {"k" * 65: "value"}, {"key": "v" * 513},
])
def test_metadata_past_its_limits_is_a_400(client: OpenAI, metadata: dict[str, str]) -> None:
    file_id = upload(client, [embedding_line("a")])
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h",
                              metadata=metadata)
    assert (refused.value.param or "").startswith("metadata")  # type: ignore[attr-defined]


def test_list_pages_newest_first(server: LiveServer, db: Database) -> None:
    client = server.client(api_key=new_project_key(db)[2])  # a fresh project: the listing is ours alone
    file_id = upload(client, [embedding_line("a")])
    created = [client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
               for _ in range(3)]

    first = client.batches.list(limit=2)
    assert first.has_more and len(first.data) == 2
    rest = client.batches.list(limit=2, after=first.data[-1].id)
    assert not rest.has_more and len(rest.data) == 1
    assert {batch.id for batch in first.data + rest.data} == {batch.id for batch in created}
    assert [batch.id for batch in client.batches.list()] == [batch.id for batch in first.data + rest.data]
    with pytest.raises(openai.BadRequestError):
        client.batches.list(limit=101)


def test_cancel_stops_the_batch_and_keeps_what_finished(server: LiveServer, client: OpenAI) -> None:
    lines = [chat_line(f"r{i}", f"Write a line about the number {i}.", max_tokens=16) for i in range(24)]
    created = create(client, lines)
    wait_until(lambda: client.batches.retrieve(created.id).request_counts.completed >= 1,  # type: ignore[union-attr]
               lambda: f"no line finished: {client.batches.retrieve(created.id)}")

    cancelling = client.batches.cancel(created.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    raw_batch(server, created.id)
    batch = wait_for(client, created.id)

    assert batch.status == "cancelled" and batch.cancelled_at is not None
    counts = batch.request_counts
    assert counts is not None and counts.total == 24 and 1 <= counts.completed < 24
    output = download(client, batch.output_file_id)
    assert len(output) == counts.completed
    assert len({item["custom_id"] for item in output}) == len(output)
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(created.id)


def test_every_line_is_metered_as_batch_usage(server: LiveServer, db: Database) -> None:
    project_id, key_id, secret = new_project_key(db)
    client = server.client(api_key=secret)
    lines = [chat_line(f"m{i}", f"Say {i}.") for i in range(3)]
    batch = wait_for(client, create(client, lines).id)
    assert batch.status == "completed" and batch.usage is not None

    def rows() -> list[UsageRecord]:
        with db.session() as session:
            return list(session.scalars(select(UsageRecord).where(UsageRecord.project_id == project_id,
                                                                  UsageRecord.kind == "completions")))

    wait_until(lambda: len(rows()) >= 3, lambda: f"usage rows: {rows()}", deadline=60)
    recorded = rows()
    assert len(recorded) == 3
    assert all(row.batch and row.api_key_id == key_id and row.endpoint == "/v1/chat/completions"
               for row in recorded)
    assert batch.usage.input_tokens == sum(row.input_tokens for row in recorded)
    assert batch.usage.output_tokens == sum(row.output_tokens for row in recorded)
    answered = download(client, batch.output_file_id)
    assert batch.usage.output_tokens == sum(item["response"]["body"]["usage"]["completion_tokens"]
                                            for item in answered)
