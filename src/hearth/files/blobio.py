"""Moving bytes between the event loop and the (synchronous) blob store.

A write runs the store's ``put`` in a worker thread fed through a ``_Pipe``:
the loop goes on receiving the request while the thread writes what arrived
before, with at most ``DEPTH`` blocks of about ``BLOCK`` bytes in flight, so
memory stays bounded whatever the size. A block is a list of the chunks as
they were received, never copied into one buffer. An error raised by the
stream (a size limit, a bad line, a disconnect) aborts ``put`` through the
pipe, which then leaves nothing behind, and reaches the caller; an error inside
``put`` (a full disk) stops the loop side and is raised to the caller.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing, suppress
from typing import BinaryIO

import anyio
import anyio.to_thread

from hearth.store.blobs import BlobStore, inspected

BLOCK = 1024 * 1024
DEPTH = 8


async def batched(chunks: AsyncIterator[bytes], size: int = BLOCK) -> AsyncIterator[list[bytes]]:
    """Group a stream of chunks into lists holding about ``size`` bytes each."""
    batch: list[bytes] = []
    held = 0
    async for chunk in chunks:
        batch.append(chunk)
        held += len(chunk)
        if held >= size:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


async def capped(chunks: AsyncIterator[bytes], limit: int,
                 too_much: Callable[[], Exception]) -> AsyncIterator[bytes]:
    """Pass the stream through, raising ``too_much()`` once it exceeds ``limit`` bytes."""
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise too_much()
        yield chunk


class WriteAborted(Exception):
    """Raised inside ``put`` when the stream feeding it failed, so that it cleans up."""


class _End:
    def __init__(self, aborted: bool) -> None:
        self.aborted = aborted


class _Pipe:
    """Blocks of chunks from the event loop to one worker thread, ``depth`` at most in flight."""

    def __init__(self, depth: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._room = asyncio.Semaphore(depth)
        self._items: queue.SimpleQueue[list[bytes] | _End] = queue.SimpleQueue()
        self._reader_gone = False

    async def send(self, block: list[bytes]) -> bool:
        """Queue ``block``, waiting for room; False once the reader has stopped reading."""
        await self._room.acquire()
        if self._reader_gone:
            return False
        self._items.put(block)
        return True

    def close(self, *, aborted: bool = False) -> None:
        """No more blocks; if ``aborted``, the reader raises WriteAborted instead of ending."""
        self._items.put(_End(aborted))

    def chunks(self) -> Iterator[bytes]:
        """The chunks sent, in order; runs in the worker thread."""
        while not isinstance(block := self._items.get(), _End):
            yield from block
            self._loop.call_soon_threadsafe(self._room.release)
        if block.aborted:
            raise WriteAborted

    def reader_stopped(self) -> None:
        """Called from the worker thread when it reads no more, finished or not."""
        self._loop.call_soon_threadsafe(self._wake_sender)

    def _wake_sender(self) -> None:
        self._reader_gone = True
        self._room.release()


async def write_blob(store: BlobStore, key: str, chunks: AsyncIterator[bytes],
                     inspect: Callable[[bytes], None] | None = None) -> int:
    """Stream ``chunks`` into the blob ``key``; ``inspect`` sees each chunk in the thread."""
    pipe = _Pipe(DEPTH)
    received = pipe.chunks() if inspect is None else inspected(pipe.chunks(), inspect)

    def put() -> int:
        try:
            return store.put(key, received)
        finally:
            pipe.reader_stopped()

    writer = asyncio.ensure_future(anyio.to_thread.run_sync(put))
    try:
        async for block in batched(chunks):
            if not await pipe.send(block):
                break  # put failed; awaiting the writer raises why
    except BaseException:
        pipe.close(aborted=True)  # put then removes what it wrote
        with suppress(BaseException):
            await asyncio.shield(writer)
        raise
    pipe.close()
    return await writer


def read_blob_sync(store: BlobStore, key: str, size: int = BLOCK) -> Iterator[bytes]:
    with closing(store.open(key)) as stream:
        while block := stream.read(size):
            yield block


async def stream_blocks(stream: BinaryIO, size: int = BLOCK) -> AsyncIterator[bytes]:
    """An opened blob as an async stream of blocks, each read in a worker thread."""
    try:
        while block := await anyio.to_thread.run_sync(stream.read, size):
            yield block
    finally:
        stream.close()
