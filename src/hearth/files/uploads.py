"""Uploads: a file sent in parts, then assembled into one File.

Parts are blobs of their own. Completing joins them, in the order the client
lists, into the new File's blob: a local store links them without copying a
byte, S3 copies parts of 5 MiB or more inside itself and streams smaller
ones. md5 and the purpose's format are checked by reading the parts once,
and only when there is something to check; even an 8 GB upload is never
held in memory. Parts no longer
needed (after completion, cancellation or expiry) are removed by
``purge_parts``, at once and again by the periodic sweep should a crash
intervene.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import anyio.to_thread

from hearth.caller import Caller
from hearth.errors import InvalidRequest, NotFound, PayloadTooLarge
from hearth.files.blobio import capped, write_blob
from hearth.files.checks import NoCheck
from hearth.files.protocol import CompleteUploadRequest, CreateUploadRequest, Upload, UploadPart
from hearth.files.service import (
    FileStorage,
    add_pending_file,
    expiry_seconds,
    file_object,
    pending_write,
    purge_parts,
    record_stored,
)
from hearth.forms import IncomingForm
from hearth.store import files as repo
from hearth.store import tables
from hearth.store.ids import now


def upload_object(record: tables.Upload) -> Upload:
    return Upload(
        id=record.id, bytes=record.bytes, created_at=record.created_at,
        expires_at=record.expires_at, filename=record.filename, purpose=record.purpose,
        status=record.status,  # type: ignore[arg-type]
        file=file_object(record.file) if record.file is not None else None,
    )


def create_upload(storage: FileStorage, caller: Caller, request: CreateUploadRequest) -> Upload:
    limit = storage.settings.max_upload_bytes
    if request.bytes > limit:
        raise InvalidRequest(f"An Upload can hold at most {limit} bytes; got {request.bytes}.",
                             param="bytes")
    with storage.db.session() as session:
        record = repo.add_upload(
            session, project_id=caller.project_id, filename=request.filename,
            purpose=request.purpose,
            size=request.bytes, mime_type=request.mime_type,
            ttl=storage.settings.upload_expiry_seconds,
            file_expires_after=request.expires_after.seconds if request.expires_after else None,
        )
        session.flush()
        return upload_object(record)


def pending_upload(storage: FileStorage, caller: Caller, upload_id: str) -> tables.Upload:
    """The upload if it still takes parts; an overdue one is expired on the spot."""
    with storage.db.session() as session:
        record = repo.get_upload(session, caller.project_id, upload_id)
        if record is None:
            raise NotFound(f"No such Upload: {upload_id}", param="upload_id")
        if record.status == repo.PENDING and record.expires_at <= now():
            repo.set_upload_status(session, upload_id, "expired")
            record.status = "expired"
    if record.status == "expired":
        purge_parts(storage, upload_id)
    if record.status != repo.PENDING:
        raise InvalidRequest(f"Upload {upload_id} is {record.status} and cannot be changed.",
                             param="upload_id", code="upload_not_pending")
    return record


async def add_part(storage: FileStorage, caller: Caller, upload_id: str,
                   form: IncomingForm) -> UploadPart:
    upload = await anyio.to_thread.run_sync(pending_upload, storage, caller, upload_id)
    part = await form.next_file()
    if part is None or part.name != "data":
        raise InvalidRequest("Missing required parameter: 'data'.", param="data")
    room = upload.bytes - await anyio.to_thread.run_sync(_received, storage, upload_id)
    part_limit = storage.settings.max_upload_part_bytes

    def too_much() -> Exception:
        if room < part_limit:
            return InvalidRequest(f"The parts would exceed the Upload's {upload.bytes} bytes.",
                                  param="data")
        return PayloadTooLarge(f"A part can hold at most {part_limit} bytes.", param="data",
                               code="part_too_large")

    record = await anyio.to_thread.run_sync(_add_pending_part, storage, upload_id)
    async with pending_write(storage, tables.UploadPart, record.id, record.blob_key):
        size = await write_blob(storage.blobs, record.blob_key,
                                capped(part.chunks, min(room, part_limit), too_much))
        await form.finish()
        await anyio.to_thread.run_sync(_finish_part, storage, upload_id, record.id, size)
    return UploadPart(id=record.id, created_at=record.created_at, upload_id=upload_id)


def _received(storage: FileStorage, upload_id: str) -> int:
    with storage.db.session() as session:
        return repo.bytes_received(session, upload_id)


def _add_pending_part(storage: FileStorage, upload_id: str) -> tables.UploadPart:
    with storage.db.session() as session:
        return repo.add_pending_part(session, upload_id, storage.writer)


def _finish_part(storage: FileStorage, upload_id: str, part_id: str, size: int) -> None:
    with storage.db.session() as session:
        # Cancelled or expired while the part arrived: the caller discards the part.
        if repo.upload_status(session, upload_id) != repo.PENDING:
            raise InvalidRequest(f"Upload {upload_id} stopped taking parts while this one "
                                 "arrived.", param="upload_id", code="upload_not_pending")
        repo.mark_part_ready(session, part_id, size)


async def complete_upload(storage: FileStorage, caller: Caller, upload_id: str,
                          request: CompleteUploadRequest) -> Upload:
    upload = await anyio.to_thread.run_sync(pending_upload, storage, caller, upload_id)
    keys = await anyio.to_thread.run_sync(_ordered_part_keys, storage, upload, request.part_ids)
    record = await anyio.to_thread.run_sync(add_pending_file, storage, caller.project_id,
                                            upload.filename)
    async with pending_write(storage, tables.File, record.id, record.blob_key):
        # Hashing reads every byte: only when the client asks for the check.
        md5 = hashlib.md5(usedforsecurity=False) if request.md5 is not None else None
        await anyio.to_thread.run_sync(_assemble, storage, upload, keys, record.blob_key,
                                       md5.update if md5 is not None else None)
        if md5 is not None and request.md5 is not None and request.md5.lower() != md5.hexdigest():
            raise InvalidRequest(f"The md5 of the assembled file is {md5.hexdigest()}, "
                                 f"not {request.md5}.", param="md5", code="md5_mismatch")
        expires = expiry_seconds(upload.purpose, upload.file_expires_after)
        await anyio.to_thread.run_sync(_finish_upload, storage, upload, record.id, expires)
    await anyio.to_thread.run_sync(purge_parts, storage, upload_id)
    record_stored(storage, caller, "/v1/uploads", upload.bytes)
    return await anyio.to_thread.run_sync(_reload, storage, caller, upload_id)


def _ordered_part_keys(storage: FileStorage, upload: tables.Upload,
                       part_ids: list[str]) -> list[str]:
    with storage.db.session() as session:
        parts = repo.ready_parts(session, upload.id)
    if len(set(part_ids)) != len(part_ids):
        raise InvalidRequest("'part_ids' lists a part more than once.", param="part_ids")
    unknown = [pid for pid in part_ids if pid not in parts]
    if unknown:
        raise InvalidRequest(f"No such part in upload {upload.id}: {unknown[0]}",
                             param="part_ids")
    total = sum(parts[pid].bytes for pid in part_ids)
    if total != upload.bytes:
        raise InvalidRequest(f"The parts hold {total} bytes but the Upload was created for "
                             f"{upload.bytes}.", param="part_ids", code="bytes_mismatch")
    return [parts[pid].blob_key for pid in part_ids]


def _assemble(storage: FileStorage, upload: tables.Upload, keys: list[str], target: str,
              digest: Callable[[bytes], None] | None) -> None:
    """Join the parts into one blob, checking the purpose's format and feeding ``digest``."""
    check = storage.check_for(upload.purpose)
    feeds = [feed for feed in (digest, None if isinstance(check, NoCheck) else check.feed)
             if feed is not None]

    def inspect(block: bytes) -> None:
        for feed in feeds:
            feed(block)

    # With nothing to inspect, a local store joins the parts without reading them.
    storage.blobs.compose(target, keys, inspect if feeds else None)
    check.finish()


