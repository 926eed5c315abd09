"""S3BlobStore against a real S3 API (moto's server on loopback): joining blobs."""

from __future__ import annotations

import os
import secrets

import boto3
import pytest

from hearth.files.blobio import read_blob_sync
from hearth.store.blobs import BlobNotFound, S3BlobStore

MiB = 1024 * 1024


class CountingClient:
    """The boto3 client, counting the calls that move bytes."""

    def __init__(self, client: object) -> None:
        self._client = client
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> object:
        attribute = getattr(self._client, name)
        if name in {"upload_part_copy", "upload_part", "put_object", "get_object"}:
            def counted(*args: object, **kwargs: object) -> object:
                self.calls[name] = self.calls.get(name, 0) + 1
                return attribute(*args, **kwargs)
            return counted
        return attribute


@pytest.fixture
def store(moto_endpoint: str) -> S3BlobStore:
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    s3 = S3BlobStore(CountingClient(client), f"unit-{secrets.token_hex(4)}")
    s3.ensure_bucket()
    return s3


def test_parts_of_5_mib_are_joined_inside_s3(store: S3BlobStore) -> None:
    pieces = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1000)]
    for index, piece in enumerate(pieces):
        store.put(f"parts/{index}", [piece])
    seen = bytearray()
    store.client.calls.clear()
    assert store.compose("joined", ["parts/1", "parts/0", "parts/2"],
                         inspect=seen.extend) == 10 * MiB + 1000
    expected = pieces[1] + pieces[0] + pieces[2]
    assert bytes(seen) == expected
    # The bytes were read once for inspection and never sent back up.
    assert store.client.calls.get("upload_part_copy") == 3
    assert "upload_part" not in store.client.calls and "put_object" not in store.client.calls
    assert b"".join(read_blob_sync(store, "joined")) == expected


def test_small_parts_are_streamed(store: S3BlobStore) -> None:
    store.put("a", [b"alpha-"])
    store.put("b", [b"beta"])
    store.client.calls.clear()
    assert store.compose("joined", ["a", "b"]) == 10
    assert "upload_part_copy" not in store.client.calls
    assert b"".join(read_blob_sync(store, "joined")) == b"alpha-beta"


def test_joining_a_missing_blob_leaves_nothing(store: S3BlobStore) -> None:
    store.put("a", [os.urandom(5 * MiB)])
    with pytest.raises(BlobNotFound):
        store.compose("joined", ["a", "missing"])
    assert not store.exists("joined")
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
