"""/v1/uploads through the official SDK, on SQLite + disk and on PostgreSQL + S3."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from sqlalchemy import update

from hearth.store.tables import Upload
from tests.conftest import LiveServer, stop_server
from tests.spec import assert_matches_schema
from tests.storage_backends import (
    FilesServer,
    MiB,
    make_backend,
    start_files_server,
)


def part_keys(server: FilesServer, upload_id: str) -> set[str]:
    return {key for key in server.blob_keys() if key.startswith(f"uploads/{upload_id}/")}


def new_upload(client: openai.OpenAI, size: int, purpose: str = "user_data"):
    return client.uploads.create(bytes=size, filename="parts.bin", purpose=purpose,
                                 mime_type="application/octet-stream")


def test_upload_file_chunked_from_path(files_server: FilesServer, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(5 * MiB + 123))
    client = files_server.client()
    upload = client.uploads.upload_file_chunked(
        file=path, mime_type="application/octet-stream", purpose="assistants",
        part_size=MiB, md5=hashlib.md5(path.read_bytes()).hexdigest())
    assert_matches_schema(upload.model_dump(exclude_none=True), "Upload")
    assert (upload.status, upload.bytes, upload.filename) == ("completed", path.stat().st_size,
                                                              "big.bin")
    assert upload.file is not None and upload.file.bytes == upload.bytes
    assert_matches_schema(upload.file.model_dump(exclude_none=True), "OpenAIFile")
    assert client.files.retrieve(upload.file.id).filename == "big.bin"
    assert client.files.content(upload.file.id).read() == path.read_bytes()
    assert part_keys(files_server, upload.id) == set()


def test_upload_file_chunked_from_bytes(files_server: FilesServer) -> None:
    data = json.dumps({"messages": [{"role": "user", "content": "hi"},
                                    {"role": "assistant", "content": "hello"}]}).encode() + b"\n"
    upload = files_server.client().uploads.upload_file_chunked(
        file=data * 50, filename="train.jsonl", bytes=len(data) * 50,
        mime_type="application/jsonl", purpose="fine-tune", part_size=1000)
    assert upload.file is not None and upload.file.purpose == "fine-tune"


def test_parts_are_joined_in_the_listed_order(files_server: FilesServer) -> None:
    client = files_server.client()
    upload = new_upload(client, 9)
    assert_matches_schema(upload.model_dump(), "Upload")
    assert (upload.status, upload.file) == ("pending", None)
    assert upload.expires_at == upload.created_at + 3600
    parts = [client.uploads.parts.create(upload_id=upload.id, data=chunk)
             for chunk in (b"aaa", b"bbb", b"ccc")]
    assert_matches_schema(parts[0].model_dump(), "UploadPart")
    assert parts[0].upload_id == upload.id and parts[0].id.startswith("part_")
    done = client.uploads.complete(upload_id=upload.id,
                                   part_ids=[parts[2].id, parts[0].id, parts[1].id])
    assert client.files.content(done.file.id).read() == b"cccaaabbb"
    with pytest.raises(openai.BadRequestError, match="completed"):
        client.uploads.parts.create(upload_id=upload.id, data=b"more")


def test_complete_checks_bytes_parts_and_md5(files_server: FilesServer) -> None:
    client = files_server.client()
    upload = new_upload(client, 6)
    first = client.uploads.parts.create(upload_id=upload.id, data=b"abc")
    second = client.uploads.parts.create(upload_id=upload.id, data=b"def")
    stranger = client.uploads.parts.create(upload_id=new_upload(client, 3).id, data=b"xyz")
    files_before = {f.id for f in client.files.list()}

    for part_ids, match in (([first.id], "3 bytes"), ([first.id, stranger.id], "No such part"),
                            ([first.id, first.id], "more than once"),
                            ([first.id, "part_nope"], "No such part")):
        with pytest.raises(openai.BadRequestError, match=match) as caught:
            client.uploads.complete(upload_id=upload.id, part_ids=part_ids)
        assert caught.value.param == "part_ids"
    with pytest.raises(openai.BadRequestError, match="md5") as caught:
        client.uploads.complete(upload_id=upload.id, part_ids=[first.id, second.id],
                                md5=hashlib.md5(b"something else").hexdigest())
    assert caught.value.param == "md5"
    assert {f.id for f in client.files.list()} == files_before
    assert files_server.backend.pending_rows() == 0

    done = client.uploads.complete(upload_id=upload.id, part_ids=[first.id, second.id],
                                   md5=hashlib.md5(b"abcdef").hexdigest())
    assert done.status == "completed"


def test_parts_cannot_exceed_the_declared_bytes(files_server: FilesServer) -> None:
    client = files_server.client()
    upload = new_upload(client, 4)
    client.uploads.parts.create(upload_id=upload.id, data=b"abc")
    with pytest.raises(openai.BadRequestError, match="exceed"):
        client.uploads.parts.create(upload_id=upload.id, data=b"de")
    assert len(part_keys(files_server, upload.id)) == 1


def test_size_limits(files_server: FilesServer) -> None:
    client = files_server.client()  # the server under test allows 1 MiB parts, 6 MiB uploads
    with pytest.raises(openai.BadRequestError) as caught:
        new_upload(client, 6 * MiB + 1)
    assert caught.value.param == "bytes"
    upload = new_upload(client, 3 * MiB)
    with pytest.raises(openai.APIStatusError) as caught:
        client.uploads.parts.create(upload_id=upload.id, data=os.urandom(MiB + 1))
    assert caught.value.status_code == 413
    assert part_keys(files_server, upload.id) == set()
    assert files_server.backend.pending_rows() == 0


def test_cancel_discards_the_parts(files_server: FilesServer) -> None:
    client = files_server.client()
    upload = new_upload(client, 6)
    part = client.uploads.parts.create(upload_id=upload.id, data=b"abc")
    assert len(part_keys(files_server, upload.id)) == 1
    cancelled = client.uploads.cancel(upload.id)
    assert_matches_schema(cancelled.model_dump(exclude_none=True), "Upload")
    assert cancelled.status == "cancelled"
    assert part_keys(files_server, upload.id) == set()
    with pytest.raises(openai.BadRequestError, match="cancelled"):
        client.uploads.parts.create(upload_id=upload.id, data=b"def")
    with pytest.raises(openai.BadRequestError, match="cancelled"):
        client.uploads.complete(upload_id=upload.id, part_ids=[part.id])
    with pytest.raises(openai.BadRequestError):
        client.uploads.cancel(upload.id)


def test_batch_upload_is_checked_when_completed(files_server: FilesServer) -> None:
    line = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/embeddings",
                       "body": {"input": "x"}}).encode() + b"\n"
    client = files_server.client()
    with pytest.raises(openai.BadRequestError, match="line 2"):
        client.uploads.upload_file_chunked(file=line * 2, filename="b.jsonl",
                                           bytes=len(line) * 2, mime_type="application/jsonl",
                                           purpose="batch")
    assert files_server.backend.pending_rows() == 0


def test_uploads_belong_to_their_project(files_server: FilesServer) -> None:
    client = files_server.client()
    upload = new_upload(client, 3)
    part = client.uploads.parts.create(upload_id=upload.id, data=b"abc")
    other = files_server.other_client()
    with pytest.raises(openai.NotFoundError):
        other.uploads.parts.create(upload_id=upload.id, data=b"abc")
    with pytest.raises(openai.NotFoundError):
        other.uploads.complete(upload_id=upload.id, part_ids=[part.id])
    with pytest.raises(openai.NotFoundError):
        other.uploads.cancel(upload.id)
    assert client.uploads.complete(upload_id=upload.id, part_ids=[part.id]).status == "completed"


def test_request_mistakes_are_400s(files_server: FilesServer) -> None:
    client = files_server.client()
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.create(bytes=3, filename="a", purpose="spaceship", mime_type="text/plain")
    assert caught.value.param == "purpose"
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.create(bytes=-1, filename="a", purpose="user_data", mime_type="text/plain")
    assert caught.value.param == "bytes"
    upload = new_upload(client, 3)
    with pytest.raises(openai.APIStatusError) as caught:
        client.uploads.complete(upload_id=upload.id, part_ids=[],
                                extra_headers={"content-type": "text/plain"})
    assert caught.value.status_code == 415
    with pytest.raises(openai.NotFoundError):
        client.uploads.cancel("upload_missing")


@pytest.fixture
def quick_expiry_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[
        tuple[LiveServer, FilesServer]]:
    backend = make_backend("sqlite-disk", tmp_path, request)
    live = start_files_server(tmp_path / "data", backend, HEARTH_SWEEP_INTERVAL_SECONDS="0.5")
    yield live, FilesServer(live, backend)
    stop_server(live)
    backend.db.dispose()
    assert "Traceback" not in live.log(), live.log()


def test_uploads_expire_and_lose_their_parts(quick_expiry_server) -> None:
    """Made overdue in the database rather than by waiting out a short expiry, so a slow
    machine cannot expire an Upload before its first part arrives."""
    live, server = quick_expiry_server
    client = live.client()
    swept = new_upload(client, 6)
    client.uploads.parts.create(upload_id=swept.id, data=b"abc")
    touched = new_upload(client, 6)
    client.uploads.parts.create(upload_id=touched.id, data=b"abc")
    assert part_keys(server, swept.id) and part_keys(server, touched.id)
    with server.backend.db.session() as session:
        session.execute(update(Upload).where(Upload.id.in_([swept.id, touched.id]))
                        .values(expires_at=int(time.time()) - 1))
    deadline = time.monotonic() + 120
    while part_keys(server, swept.id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert part_keys(server, swept.id) == set()  # the background sweep
    with pytest.raises(openai.BadRequestError, match="expired"):
        client.uploads.parts.create(upload_id=touched.id, data=b"def")
    assert part_keys(server, touched.id) == set()
