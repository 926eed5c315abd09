"""Blob storage for file contents: a local directory or any S3-compatible store.

Blobs are written from a stream and read as one, so a file of any size passes
through in bounded memory. ``put`` returns only once the blob is durable, and
a failed or interrupted ``put`` leaves nothing readable under the key. The
interface is synchronous: callers run it in a worker thread.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from pathlib import Path
from typing import BinaryIO, Protocol

from hearth.settings import Settings

MiB = 1024 * 1024
# Bytes moved per call when one blob is copied into another.
COPY_SIZE = 8 * MiB


class BlobNotFound(Exception):
    pass


class BlobStore(Protocol):
    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store the stream under ``key`` durably; return its size in bytes."""

    def compose(self, key: str, sources: list[str]) -> int:
        """Store the concatenation of the blobs ``sources`` under ``key``, as ``put`` does."""

    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the blob; raises BlobNotFound."""

    def delete(self, key: str) -> None:
        """Remove the blob and any unfinished write of it; a missing key is no error."""

    def exists(self, key: str) -> bool: ...


class LocalBlobStore:
    """Blobs as files under ``root``; a write lands under a temporary name first.

    The temporary name is derived from the key, so ``delete`` also removes a
    write that a crash interrupted.
    """

    PARTIAL = ".partial"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"blob key escapes the store: {key!r}")
        return path

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        def fill(fh: BinaryIO, flushing: _FlushBehind) -> None:
            for chunk in chunks:
                fh.write(chunk)
                flushing.wrote(fh)

        return self._write(key, fill)

    def compose(self, key: str, sources: list[str]) -> int:
        def fill(fh: BinaryIO, flushing: _FlushBehind) -> None:
            for source in sources:
                with self.open(source) as src:
                    _copy_in_kernel(src, fh, lambda: flushing.wrote(fh))

        return self._write(key, fill)

    def _write(self, key: str, fill: Callable[[BinaryIO, _FlushBehind], None]) -> int:
        """Have ``fill`` write the blob under a temporary name; sync and rename it into place."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + self.PARTIAL)
        try:
            with partial.open("wb") as fh:
                fill(fh, _FlushBehind(fh.fileno()))
                fh.flush()
                size = fh.tell()
                os.fsync(fh.fileno())
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)  # the rename itself must survive a power cut
        return size

    def open(self, key: str) -> BinaryIO:
        try:
            return _ReadOnce(self._path(key))
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        path.with_name(path.name + self.PARTIAL).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


class _FlushBehind:
    """Has the kernel write a growing file back as it grows, and forget what is on disk.

    Left alone, a gigabyte blob would sit dirty in the page cache until the
    final fsync, which then waits for all of it at once, and it would push
    the models and the database out of the cache. ``posix_fadvise(DONTNEED)``
    starts writeback of the dirty pages in its range without waiting for it,
    and drops the pages already clean; so each full window is handed to
    writeback, and dropped one window later, once it is on disk. Writing is
    then bounded by the disk, not by memory, and the final fsync is short
    (PostgreSQL's ``*_flush_after`` settings do the same for the same reason).
    """

    WINDOW = 16 * MiB

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.previous = 0  # where the window handed to writeback last time starts
        self.current = 0  # where the window being written starts

    def wrote(self, fh: BinaryIO) -> None:
        """Note that ``fh`` (this file, buffered) has grown; called after every write."""
        end = fh.tell()
        if end - self.current < self.WINDOW or not hasattr(os, "posix_fadvise"):
            return
        fh.flush()
        os.posix_fadvise(self.fd, self.previous, end - self.previous, os.POSIX_FADV_DONTNEED)
        self.previous, self.current = self.current, end


class _ReadOnce(io.FileIO):
    """A blob file read front to back, once: read far ahead, and forget what was read.

    With the sequential hint the kernel reads ahead further (a cold 1 GB blob:
    1.4 GB/s without, 2.5 GB/s with); dropping each window once read keeps a
    download from pushing the models and the database out of the page cache.
    """

    WINDOW = _FlushBehind.WINDOW

    def __init__(self, path: Path) -> None:
        super().__init__(path, "rb")
        self._advise = hasattr(os, "posix_fadvise")
        self._read = self._dropped = 0
        if self._advise:
            os.posix_fadvise(self.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        data = super().read(size)
        self._read += len(data)
        if self._advise and self._read - self._dropped >= self.WINDOW:
            os.posix_fadvise(self.fileno(), self._dropped, self._read - self._dropped,
                             os.POSIX_FADV_DONTNEED)
            self._dropped = self._read
        return data


def _copy_in_kernel(src: BinaryIO, dst: BinaryIO, copied: Callable[[], None]) -> None:
    """Append ``src`` to ``dst`` without passing the bytes through Python where the OS can."""
    try:
        while os.copy_file_range(src.fileno(), dst.fileno(), COPY_SIZE):
            copied()
    except OSError as exc:  # another filesystem, or a kernel without it: copy in user space
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        while block := src.read(COPY_SIZE):
            dst.write(block)
            copied()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3BlobStore:
    """Blobs as objects in one bucket; large ones go up as multipart uploads.

    An object becomes visible only when its upload completes, so an
    interrupted write leaves at most an unfinished multipart upload, which
    ``delete`` aborts.
    """

    PART_SIZE = 8 * MiB  # S3's minimum is 5 MiB; 10,000 parts of 8 MiB cover 8 GB

    def __init__(self, client, bucket: str) -> None:  # client: a boto3 S3 client
        self.client = client
        self.bucket = bucket

    @classmethod
    def from_settings(cls, settings: Settings) -> S3BlobStore:
        import boto3  # imported here so the embedded default does not need it

        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
        )
        return cls(client, settings.s3_bucket)

    def ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self.client.exceptions.ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        buffer = bytearray()
        iterator = iter(chunks)
        for chunk in iterator:
            buffer += chunk
            if len(buffer) >= self.PART_SIZE:
                return self._put_multipart(key, buffer, iterator)
        self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer))
        return len(buffer)

    def _put_multipart(self, key: str, buffer: bytearray, rest: Iterable[bytes]) -> int:
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        parts: list[dict] = []
        size = 0

        def send(body: bytes) -> None:
            number = len(parts) + 1
            etag = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                           PartNumber=number, Body=body)["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})

        try:
            for chunk in rest:
                buffer += chunk
                while len(buffer) >= self.PART_SIZE:
                    send(bytes(buffer[:self.PART_SIZE]))
                    size += self.PART_SIZE
                    del buffer[:self.PART_SIZE]
            if buffer:
                send(bytes(buffer))
                size += len(buffer)
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": parts})
        except BaseException:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise
        return size

    def compose(self, key: str, sources: list[str]) -> int:
        # Streamed through this process: server-side copies need parts of 5 MiB or more.
        return self.put(key, (block for source in sources for block in _read(self.open(source))))

    def open(self, key: str) -> BinaryIO:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except self.client.exceptions.NoSuchKey:
            raise BlobNotFound(key) from None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)
        unfinished = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        for upload in unfinished.get("Uploads", []):
            if upload["Key"] == key:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                   UploadId=upload["UploadId"])

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.ClientError:
            return False
        return True


def _read(stream: BinaryIO) -> Iterator[bytes]:
    with closing(stream):
        while block := stream.read(COPY_SIZE):
            yield block


def open_blob_store(settings: Settings) -> BlobStore:
    """The store the settings name, ready to use."""
    if settings.blob_store == "s3":
        s3 = S3BlobStore.from_settings(settings)
        s3.ensure_bucket()
        return s3
    return LocalBlobStore(settings.data_dir / "blobs")
