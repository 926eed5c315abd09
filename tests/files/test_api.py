"""/v1/files through the official SDK, on SQLite + disk and on PostgreSQL + S3."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import stop_server
from tests.http.test_foundation import assert_envelope
from tests.spec import assert_matches_schema
from tests.storage_backends import (
    FilesServer,
    MiB,
    make_backend,
    start_files_server,
)


def batch_line(custom_id: str, **overrides: object) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": "hi"}, **overrides}


def jsonl(*rows: object) -> bytes:
    return "\n".join(json.dumps(row) for row in rows).encode() + b"\n"


def raw(server: FilesServer, api_key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=server.live.base_url, timeout=60,
                        headers={"Authorization": f"Bearer {api_key or server.live.api_key}"})


def test_file_lifecycle(files_server: FilesServer) -> None:
    client = files_server.client()
    content = os.urandom(300_000)
    created = client.files.create(file=("notes.bin", content), purpose="assistants")
    body = created.model_dump(exclude_none=True)
    assert_matches_schema(body, "OpenAIFile")
    assert created.id.startswith("file-")
    assert (created.bytes, created.filename, created.purpose, created.status) == \
        (300_000, "notes.bin", "assistants", "processed")
    assert abs(created.created_at - time.time()) < 60

    assert client.files.retrieve(created.id) == created
    assert client.files.content(created.id).read() == content
    assert f"files/{created.id}" in files_server.blob_keys()

    deleted = client.files.delete(created.id)
    assert_matches_schema(deleted.model_dump(), "DeleteFileResponse")
    assert (deleted.id, deleted.deleted) == (created.id, True)
    assert f"files/{created.id}" not in files_server.blob_keys()
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)


def test_upload_from_path_and_download_streams(files_server: FilesServer,
                                               tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(jsonl(*(batch_line(f"r{i}") for i in range(200))))
    client = files_server.client()
    created = client.files.create(file=path, purpose="batch")
    assert (created.filename, created.bytes) == ("data.jsonl", path.stat().st_size)
    # Batch files expire after 30 days by default, as the API documents.
    assert created.expires_at == created.created_at + 30 * 24 * 3600
    with client.files.with_streaming_response.content(created.id) as response:
        assert response.headers["content-length"] == str(path.stat().st_size)
        assert b"".join(response.iter_bytes()) == path.read_bytes()


def test_expires_after_is_honoured(files_server: FilesServer) -> None:
    created = files_server.client().files.create(
        file=("a.txt", b"a"), purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": 7200})
    assert created.expires_at == created.created_at + 7200


def test_list_pages_both_ways(files_server: FilesServer) -> None:
    client = files_server.other_client()  # a fresh project: the listing is ours alone
    created = [client.files.create(file=(f"f{i}.txt", b"x"), purpose="user_data")
               for i in range(5)]
    # The listing orders by creation second, then id (files made in one second tie).
    ids = [f.id for f in sorted(created, key=lambda f: (f.created_at, f.id))]
    newest_first = ids[::-1]

    first = client.files.list(limit=2)
    assert_matches_schema(first.model_dump(exclude_none=True), "ListFilesResponse")
    assert [f.id for f in first.data] == newest_first[:2]
    assert (first.first_id, first.last_id, first.has_more) == (*newest_first[:2], True)
    assert [f.id for f in client.files.list(limit=2)] == newest_first  # auto-paging
    assert [f.id for f in client.files.list(order="asc", limit=3)] == ids

    second = client.files.list(limit=2, after=newest_first[1])
    assert [f.id for f in second.data] == newest_first[2:4]
    back = raw(files_server, client.api_key).get(
        "/v1/files", params={"limit": 2, "before": newest_first[2]}).json()
    assert [f["id"] for f in back["data"]] == newest_first[:2]
    last = client.files.list(limit=2, after=newest_first[3])
    assert ([f.id for f in last.data], last.has_more) == (newest_first[4:], False)


def test_list_filters_by_purpose(files_server: FilesServer) -> None:
    client = files_server.other_client()
    batch = client.files.create(file=("b.jsonl", jsonl(batch_line("a"))), purpose="batch")
    client.files.create(file=("v.txt", b"v"), purpose="user_data")
    assert [f.id for f in client.files.list(purpose="batch")] == [batch.id]
    assert len(client.files.list().data) == 2


def test_bad_list_parameters(files_server: FilesServer) -> None:
    with raw(files_server) as http:
        assert_envelope(http.get("/v1/files", params={"limit": 0}), 400, param="limit",
                        code="integer_out_of_range")
        assert_envelope(http.get("/v1/files", params={"order": "sideways"}), 400, param="order")
        assert_envelope(http.get("/v1/files", params={"after": "file-nope"}), 400,
                        param="after")


def test_projects_see_only_their_files(files_server: FilesServer) -> None:
    mine = files_server.client().files.create(file=("mine.txt", b"mine"), purpose="user_data")
    other = files_server.other_client()
    for call in (other.files.retrieve, other.files.content, other.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(mine.id)
    assert mine.id not in [f.id for f in other.files.list()]
    assert files_server.client().files.content(mine.id).read() == b"mine"


@pytest.mark.parametrize(("lines", "line_number", "reason"), [
    ([batch_line("a"), "not json"], 2, "not valid JSON"),
    ([batch_line("a"), batch_line("a")], 2, "custom_id"),
    ([batch_line("a", method="GET")], 1, "method"),
    ([batch_line("a", url="/v1/images/generations")], 1, "url"),
    ([batch_line("a"), batch_line("b", body="text")], 2, "body"),
    ([batch_line("a"), batch_line("b"), [1, 2]], 3, "JSON object"),
    ([{"method": "POST"}], 1, "custom_id"),
])
def test_batch_file_bad_line_is_named(files_server: FilesServer, lines: list,
                                      line_number: int, reason: str) -> None:
    data = b"\n".join(row.encode() if isinstance(row, str) else json.dumps(row).encode()
                      for row in lines)
    before = files_server.blob_keys()
    with raw(files_server) as http:
        response = http.post("/v1/files", data={"purpose": "batch"},
                             files={"file": ("batch.jsonl", data)})
    error = assert_envelope(response, 400, param="file", code="invalid_file_format")
    assert f"line {line_number}" in error["message"] and reason in error["message"]
    assert files_server.blob_keys() == before


def test_fine_tune_file_is_checked(files_server: FilesServer) -> None:
    client = files_server.client()
    good = {"messages": [{"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": "Hello!"}]}
    created = client.files.create(file=("train.jsonl", jsonl(good, good)), purpose="fine-tune")
    assert created.purpose == "fine-tune"
    bad = {"messages": [{"role": "wizard", "content": "Hi"}]}
    with pytest.raises(openai.BadRequestError, match="line 2"):
        client.files.create(file=("train.jsonl", jsonl(good, bad)), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.files.create(file=("train.jsonl", b""), purpose="fine-tune")


def test_purpose_after_the_file_is_still_checked(files_server: FilesServer) -> None:
    # curl -F file=@x -F purpose=batch sends the file first; the form is read in order.
    boundary = "hearth-test-boundary"

    def form(data: bytes) -> bytes:
        return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"b.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n").encode() \
            + data + (f"\r\n--{boundary}\r\nContent-Disposition: form-data; "
                      f"name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}--\r\n").encode()

    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    with raw(files_server) as http:
        ok = http.post("/v1/files", content=form(jsonl(batch_line("a"))), headers=headers)
        assert ok.status_code == 200, ok.text
        assert ok.json()["purpose"] == "batch"
        bad = http.post("/v1/files", content=form(jsonl(batch_line("a"), batch_line("a"))),
                        headers=headers)
        assert "line 2" in assert_envelope(bad, 400, param="file",
                                           code="invalid_file_format")["message"]


def test_request_mistakes_are_400s(files_server: FilesServer) -> None:
    with raw(files_server) as http:
        assert_envelope(http.post("/v1/files", data={"purpose": "spaceship"},
                                  files={"file": ("a.txt", b"a")}), 400, param="purpose")
        assert_envelope(http.post("/v1/files", files={"file": ("a.txt", b"a")}), 400,
                        param="purpose")
        assert_envelope(http.post("/v1/files", data={"purpose": "user_data"},
                                  files={"upload": ("a.txt", b"a")}), 400, param="file")
        assert_envelope(http.post("/v1/files", json={"purpose": "user_data"}), 415,
                        code="unsupported_media_type")
        assert_envelope(http.post("/v1/files", content=b"--x\r\ngarbage",
                                  headers={"content-type": "multipart/form-data; boundary=x"}),
                        400, param="file")
        assert_envelope(http.post("/v1/files", content=b"a",
                                  headers={"content-type": "multipart/form-data"}), 400)
        assert_envelope(http.get("/v1/files/file-missing"), 404, param="id")


def test_file_over_the_limit_is_413_and_leaves_nothing(files_server: FilesServer) -> None:
    before = files_server.blob_keys()
    client = files_server.client()
    just_over = os.urandom(2 * MiB + 1)  # the server under test allows 2 MiB a file
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("big.bin", just_over), purpose="user_data")
    assert caught.value.status_code == 413
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("huge.bin", os.urandom(4 * MiB)), purpose="user_data")
    assert caught.value.status_code == 413
    assert files_server.blob_keys() == before
    assert files_server.backend.pending_rows() == 0
    assert client.files.create(file=("fits.bin", just_over[:2 * MiB]),
                               purpose="user_data").bytes == 2 * MiB


def _slow_body(first: bytes, started: list[bool]) -> Iterator[bytes]:
    yield first
    started.append(True)
    while True:  # the server dies before this ends
        time.sleep(0.2)
        yield b"x" * 1024


@pytest.mark.parametrize("kind", ["sqlite-disk", "postgres-s3"])
def test_sigkill_mid_upload_restarts_consistent(kind: str, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    backend = make_backend(kind, tmp_path, request)
    data_dir = tmp_path / "data"
    live = start_files_server(data_dir, backend, HEARTH_MAX_FILE_BYTES=str(64 * MiB))
    client = live.client()
    kept = client.files.create(file=("kept.txt", b"kept"), purpose="user_data")
    boundary = "sigkill-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
            f"user_data\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"doomed.bin\"\r\n\r\n").encode()
    # Over one S3 part, so the S3 store is mid multipart upload when the server dies.
    started: list[bool] = []
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        def send() -> None:
            try:
                http.post("/v1/files", content=_slow_body(head + os.urandom(9 * MiB), started),
                          headers={"content-type": f"multipart/form-data; boundary={boundary}",
                                   "authorization": f"Bearer {live.api_key}"})
            except httpx.HTTPError:
                pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        deadline = time.monotonic() + 20
        while not (started and backend.pending_rows()) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # let the first blocks reach the store
        assert backend.pending_rows() == 1
        os.kill(live.process.pid, signal.SIGKILL)
        live.process.wait(timeout=10)
        sender.join(timeout=10)

    restarted = start_files_server(data_dir, backend, HEARTH_MAX_FILE_BYTES=str(64 * MiB))
    try:
        client = restarted.client()
        assert [f.id for f in client.files.list()] == [kept.id]
        assert client.files.content(kept.id).read() == b"kept"
        assert backend.pending_rows() == 0
        assert backend.blob_keys(data_dir) == {f"files/{kept.id}"}
        assert backend.unfinished_s3_uploads() == []
    finally:
        stop_server(restarted)
        backend.db.dispose()
    assert "Traceback" not in restarted.log(), restarted.log()
