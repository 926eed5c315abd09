"""Files: create from a streamed form, list, retrieve, delete, download; and upkeep.

Every write follows one order so a crash at any point leaves a consistent
store: a ``pending`` row (invisible) is committed first, the blob is written
and made durable, and only then does the row turn ``processed``. A failure
deletes both; a crash leaves the pending row, which tells the restarted
server which blob to remove. Deletion is the mirror image: hide the row, drop
the blob, drop the row.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio.to_thread
from pydantic import ValidationError
from sqlalchemy.orm import Session

from hearth.accounting.meter import Meter, UsageEvent
from hearth.caller import Caller
from hearth.errors import InvalidRequest, NotFound, PayloadTooLarge
from hearth.files import writers
from hearth.files.blobio import capped, read_blob_sync, stream_blocks, write_blob
from hearth.files.checks import ContentCheck, NoCheck, content_check
from hearth.files.protocol import CreateFileForm, DeleteFileResponse, OpenAIFile
from hearth.files.writers import WriterLease
from hearth.forms import IncomingForm
from hearth.settings import Settings
from hearth.store import files as repo
from hearth.store.blobs import BlobNotFound, BlobStore, open_blob_store
from hearth.store.db import Database
from hearth.store.pagination import PageRequest
from hearth.store.tables import File, UploadPart

log = logging.getLogger("hearth.files")

# Batch files expire after 30 days unless the client says otherwise, as in the API.
BATCH_FILE_EXPIRY = 30 * 24 * 3600


@dataclass(frozen=True)
class FileStorage:
    """What the Files and Uploads services work with; one per server."""

    db: Database
    blobs: BlobStore
    settings: Settings
    meter: Meter
    # Names this process's in-flight writes, so recovery cleans only those of processes that are gone.
    writer: str
    # Holds ``writer`` for the process's life (None where the caller manages its own id).
    lease: WriterLease | None = field(default=None, compare=False, repr=False)

    def check_for(self, purpose: str) -> ContentCheck:
        # A batch line is one request to another endpoint: it may be as large as one.
        return content_check(purpose, self.settings.max_json_body_bytes)


def file_object(record: File) -> OpenAIFile:
    return OpenAIFile(id=record.id, bytes=record.bytes, created_at=record.created_at,
                      expires_at=record.expires_at, filename=record.filename,
                      purpose=record.purpose)  # type: ignore[arg-type]


def not_found(file_id: str) -> NotFound:
    return NotFound(f"No such File object: {file_id}", param="id")


# Writing


@asynccontextmanager
async def pending_write(storage: FileStorage, table: type[File | UploadPart],
                        row_id: str, blob_key: str) -> AsyncIterator[None]:
    """Undo a pending row's write (blob, then row) if the block fails."""
    try:
        yield
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_discard, storage, table, row_id, blob_key)
        raise


def _discard(storage: FileStorage, table: type[File | UploadPart], row_id: str,
             blob_key: str) -> None:
    storage.blobs.delete(blob_key)
    with storage.db.session() as session:
        repo.discard_pending(session, table, row_id)


def _form_params(fields: dict[str, str]) -> CreateFileForm:
    data: dict[str, object] = {}
    for name, value in fields.items():
        # Nested objects arrive as bracketed keys: expires_after[seconds]=3600.
        outer, _, inner = name.partition("[")
        if inner:
            data.setdefault(outer, {})[inner.rstrip("]")] = value  # type: ignore[index]
        else:
            data[name] = value
    try:
        return CreateFileForm.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(p) for p in error["loc"]) or None
        if error["type"] == "missing":
            raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param) from None
        raise InvalidRequest(f"Invalid value for '{param}': {error['msg']}.", param=param) \
            from None


def expiry_seconds(purpose: str, expires_after: int | None) -> int | None:
    if expires_after is not None:
        return expires_after
    return BATCH_FILE_EXPIRY if purpose == "batch" else None


