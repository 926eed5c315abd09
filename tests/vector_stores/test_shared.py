"""The shared stack: two server processes on one PostgreSQL database and one S3 bucket (moto), the vector
index in that bucket. What one process indexes the other searches; what one deletes the other no longer finds.
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, start_server, stop_server
from tests.storage_backends import Backend, make_backend


@pytest.fixture(scope="module")
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         models_dir: Path) -> Iterator[tuple[LiveServer, LiveServer, Backend]]:
    tmp = tmp_path_factory.mktemp("vector-shared")
    backend = make_backend("postgres-s3", tmp, request)
    models = {"HEARTH_DEFAULT_MODELS": '["all-minilm-l6-v2"]'}
    first = start_server(tmp / "a", models_dir, **models, **backend.env)
    # The second serves requests only (every job runs in the first), with the first's keys: one database.
    (tmp / "b").mkdir()
    shutil.copy(tmp / "a" / "initial-keys.txt", tmp / "b" / "initial-keys.txt")
    second = start_server(tmp / "b", models_dir, **models, **backend.env, HEARTH_RUN_WORKER="false")
    yield first, second, backend
    for live in (first, second):
        stop_server(live)
        assert "Traceback" not in live.log(), live.log()
    backend.db.dispose()


def test_two_processes_share_one_index_in_s3(pair: tuple[LiveServer, LiveServer, Backend]) -> None:
    first, second, backend = pair
    a, b = first.client(), second.client()
    ids = [a.files.create(file=(name, io.BytesIO(text)), purpose="assistants").id for name, text in (
        ("tides.txt", b"High tide at Gullhaven harbour is at 06:40 on Mondays."),
        ("bread.txt", b"The bakery on Mill Lane sells rye bread on Fridays."))]
    store = b.vector_stores.create(name="shared", file_ids=ids)
    deadline = time.monotonic() + 300
    while b.vector_stores.retrieve(store.id).status == "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert b.vector_stores.retrieve(store.id).file_counts.completed == 2
    assert any(key.startswith("vector_index/") for key in backend.blob_keys(first.data_dir))

    hits = b.vector_stores.search(store.id, query="When is high tide in the harbour?")
    assert hits.data[0].file_id == ids[0]
    a.vector_stores.files.delete(ids[0], vector_store_id=store.id)
    assert {hit.file_id for hit in b.vector_stores.search(store.id, query="high tide").data} == {ids[1]}
