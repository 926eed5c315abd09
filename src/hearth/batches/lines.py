"""A batch's input lines: checked once, split into chunks, read back chunk by chunk.

Validation reads the input file once, a block at a time, in a worker
thread. Each line is checked as a batch request line (a JSON object with a
``custom_id`` unique in the file, ``method`` POST, ``url`` the batch's
endpoint, a ``body`` object); every problem is collected with its line
number, up to ``MAX_ERRORS``. Meanwhile the lines are grouped into chunks of
``CHUNK_LINES`` (fewer when they are large), each stored as a blob of its own,
so the job that runs a chunk reads only its lines however large the file, and
the batch no longer needs the input file once it is split.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hearth.batches.protocol import BatchError
from hearth.files.blobio import read_blob_sync
from hearth.files.checks import MAX_BATCH_REQUESTS
from hearth.store.blobs import BlobStore

# A chunk is one job's work: small enough to spread over workers, large enough to be worth a job.
CHUNK_LINES = 32
CHUNK_BYTES = 4 * 1024 * 1024
# A file with this many problems is reported by its first ones.
MAX_ERRORS = 100


def chunk_key(batch_id: str, index: int) -> str:
    return f"batches/{batch_id}/chunk-{index:06d}"


@dataclass(frozen=True)
class Line:
    """A request line as a chunk job runs it: where it is in the file, its custom_id, its body."""

    number: int
    custom_id: str
    body: dict[str, Any]


@dataclass
class CheckedInput:
    """What validation found: the chunks' line spans (first, end), or the problems."""

    spans: list[tuple[int, int]] = field(default_factory=list)
    errors: list[BatchError] = field(default_factory=list)
    model: str | None = None

    @property
    def total(self) -> int:
        return self.spans[-1][1] - 1 if self.spans else 0


class _LineChecker:
    """Checks lines one by one, remembering the custom_ids and models seen."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.errors: list[BatchError] = []
        self.custom_ids: set[str] = set()
        self.models: set[str] = set()

    def check(self, number: int, raw: bytes) -> None:
        if number > MAX_BATCH_REQUESTS:
            self._fail(number, "too_many_requests", f"A batch holds at most {MAX_BATCH_REQUESTS} requests.")
            return
        try:
            request = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            request = None
        if not isinstance(request, dict):
            self._fail(number, "invalid_json_line", "This line is not a JSON object.")
            return
        self._check_fields(number, request)

    def _check_fields(self, number: int, request: dict[str, Any]) -> None:
        for name in ("custom_id", "method", "url", "body"):
            if name not in request:
                self._fail(number, "missing_required_parameter", f"Missing required parameter: '{name}'.", name)
                return
        custom_id, body = request["custom_id"], request["body"]
        if not isinstance(custom_id, str) or not custom_id:
            self._fail(number, "invalid_value", "'custom_id' must be a non-empty string.", "custom_id")
        elif custom_id in self.custom_ids:
            self._fail(number, "duplicate_custom_id",
                       f"The custom_id {custom_id!r} is used by an earlier line; each must be unique.", "custom_id")
        elif request["method"] != "POST":
            self._fail(number, "invalid_method", "'method' must be \"POST\".", "method")
        elif request["url"] != self.endpoint:
            self._fail(number, "invalid_url", f"The line's url {request['url']!r} is not the batch's endpoint "
                       f"{self.endpoint!r}; every line of a batch goes to its one endpoint.", "url")
        elif not isinstance(body, dict):
            self._fail(number, "invalid_value", "'body' must be a JSON object.", "body")
        else:
            self.custom_ids.add(custom_id)
            if isinstance(model := body.get("model"), str):
                self.models.add(model)

    def _fail(self, number: int, code: str, message: str, param: str | None = None) -> None:
        self.errors.append(BatchError(code=code, message=f"Line {number}: {message}", param=param, line=number))


class _ChunkWriter:
    """Gathers checked lines into chunks and stores each as a blob once it is full."""

    def __init__(self, blobs: BlobStore, batch_id: str) -> None:
        self.blobs = blobs
        self.batch_id = batch_id
        self.spans: list[tuple[int, int]] = []
        self._lines: list[bytes] = []
        self._size = 0
        self._first = 1

    def add(self, number: int, raw: bytes) -> None:
        if not self._lines:
            self._first = number
        self._lines.append(raw)
        self._size += len(raw)
        if len(self._lines) >= CHUNK_LINES or self._size >= CHUNK_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        index = len(self.spans)
        self.blobs.put(chunk_key(self.batch_id, index), [b"\n".join(self._lines), b"\n"])
        self.spans.append((self._first, self._first + len(self._lines)))
        self._lines, self._size = [], 0

    def discard(self) -> None:
        for index in range(len(self.spans)):
            self.blobs.delete(chunk_key(self.batch_id, index))
        self.spans = []


def split_lines(blocks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """The lines of a stream of blocks, numbered from 1; a final newline ends the last line."""
    number, tail = 0, b""
    for block in blocks:
        pieces = (tail + block).split(b"\n")
        tail = pieces.pop()
        for piece in pieces:
            number += 1
            yield number, piece.removesuffix(b"\r")
    if tail:
        yield number + 1, tail.removesuffix(b"\r")


def check_and_split(blobs: BlobStore, source_key: str, batch_id: str, endpoint: str) -> CheckedInput:
    """Check every line of the input blob and store its chunks; with problems, store nothing."""
    checker = _LineChecker(endpoint)
    writer = _ChunkWriter(blobs, batch_id)
    try:
        for number, raw in split_lines(read_blob_sync(blobs, source_key)):
            checker.check(number, raw)
            if len(checker.errors) >= MAX_ERRORS:
                break
            if not checker.errors:
                writer.add(number, raw)
        writer.flush()
    except BaseException:
        writer.discard()
        raise
    if not checker.errors and not writer.spans:
        checker.errors.append(BatchError(code="empty_file", message="The input file holds no requests.",
                                         param="input_file_id"))
    if checker.errors:
        writer.discard()
        return CheckedInput(errors=checker.errors)
    model = next(iter(checker.models)) if len(checker.models) == 1 else None
    return CheckedInput(spans=writer.spans, model=model)


def read_chunk(blobs: BlobStore, batch_id: str, index: int, first_line: int) -> list[Line]:
    """A chunk's lines, as validation stored them."""
    lines = []
    for offset, raw in split_lines(read_blob_sync(blobs, chunk_key(batch_id, index))):
        request = json.loads(raw)
        lines.append(Line(first_line + offset - 1, request["custom_id"], request["body"]))
    return lines


def drop_chunks(blobs: BlobStore, batch_id: str, count: int) -> None:
    for index in range(count):
        blobs.delete(chunk_key(batch_id, index))