async def create_file(storage: FileStorage, caller: Caller, form: IncomingForm) -> OpenAIFile:
    part = await form.next_file()
    if part is None or part.name != "file":
        raise InvalidRequest("Missing required parameter: 'file'.", param="file")
    # Clients usually send `purpose` before the file, so it can be checked as it
    # streams; if it comes after, the stored blob is read back once instead.
    params = _form_params(form.fields) if "purpose" in form.fields else None
    check = storage.check_for(params.purpose) if params else None
    limit = storage.settings.max_file_bytes
    record = await anyio.to_thread.run_sync(add_pending_file, storage, caller.project_id,
                                            part.filename or "file")
    async with pending_write(storage, File, record.id, record.blob_key):
        chunks = capped(part.chunks, limit, lambda: file_too_large(limit))
        inspect = None if check is None or isinstance(check, NoCheck) else check.feed
        size = await write_blob(storage.blobs, record.blob_key, chunks, inspect)
        await form.finish()
        if params is None:
            params = _form_params(form.fields)
            check = storage.check_for(params.purpose)
            await anyio.to_thread.run_sync(_check_stored, storage, record.blob_key, check)
        else:
            check.finish()  # type: ignore[union-attr]
        expires = expiry_seconds(params.purpose,
                                 params.expires_after.seconds if params.expires_after else None)
        created = await anyio.to_thread.run_sync(
            lambda: finish_file(storage, record.id, size, params.purpose, expires))
    record_stored(storage, caller, "/v1/files", size)
    return created


async def store_file(storage: FileStorage, caller: Caller, filename: str, purpose: str,
                     chunks: AsyncIterator[bytes], *, expires_after: int | None = None,
                     on_visible: Callable[[Session, OpenAIFile], None] | None = None) -> OpenAIFile:
    """Store a file Hearth writes itself (a batch's output), by the same pending-row protocol.

    ``on_visible`` runs in the transaction that makes the file visible, so
    what it writes (the batch naming the file) commits with the file or not at
    all; if it raises, the file is discarded. The caller meters the bytes.
    """
    record = await anyio.to_thread.run_sync(add_pending_file, storage, caller.project_id, filename)
    async with pending_write(storage, File, record.id, record.blob_key):
        size = await write_blob(storage.blobs, record.blob_key, chunks)
        return await anyio.to_thread.run_sync(
            lambda: _publish(storage, record.id, size, purpose, expires_after, on_visible))


def _publish(storage: FileStorage, file_id: str, size: int, purpose: str, expires_after: int | None,
             on_visible: Callable[[Session, OpenAIFile], None] | None) -> OpenAIFile:
    with storage.db.session() as session:
        created = file_object(repo.mark_file_processed(session, file_id, size=size, purpose=purpose,
                                                       expires_after=expires_after))
        if on_visible is not None:
            on_visible(session, created)
    return created


def record_stored(storage: FileStorage, caller: Caller, endpoint: str, size: int, *,
                  batch: bool = False) -> None:
    storage.meter.record(UsageEvent(caller, kind="files", endpoint=endpoint, bytes=size, batch=batch))


def add_pending_file(storage: FileStorage, project_id: str, filename: str) -> File:
    with storage.db.session() as session:
        return repo.add_pending_file(session, project_id=project_id, filename=filename,
                                     writer=storage.writer)


def finish_file(storage: FileStorage, file_id: str, size: int, purpose: str,
                expires_after: int | None) -> OpenAIFile:
    with storage.db.session() as session:
        record = repo.mark_file_processed(session, file_id, size=size, purpose=purpose,
                                          expires_after=expires_after)
    return file_object(record)


def file_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"File is too large: the limit is {limit} bytes.", param="file",
                           code="file_too_large")


def _check_stored(storage: FileStorage, key: str, check: ContentCheck) -> None:
    for block in read_blob_sync(storage.blobs, key):
        check.feed(block)
    check.finish()


# Reading and deleting


