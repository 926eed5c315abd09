"""Moving bytes between the event loop and the (synchronous) blob store.

Writes run the store's ``put`` in a worker thread that pulls the request's
chunks from the loop one block at a time: memory stays at one block, and an
error raised by the stream (a size limit, a bad line, a disconnect) surfaces
inside ``put``, which then leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import closing
from typing import BinaryIO

import anyio
import anyio.from_thread
import anyio.to_thread

from hearth.store.blobs import BlobStore

BLOCK = 1024 * 1024


async def coalesce(chunks: AsyncIterator[bytes], size: int = BLOCK) -> AsyncIterator[bytes]:
    """Re-cut a stream of small chunks into blocks of about ``size`` bytes."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


async def capped(chunks: AsyncIterator[bytes], limit: int,
                 too_much: Callable[[], Exception]) -> AsyncIterator[bytes]:
    """Pass the stream through, raising ``too_much()`` once it exceeds ``limit`` bytes."""
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise too_much()
        yield chunk


async def _next_block(chunks: AsyncIterator[bytes]) -> bytes | None:
    return await anext(chunks, None)


def _pulled_from_loop(chunks: AsyncIterator[bytes]) -> Iterator[bytes]:
    while (block := anyio.from_thread.run(_next_block, chunks)) is not None:
        yield block


def inspected(blocks: Iterable[bytes], inspect: Callable[[bytes], None]) -> Iterator[bytes]:
    for block in blocks:
        inspect(block)
        yield block


async def write_blob(store: BlobStore, key: str, chunks: AsyncIterator[bytes],
                     inspect: Callable[[bytes], None] | None = None) -> int:
    """Stream ``chunks`` into the blob ``key``; ``inspect`` sees each block in the thread."""
    blocks = _pulled_from_loop(coalesce(chunks))
    if inspect is not None:
        blocks = inspected(blocks, inspect)
    return await anyio.to_thread.run_sync(store.put, key, blocks)


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
