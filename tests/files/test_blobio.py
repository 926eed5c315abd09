"""The write path from the event loop into a blob store: order, bounds, and failures."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from hearth.files import blobio
from hearth.store.blobs import LocalBlobStore

KiB = 1024


async def _chunks(count: int, size: int, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for index in range(count):
        if index == fail_after:
            raise ValueError("the client went away")
        yield bytes([index % 251]) * size
        await asyncio.sleep(0)


def _expected(count: int, size: int) -> bytes:
    return b"".join(bytes([index % 251]) * size for index in range(count))


def test_write_blob_keeps_order_and_size(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    seen: list[int] = []
    size = asyncio.run(blobio.write_blob(store, "a/b", _chunks(300, 37 * KiB),
                                         inspect=lambda chunk: seen.append(len(chunk))))
    assert size == 300 * 37 * KiB
    assert (tmp_path / "a" / "b").read_bytes() == _expected(300, 37 * KiB)
    assert sum(seen) == size


def test_a_failing_stream_leaves_nothing(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(ValueError, match="went away"):
        asyncio.run(blobio.write_blob(store, "k", _chunks(100, 64 * KiB, fail_after=60)))
    assert list(tmp_path.iterdir()) == []


class _FullDisk(LocalBlobStore):
    """Fails like a full disk once ``room`` bytes are written."""

    def __init__(self, root: Path, room: int) -> None:
        super().__init__(root)
        self.room = room

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        def until_full() -> Iterable[bytes]:
            written = 0
            for chunk in chunks:
                written += len(chunk)
                if written > self.room:
                    raise OSError(28, "No space left on device")
                yield chunk

        return super().put(key, until_full())


def test_a_failing_store_stops_the_stream(tmp_path: Path) -> None:
    store = _FullDisk(tmp_path, room=3 * blobio.BLOCK)
    consumed = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal consumed
        while True:
            consumed += 1
            yield b"x" * (64 * KiB)

    with pytest.raises(OSError, match="No space"):
        asyncio.run(asyncio.wait_for(blobio.write_blob(store, "k", endless()), timeout=30))
    # The loop side stopped within the pipe's depth of the failure, not at the end of time.
    assert consumed * 64 * KiB <= (3 + blobio.DEPTH + 2) * blobio.BLOCK
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("direct", [True, False], ids=["O_DIRECT", "page-cache"])
def test_local_blobs_round_trip_past_many_buffers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  direct: bool) -> None:
    """Buffering, padding and cutting back, write-back and drop-behind must not lose a byte."""
    from hearth.store import blobs

    monkeypatch.setattr(blobs._BlobWriter, "BUFFER", 64 * KiB)
    monkeypatch.setattr(blobs._BlobWriter, "WINDOW", 256 * KiB)
    monkeypatch.setattr(blobs._ReadOnce, "WINDOW", 256 * KiB)
    if not direct:
        monkeypatch.delattr(os, "O_DIRECT", raising=False)
    with blobs._BlobWriter(tmp_path / "probe") as probe:
        assert probe.direct is direct  # this disk takes O_DIRECT; without the flag, the cache
    (tmp_path / "probe").unlink()
    store = LocalBlobStore(tmp_path)
    data = os.urandom(5 * 1024 * KiB + 123)  # not a whole number of blocks
    pieces = [data[i:i + 100 * KiB + 7] for i in range(0, len(data), 100 * KiB + 7)]
    assert store.put("one", pieces) == len(data)
    assert (tmp_path / "one").read_bytes() == data
    assert store.put("empty", []) == 0 and (tmp_path / "empty").read_bytes() == b""
    assert store.put("small", [b"abc"]) == 3 and (tmp_path / "small").read_bytes() == b"abc"
    assert store.compose("two", ["one", "one"]) == 2 * len(data)
    read_back = b"".join(blobio.read_blob_sync(store, "two", size=70 * KiB))
    assert hashlib.sha256(read_back).hexdigest() == hashlib.sha256(data + data).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "one", "small", "two.joined"]


def test_joined_blobs_share_files_and_outlive_their_sources(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.put("parts/a", [b"alpha-"])
    store.put("parts/b", [b"beta-"])
    store.put("parts/c", [b"gamma"])
    assert store.compose("joined", ["parts/b", "parts/a"]) == 11
    assert store.compose("twice", ["joined", "parts/c", "joined"]) == 27
    seen = bytearray()
    assert store.compose("checked", ["parts/a", "parts/c"], inspect=seen.extend) == 11
    assert bytes(seen) == b"alpha-gamma"
    # Nothing was copied: the joined blobs hold links to the parts' own files.
    assert (tmp_path / "twice.joined" / "0").stat().st_ino == (tmp_path / "parts" / "b").stat().st_ino
    for part in ("parts/a", "parts/b", "parts/c"):
        store.delete(part)
    assert b"".join(blobio.read_blob_sync(store, "joined", size=3)) == b"beta-alpha-"
    with store.open("twice") as stream:
        assert stream.read() == b"beta-alpha-gammabeta-alpha-"
    assert store.exists("twice") and not store.exists("parts/a")
    store.delete("twice")
    assert not store.exists("twice")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checked.joined", "joined.joined", "parts"]


def test_joining_a_missing_blob_leaves_nothing(tmp_path: Path) -> None:
    from hearth.store.blobs import BlobNotFound

    store = LocalBlobStore(tmp_path)
    store.put("a", [b"x"])
    with pytest.raises(BlobNotFound):
        store.compose("joined", ["a", "missing"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