def _finish_upload(storage: FileStorage, upload: tables.Upload, file_id: str,
                   expires: int | None) -> None:
    with storage.db.session() as session:
        # A cancel or expiry that won the race leaves the upload as it is.
        if not repo.set_upload_status(session, upload.id, "completed", file_id=file_id):
            raise InvalidRequest(f"Upload {upload.id} stopped being pending while it was "
                                 "completed.", param="upload_id", code="upload_not_pending")
        repo.mark_file_processed(session, file_id, size=upload.bytes, purpose=upload.purpose,
                                 expires_after=expires)


def _reload(storage: FileStorage, caller: Caller, upload_id: str) -> Upload:
    with storage.db.session() as session:
        record = repo.get_upload(session, caller.project_id, upload_id)
        assert record is not None  # the caller just completed it
        return upload_object(record)


def cancel_upload(storage: FileStorage, caller: Caller, upload_id: str) -> Upload:
    pending_upload(storage, caller, upload_id)
    with storage.db.session() as session:
        if not repo.set_upload_status(session, upload_id, "cancelled"):
            raise InvalidRequest(f"Upload {upload_id} is no longer pending.",
                                 param="upload_id", code="upload_not_pending")
    purge_parts(storage, upload_id)
    return _reload(storage, caller, upload_id)