def get_file(storage: FileStorage, caller: Caller, file_id: str) -> OpenAIFile:
    return file_object(visible_file(storage, caller, file_id))


def list_files(storage: FileStorage, caller: Caller, purpose: str | None,
               page: PageRequest) -> tuple[list[OpenAIFile], bool]:
    with storage.db.session() as session:
        records, has_more = repo.list_files(session, caller.project_id, purpose, page)
    return [file_object(r) for r in records], has_more


def delete_file(storage: FileStorage, caller: Caller, file_id: str) -> DeleteFileResponse:
    with storage.db.session() as session:
        record = repo.get_file(session, caller.project_id, file_id)
        if record is None:
            raise not_found(file_id)
        repo.mark_file_deleting(session, record)
    _purge_file(storage, record)
    return DeleteFileResponse(id=file_id, deleted=True)


def _purge_file(storage: FileStorage, record: File) -> None:
    storage.blobs.delete(record.blob_key)
    with storage.db.session() as session:
        repo.forget_file(session, record.id)


@dataclass(frozen=True)
class Download:
    filename: str
    size: int
    chunks: AsyncIterator[bytes]


async def open_content(storage: FileStorage, caller: Caller, file_id: str) -> Download:
    """The file's bytes, opened before the response starts so a missing blob is still a 404."""
    record = await anyio.to_thread.run_sync(visible_file, storage, caller, file_id)
    try:
        stream = await anyio.to_thread.run_sync(storage.blobs.open, record.blob_key)
    except BlobNotFound:
        log.error("file %s has no blob at %s", file_id, record.blob_key)
        raise not_found(file_id) from None
    return Download(record.filename, record.bytes, stream_blocks(stream))


def visible_file(storage: FileStorage, caller: Caller, file_id: str) -> File:
    """The caller's project's file, or a 404 (another project's file is not found, too)."""
    with storage.db.session() as session:
        record = repo.get_file(session, caller.project_id, file_id)
    if record is None:
        raise not_found(file_id)
    return record


# Upkeep


def recover(storage: FileStorage) -> None:
    """At start: remove what stopped processes were writing, then tidy up."""
    sweep(storage)


def _remove_interrupted_writes(storage: FileStorage) -> None:
    """Delete the pending rows and blobs of this data directory's writers that have stopped."""
    removed = 0
    for writer in writers.gone(storage.settings.data_dir):
        with storage.db.session() as session:
            keys = repo.take_abandoned_writes(session, writer)
        for key in keys:
            storage.blobs.delete(key)
        removed += len(keys)
    if removed:
        log.warning("removed %d interrupted writes of stopped processes", removed)


def sweep(storage: FileStorage) -> None:
    """Remove stopped writers' leftovers; expire overdue uploads; delete expired files and the
    parts no upload needs."""
    _remove_interrupted_writes(storage)
    with storage.db.session() as session:
        for upload_id in repo.overdue_upload_ids(session):
            repo.set_upload_status(session, upload_id, "expired")
    purge_parts(storage)
    with storage.db.session() as session:
        doomed = repo.files_to_purge(session)
        for record in doomed:
            repo.mark_file_deleting(session, record)
    for record in doomed:
        _purge_file(storage, record)


def purge_parts(storage: FileStorage, upload_id: str | None = None) -> None:
    with storage.db.session() as session:
        parts = repo.parts_to_purge(session, upload_id)
    for part in parts:
        storage.blobs.delete(part.blob_key)
    if parts:
        with storage.db.session() as session:
            repo.forget_parts(session, [part.id for part in parts])


async def open_file_storage(db: Database, settings: Settings, meter: Meter) -> FileStorage:
    """Open the blob store and recover from the last run; the sweep runs as a periodic job."""
    blobs = await anyio.to_thread.run_sync(open_blob_store, settings)
    lease = WriterLease(settings.data_dir)
    storage = FileStorage(db, blobs, settings, meter, lease.id, lease)
    await anyio.to_thread.run_sync(recover, storage)
    return storage
