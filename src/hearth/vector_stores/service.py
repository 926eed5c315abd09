"""Vector stores, their files and file batches as the API sees them; and search.

Attaching a file writes its ``vector_store_files`` row (``in_progress``) and
its ``vector_store.file`` job in one transaction (``execution.py`` parses,
chunks, embeds and indexes it). Removing a file (or the store) deletes its
rows at once and its chunks from the index right after; a search reads only
chunks of ``completed`` files whose File still exists, so nothing removed is
ever found, whatever the index still holds. Every object belongs to the
caller's project: another project's id is a 404.

A search embeds the query with the store's embedding model and asks the
index for the nearest chunks among the files the attribute filter lets
through; ``score_threshold`` drops weaker ones. ``rewrite_query`` is
accepted and not acted on (``search_query`` gives the query as searched).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from anyio import to_thread
from sqlalchemy.orm import Session

from hearth.caller import Caller
from hearth.embeddings.protocol import CreateEmbeddingRequest
from hearth.embeddings.service import EmbeddingsService
from hearth.errors import InvalidRequest, NotFound
from hearth.files.service import FileStorage
from hearth.jobs import JobQueue
from hearth.settings import Settings
from hearth.store import files as files_repo
from hearth.store import vector_stores as repo
from hearth.store.assistants import ordered_id
from hearth.store.db import Database
from hearth.store.ids import now
from hearth.store.pagination import PageRequest
from hearth.store.vector_stores import Counts, VectorStoreFileBatchRow, VectorStoreFileRow, VectorStoreRow
from hearth.vector_stores import filters
from hearth.vector_stores.chunking import strategy_of
from hearth.vector_stores.execution import ATTEMPTS, FILE_JOB, loose_store
from hearth.vector_stores.index import ChunkIndex, Hit
from hearth.vector_stores.parsing import ParseError, parse
from hearth.vector_stores.protocol import (
    ChunkingStrategy,
    CreateVectorStoreFileBatchRequest,
    CreateVectorStoreFileRequest,
    CreateVectorStoreRequest,
    SearchRequest,
    UpdateVectorStoreFileRequest,
    UpdateVectorStoreRequest,
)

DAY = 86_400
Page = tuple[list[dict[str, Any]], bool]


# -- objects ----------------------------------------------------------------------------------


def store_status(row: VectorStoreRow, counts: Counts) -> str:
    if row.expires_at is not None and row.expires_at <= now():
        return "expired"
    return "in_progress" if counts.in_progress else "completed"


def store_object(row: VectorStoreRow, counts: Counts, usage: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": row.id, "object": "vector_store", "created_at": row.created_at, "name": row.name,
        "usage_bytes": usage, "file_counts": counts.as_dict(), "status": store_status(row, counts),
        "expires_at": row.expires_at, "last_active_at": row.last_active_at, "metadata": row.metadata_ or {},
    }
    if row.expires_after:
        body["expires_after"] = row.expires_after
    return body


def file_object(row: VectorStoreFileRow) -> dict[str, Any]:
    return {"id": row.id, "object": "vector_store.file", "usage_bytes": row.usage_bytes,
            "created_at": row.created_at, "vector_store_id": row.vector_store_id, "status": row.status,
            "last_error": row.last_error, "chunking_strategy": row.chunking_strategy,
            "attributes": row.attributes or {}}


def batch_status(row: VectorStoreFileBatchRow, counts: Counts) -> str:
    if row.status == "cancelled":
        return "cancelled"
    if counts.in_progress:
        return "in_progress"
    return "failed" if counts.total and counts.failed == counts.total else "completed"


def batch_object(row: VectorStoreFileBatchRow, counts: Counts) -> dict[str, Any]:
    return {"id": row.id, "object": "vector_store.files_batch", "created_at": row.created_at,
            "vector_store_id": row.vector_store_id, "status": batch_status(row, counts),
            "file_counts": counts.as_dict()}


def deleted(object_id: str, kind: str) -> dict[str, Any]:
    return {"id": object_id, "object": f"{kind}.deleted", "deleted": True}


def no_store(store_id: str) -> NotFound:
    return NotFound(f"No vector store found with id '{store_id}'.", param="vector_store_id")


def _expiry(row: VectorStoreRow) -> int | None:
    if not row.expires_after:
        return None
    return row.last_active_at + int(row.expires_after["days"]) * DAY


def _strategy(value: ChunkingStrategy | dict[str, Any] | None, param: str) -> dict[str, Any]:
    if value is not None and not isinstance(value, dict):
        value = value.model_dump()
    return strategy_of(value, param).as_object()


@dataclass(frozen=True)
class SearchResult:
    file_id: str
    filename: str
    score: float
    text: str
    attributes: dict[str, Any]
    vector_store_id: str
    chunk_index: int


@dataclass
class _Allowed:
    """What a search may read: stores (id -> embedding model) and their files ((store, file) -> name, attributes)."""

    stores: dict[str, str]
    files: dict[tuple[str, str], tuple[str, dict[str, Any]]]


class VectorStoreService:
    def __init__(self, db: Database, jobs: JobQueue, embeddings: EmbeddingsService, index: ChunkIndex,
                 storage: FileStorage, settings: Settings) -> None:
        self.db = db
        self.storage = storage
        self.jobs = jobs
        self.embeddings = embeddings
        self.index = index
        self.settings = settings
        # Full-text ranking fused with the vectors' (off by default; see docs/benchmarks.md).
        self.hybrid = settings.vector_store_hybrid_search

    @property
    def embedding_model(self) -> str:
        name = self.settings.default_embedding_model or "text-embedding-3-small"
        return self.embeddings.models.resolve(name, "embedding").id

    # -- stores -------------------------------------------------------------------------------

    def new_store_in(self, session: Session, caller: Caller, *, name: str | None, file_ids: Sequence[str],
                     chunking_strategy: Any = None, metadata: dict[str, str] | None = None,
                     expires_after: dict[str, Any] | None = None, description: str | None = None,
                     param: str = "") -> VectorStoreRow:
        """A store and its files' jobs, in the caller's transaction (also the tool_resources helper's)."""
        prefix = f"{param}." if param else ""
        strategy = _strategy(chunking_strategy, f"{prefix}chunking_strategy")
        stamp = now()
        row = VectorStoreRow(id=ordered_id("vs_"), organization_id=caller.organization_id, project_id=caller.project_id,
                             api_key_id=caller.api_key_id, created_at=stamp, name=name or "",
                             description=description, embedding_model=self.embedding_model,
                             expires_after=expires_after, last_active_at=stamp, metadata_=metadata)
        row.expires_at = _expiry(row)
        session.add(row)
        session.flush()
        for index, file_id in enumerate(dict.fromkeys(file_ids)):
            self._attach(session, caller, row, file_id, strategy, None, None, f"{prefix}file_ids[{index}]")
        return row

    def create(self, caller: Caller, body: CreateVectorStoreRequest) -> dict[str, Any]:
        with self.db.session() as session:
            row = self.new_store_in(session, caller, name=body.name, file_ids=body.file_ids or [],
                                    chunking_strategy=body.chunking_strategy, metadata=body.metadata,
                                    expires_after=body.expires_after.model_dump() if body.expires_after else None,
                                    description=body.description)
            return self._store_objects(session, [row])[0]

    def _store(self, session: Session, caller: Caller, store_id: str) -> VectorStoreRow:
        row = repo.get_store(session, caller.project_id, store_id)
        if row is None:
            raise no_store(store_id)
        return row

    @staticmethod
    def _store_objects(session: Session, rows: Sequence[VectorStoreRow]) -> list[dict[str, Any]]:
        ids = [row.id for row in rows]
        counts, usage = repo.counts_by_store(session, ids), repo.usage_by_store(session, ids)
        return [store_object(row, counts[row.id], usage.get(row.id, 0)) for row in rows]

    def retrieve(self, caller: Caller, store_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            return self._store_objects(session, [self._store(session, caller, store_id)])[0]

    def list_stores(self, caller: Caller, page: PageRequest) -> Page:
        with self.db.session() as session:
            rows, has_more = repo.list_stores(session, caller.project_id, page)
            return self._store_objects(session, rows), has_more

    def modify(self, caller: Caller, store_id: str, body: UpdateVectorStoreRequest) -> dict[str, Any]:
        given = body.model_fields_set
        with self.db.session() as session:
            row = self._store(session, caller, store_id)
            if "name" in given:
                row.name = body.name or ""
            if "metadata" in given:
                row.metadata_ = body.metadata
            if "expires_after" in given:
                row.expires_after = body.expires_after.model_dump() if body.expires_after else None
                row.last_active_at = now()
                row.expires_at = _expiry(row)
            session.flush()
            return self._store_objects(session, [row])[0]

    def delete(self, caller: Caller, store_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            row = self._store(session, caller, store_id)
            model = row.embedding_model
            repo.delete_store(session, store_id)
        self.index.delete(model, store_id)
        return deleted(store_id, "vector_store")

    # -- files --------------------------------------------------------------------------------

    def _attach(self, session: Session, caller: Caller, store: VectorStoreRow, file_id: str,
                strategy: dict[str, Any], attributes: dict[str, Any] | None, batch_id: str | None,
                param: str) -> VectorStoreFileRow:
        if files_repo.get_file(session, caller.project_id, file_id) is None:
            raise NotFound(f"No file found with id '{file_id}'.", param=param)
        row = repo.get_store_file(session, store.id, file_id)
        if row is not None and row.status in ("in_progress", "completed") and row.chunking_strategy == strategy:
            # Already there, chunked the same way: only its attributes (and batch) change.
            if attributes is not None:
                row.attributes = attributes
            if batch_id is not None:
                row.batch_id = batch_id
            return row
        if row is None:
            row = VectorStoreFileRow(vector_store_id=store.id, id=file_id, project_id=caller.project_id,
                                     generation=0, usage_bytes=0, chunks=0, pages=0)
            session.add(row)
        row.created_at, row.status, row.last_error = now(), "in_progress", None
        row.chunking_strategy, row.attributes, row.batch_id = strategy, attributes, batch_id
        row.generation = (row.generation or 0) + 1
        row.usage_bytes = row.chunks = row.pages = 0
        session.flush()
        self.jobs.enqueue_in(session, FILE_JOB, {"vector_store_id": store.id, "file_id": file_id,
                                                 "generation": row.generation},
                             project_id=caller.project_id, max_attempts=ATTEMPTS)
        return row

    def attach_files_in(self, session: Session, caller: Caller, store: VectorStoreRow, file_ids: Sequence[str],
                        param: str) -> None:
        """Files joining a store (auto chunking), in the caller's transaction (message attachments)."""
        strategy = _strategy(None, "chunking_strategy")
        for index, file_id in enumerate(dict.fromkeys(file_ids)):
            self._attach(session, caller, store, file_id, strategy, None, None, f"{param}[{index}]")

    def create_file(self, caller: Caller, store_id: str, body: CreateVectorStoreFileRequest) -> dict[str, Any]:
        strategy = _strategy(body.chunking_strategy, "chunking_strategy")
        with self.db.session() as session:
            store = self._store(session, caller, store_id)
            return file_object(self._attach(session, caller, store, body.file_id, strategy, body.attributes, None,
                                            "file_id"))

    def _file(self, session: Session, caller: Caller, store_id: str, file_id: str) -> VectorStoreFileRow:
        self._store(session, caller, store_id)
        row = repo.get_store_file(session, store_id, file_id)
        if row is None:
            raise NotFound(f"No file found with id '{file_id}' in vector store '{store_id}'.", param="file_id")
        return row

    def retrieve_file(self, caller: Caller, store_id: str, file_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            return file_object(self._file(session, caller, store_id, file_id))

    def list_files(self, caller: Caller, store_id: str, page: PageRequest, status: str | None,
                   batch_id: str | None = None) -> Page:
        if status is not None and status not in repo.FILE_STATUSES:
            raise InvalidRequest(f"Invalid value for 'filter': '{status}'; expected one of "
                                 f"{', '.join(repo.FILE_STATUSES)}.", param="filter")
        with self.db.session() as session:
            self._store(session, caller, store_id)
            if batch_id is not None and repo.get_batch(session, store_id, batch_id) is None:
                raise NotFound(f"No file batch found with id '{batch_id}'.", param="batch_id")
            rows, has_more = repo.list_store_files(session, store_id, page, status, batch_id)
            return [file_object(row) for row in rows], has_more

    def update_file(self, caller: Caller, store_id: str, file_id: str,
                    body: UpdateVectorStoreFileRequest) -> dict[str, Any]:
        with self.db.session() as session:
            row = self._file(session, caller, store_id, file_id)
            row.attributes = body.attributes
            session.flush()
            return file_object(row)

    def delete_file(self, caller: Caller, store_id: str, file_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            row = self._file(session, caller, store_id, file_id)
            model = self._store(session, caller, store_id).embedding_model
            session.delete(row)
        self.index.delete(model, store_id, [file_id])
        return deleted(file_id, "vector_store.file")

    def file_content(self, caller: Caller, store_id: str, file_id: str) -> dict[str, Any]:
        """The file's parsed text (parsed again from the stored File)."""
        with self.db.session() as session:
            self._file(session, caller, store_id, file_id)
            record = files_repo.get_file(session, caller.project_id, file_id)
        if record is None:
            raise NotFound(f"No file found with id '{file_id}'.", param="file_id")
        with self.storage.blobs.open(record.blob_key) as stream:
            data = stream.read()
        try:
            text = parse(record.filename, data).text
        except ParseError as exc:
            raise InvalidRequest(exc.message, param="file_id", code=exc.code) from None
        return {"object": "vector_store.file_content.page", "data": [{"type": "text", "text": text}],
                "has_more": False, "next_page": None}

    # -- batches ------------------------------------------------------------------------------

    def create_batch(self, caller: Caller, store_id: str, body: CreateVectorStoreFileBatchRequest) -> dict[str, Any]:
        if (body.file_ids is None) == (body.files is None):
            raise InvalidRequest("Provide exactly one of 'file_ids' and 'files'.",
                                 param="file_ids" if body.file_ids is not None else "files")
        if body.files is not None and (body.chunking_strategy is not None or body.attributes is not None):
            raise InvalidRequest("With 'files', give 'chunking_strategy' and 'attributes' per file.",
                                 param="files")
        shared = _strategy(body.chunking_strategy, "chunking_strategy")
        wanted: list[tuple[str, dict[str, Any], dict[str, Any] | None, str]] = []
        if body.file_ids is not None:
            wanted = [(file_id, shared, body.attributes, f"file_ids[{i}]") for i, file_id in enumerate(body.file_ids)]
        else:
            wanted = [(item.file_id, _strategy(item.chunking_strategy, f"files[{i}].chunking_strategy"),
                       item.attributes, f"files[{i}].file_id") for i, item in enumerate(body.files or [])]
        with self.db.session() as session:
            store = self._store(session, caller, store_id)
            batch = VectorStoreFileBatchRow(id=ordered_id("vsfb_"), vector_store_id=store_id,
                                            project_id=caller.project_id, created_at=now(), status="in_progress")
            session.add(batch)
            session.flush()
            seen = set()
            for file_id, strategy, attributes, param in wanted:
                if file_id not in seen:
                    seen.add(file_id)
                    self._attach(session, caller, store, file_id, strategy, attributes, batch.id, param)
            session.flush()
            return batch_object(batch, repo.counts_by_batch(session, [batch.id])[batch.id])

    def _batch(self, session: Session, caller: Caller, store_id: str, batch_id: str) -> VectorStoreFileBatchRow:
        self._store(session, caller, store_id)
        row = repo.get_batch(session, store_id, batch_id)
        if row is None:
            raise NotFound(f"No file batch found with id '{batch_id}'.", param="batch_id")
        return row

    def retrieve_batch(self, caller: Caller, store_id: str, batch_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            row = self._batch(session, caller, store_id, batch_id)
            return batch_object(row, repo.counts_by_batch(session, [row.id])[row.id])

    def cancel_batch(self, caller: Caller, store_id: str, batch_id: str) -> dict[str, Any]:
        """Cancel the batch's files still in progress (their jobs find them cancelled and stop)."""
        with self.db.session() as session:
            row = self._batch(session, caller, store_id, batch_id)
            counts = repo.counts_by_batch(session, [row.id])[row.id]
            if batch_status(row, counts) != "in_progress":
                raise InvalidRequest(f"Cannot cancel a file batch with status '{batch_status(row, counts)}'.",
                                     param="batch_id")
            cancelled = repo.cancel_batch_files(session, row.id)
            row.status = "cancelled"
            model = self._store(session, caller, store_id).embedding_model
            session.flush()
            body = batch_object(row, repo.counts_by_batch(session, [row.id])[row.id])
        self.index.delete(model, store_id, [file_id for _, file_id in cancelled])
        return body

    # -- search -------------------------------------------------------------------------------

    async def search(self, caller: Caller, store_id: str, body: SearchRequest) -> dict[str, Any]:
        if body.filters is not None:
            filters.check(body.filters)
        if body.query is None:
            raise InvalidRequest("Missing required parameter: 'query'.", param="query")
        queries = [body.query] if isinstance(body.query, str) else list(body.query)
        if not queries or not all(query.strip() for query in queries):
            raise InvalidRequest("'query' must be a non-empty string or a non-empty array of them.", param="query")
        await to_thread.run_sync(self._searchable_store, caller, store_id)
        ranking = body.ranking_options
        results = await self.search_stores(caller, [store_id], queries, body.max_num_results,
                                           score_threshold=ranking.score_threshold if ranking else 0.0,
                                           attribute_filter=body.filters,
                                           hybrid=self.hybrid and (ranking is None or ranking.ranker != "none"))
        return {"object": "vector_store.search_results.page", "search_query": queries,
                "data": [{"file_id": r.file_id, "filename": r.filename, "score": r.score, "attributes": r.attributes,
                          "content": [{"type": "text", "text": r.text}]} for r in results],
                "has_more": False, "next_page": None}

    def _searchable_store(self, caller: Caller, store_id: str) -> None:
        with self.db.session() as session:
            row = self._store(session, caller, store_id)
            if row.expires_at is not None and row.expires_at <= now():
                raise InvalidRequest(f"Vector store '{store_id}' has expired and cannot be searched.",
                                     param="vector_store_id")

    async def search_stores(self, caller: Caller, store_ids: Sequence[str], queries: Sequence[str], limit: int, *,
                            score_threshold: float = 0.0, attribute_filter: dict[str, Any] | None = None,
                            hybrid: bool | None = None, background: bool = False,
                            extra_files: Sequence[str] = ()) -> list[SearchResult]:
        """The best chunks for the queries across these stores (the caller's, unexpired), best first."""
        hybrid = self.hybrid if hybrid is None else hybrid
        allowed = await to_thread.run_sync(self._allowed, caller, list(store_ids), attribute_filter)
        by_model: dict[str, list[str]] = {}
        for store_id, model in allowed.stores.items():
            by_model.setdefault(model, []).append(store_id)
        best: dict[tuple[str, str, int], Hit] = {}
        for model, model_stores in by_model.items():
            file_ids = {file_id for (store_id, file_id) in allowed.files if store_id in model_stores}
            if not file_ids:
                continue
            vectors = await self._embed(caller, model, queries, background)
            for query, vector in zip(queries, vectors, strict=True):
                hits = await to_thread.run_sync(partial(self.index.search, model, vector, model_stores, file_ids,
                                                        limit, text=query if hybrid else None))
                for hit in hits:
                    key = (hit.vector_store_id, hit.file_id, hit.chunk_index)
                    if key not in best or best[key].score < hit.score:
                        best[key] = hit
        ranked = sorted(best.values(), key=lambda hit: hit.score, reverse=True) if len(queries) > 1 or \
            len(by_model) > 1 else list(best.values())
        out = []
        for hit in ranked:
            if hit.score < score_threshold:
                continue
            name, attributes = allowed.files[(hit.vector_store_id, hit.file_id)]
            out.append(SearchResult(hit.file_id, name, round(hit.score, 6), hit.text, attributes,
                                    hit.vector_store_id, hit.chunk_index))
        return out[:limit]

    async def search_loose_files(self, caller: Caller, file_ids: Sequence[str], queries: Sequence[str], limit: int,
                                 *, background: bool = False) -> list[SearchResult]:
        """Files indexed on their own (v1 retrieval), those still the caller's, best chunks first."""
        names = await to_thread.run_sync(self._visible_names, caller, list(file_ids))
        if not names:
            return []
        model = self.embedding_model
        stores = {loose_store(file_id) for file_id in names}
        best: dict[tuple[str, str, int], Hit] = {}
        for query, vector in zip(queries, await self._embed(caller, model, queries, background), strict=True):
            for hit in await to_thread.run_sync(partial(self.index.search, model, vector, stores, set(names), limit,
                                                        text=query if self.hybrid else None)):
                key = (hit.vector_store_id, hit.file_id, hit.chunk_index)
                if key not in best or best[key].score < hit.score:
                    best[key] = hit
        ranked = sorted(best.values(), key=lambda hit: hit.score, reverse=True)[:limit]
        return [SearchResult(hit.file_id, names[hit.file_id], round(hit.score, 6), hit.text, {}, hit.vector_store_id,
                             hit.chunk_index) for hit in ranked]

    def _visible_names(self, caller: Caller, file_ids: list[str]) -> dict[str, str]:
        with self.db.session() as session:
            return {file_id: record.filename for file_id in file_ids
                    if (record := files_repo.get_file(session, caller.project_id, file_id)) is not None}

    def _allowed(self, caller: Caller, store_ids: list[str], attribute_filter: dict[str, Any] | None) -> _Allowed:
        stamp = now()
        allowed = _Allowed({}, {})
        with self.db.session() as session:
            for store_id in dict.fromkeys(store_ids):
                store = repo.get_store(session, caller.project_id, store_id)
                if store is None or (store.expires_at is not None and store.expires_at <= stamp):
                    continue
                store.last_active_at = stamp
                store.expires_at = _expiry(store)
                allowed.stores[store_id] = store.embedding_model
                for file_id, (row, record) in repo.searchable_files(session, [store_id]).items():
                    if filters.matches(attribute_filter, row.attributes):
                        allowed.files[(store_id, file_id)] = (record.filename, row.attributes or {})
        return allowed

    async def _embed(self, caller: Caller, model: str, texts: Sequence[str], background: bool) -> list[np.ndarray]:
        response = await self.embeddings.create(caller, CreateEmbeddingRequest(model=model, input=list(texts)),
                                                background=background)
        return [np.asarray(item.embedding, dtype=np.float32) for item in response.data]
