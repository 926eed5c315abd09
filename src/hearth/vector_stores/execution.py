"""The jobs that turn a vector store's files into searchable chunks, and keep the index tidy.

- ``vector_store.file`` (one per attached file): read the File's bytes,
  parse them (``parsing.py``), chunk the text in cl100k tokens
  (``chunking.py``), embed the chunks with the store's embedding model in the
  background lane (``EmbeddingsService``, metered as the store creator's
  embeddings), write them to the index (replacing whatever an interrupted
  attempt left), then move the file to ``completed`` with its usage. A file
  that cannot be read is ``failed`` with ``unsupported_file`` or
  ``invalid_file``; one that kept failing for other reasons, ``server_error``.
  The move is a compare-and-set on the attachment's ``generation`` and
  ``in_progress``: a job whose file was removed or cancelled meanwhile
  deletes the chunks it wrote instead.
- ``vector_store.sweep`` (periodic): drops the rows and chunks of files
  deleted through the Files API and of expired stores' chunks, and compacts
  the index (``ChunkIndex.optimize``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from anyio import to_thread

from hearth.caller import Caller
from hearth.embeddings.protocol import CreateEmbeddingRequest
from hearth.embeddings.service import EmbeddingsService
from hearth.files.service import FileStorage
from hearth.jobs import Handler, JobContext
from hearth.store import files as files_repo
from hearth.store import vector_stores as repo
from hearth.store.db import Database
from hearth.store.ids import now
from hearth.vector_stores.chunking import AUTO, Strategy, Tokenizer, chunk
from hearth.vector_stores.index import Chunk, ChunkIndex
from hearth.vector_stores.parsing import ParseError, parse

log = logging.getLogger("hearth.vector_stores")

FILE_JOB = "vector_store.file"
SWEEP = "vector_store.sweep"
ATTEMPTS = 3
# Chunks embedded in one call of the embeddings service.
EMBED_GROUP = 64


def loose_store(file_id: str) -> str:
    """The index's store id for a File indexed on its own (v1 retrieval)."""
    return f"file:{file_id}"


@dataclass(frozen=True)
class _Work:
    caller: Caller
    model: str
    filename: str
    blob_key: str
    strategy: Strategy


class VectorStoreJobs:
    def __init__(self, db: Database, storage: FileStorage, embeddings: EmbeddingsService, index: ChunkIndex) -> None:
        self.db = db
        self.storage = storage
        self.embeddings = embeddings
        self.index = index

    def handlers(self) -> dict[str, Handler]:
        return {FILE_JOB: self.file_job, SWEEP: self.sweep_job}

    # -- one file -------------------------------------------------------------------------------

    async def file_job(self, ctx: JobContext) -> dict[str, Any] | None:
        store_id, file_id, generation = (ctx.payload["vector_store_id"], ctx.payload["file_id"],
                                         int(ctx.payload["generation"]))
        work = await to_thread.run_sync(self._work, store_id, file_id, generation)
        if work is None:
            return None
        try:
            return await self._index_file(ctx, store_id, file_id, generation, work)
        except ParseError as exc:
            await to_thread.run_sync(self._finish, store_id, file_id, generation, work.model,
                                     {"status": "failed", "last_error": {"code": exc.code, "message": exc.message}})
            return {"failed": exc.code}
        except Exception:
            if ctx.attempt < ATTEMPTS or ctx.stop_requested:
                raise
            log.exception("indexing file %s of vector store %s failed", file_id, store_id)
            await to_thread.run_sync(self._finish, store_id, file_id, generation, work.model, {
                "status": "failed",
                "last_error": {"code": "server_error", "message": "The server had an error while processing the file."}})
            return {"failed": "server_error"}

    def _work(self, store_id: str, file_id: str, generation: int) -> _Work | None:
        with self.db.session() as session:
            row = repo.get_store_file(session, store_id, file_id)
            store = repo.store_by_id(session, store_id)
            if row is None or store is None or row.generation != generation or row.status != "in_progress":
                return None
            record = files_repo.get_file(session, store.project_id, file_id)
            if record is None:
                repo.finish_file(session, store_id, file_id, generation, status="failed", last_error={
                    "code": "invalid_file", "message": f"The file {file_id} was deleted before it was processed."})
                return None
            numbers = row.chunking_strategy["static"]
            return _Work(Caller(store.organization_id, store.project_id, store.api_key_id), store.embedding_model,
                         record.filename, record.blob_key,
                         Strategy(numbers["max_chunk_size_tokens"], numbers["chunk_overlap_tokens"]))

    async def _index_file(self, ctx: JobContext, store_id: str, file_id: str, generation: int,
                          work: _Work) -> dict[str, Any]:
        data = await to_thread.run_sync(self._read, work.blob_key)
        parsed = await to_thread.run_sync(parse, work.filename, data)
        tokenizer = await self.tokenizer(work.model)
        texts = await to_thread.run_sync(chunk, parsed.text, work.strategy, tokenizer)
        vectors: list[np.ndarray] = []
        for start in range(0, len(texts), EMBED_GROUP):
            vectors.extend(await self.embed(work.caller, work.model, texts[start:start + EMBED_GROUP]))
        chunks = [Chunk(store_id, file_id, index, text, vector)
                  for index, (text, vector) in enumerate(zip(texts, vectors, strict=True))]
        await to_thread.run_sync(self.index.replace_file, work.model, store_id, file_id, chunks)
        usage = sum(len(text.encode()) for text in texts) + sum(vector.nbytes for vector in vectors)
        await to_thread.run_sync(self._finish, store_id, file_id, generation, work.model, {
            "status": "completed", "usage_bytes": usage, "chunks": len(chunks), "pages": parsed.pages})
        return {"chunks": len(chunks), "pages": parsed.pages}

    async def ensure_file_indexed(self, caller: Caller, file_id: str, model: str) -> bool:
        """A File indexed on its own (Assistants v1 retrieval: files, not stores), once; False if it cannot be
        (gone, or not a format with text)."""
        store_id = loose_store(file_id)
        if await to_thread.run_sync(self.index.has_file, model, store_id, file_id):
            return True
        with self.db.session() as session:
            record = files_repo.get_file(session, caller.project_id, file_id)
        if record is None:
            return False
        try:
            data = await to_thread.run_sync(self._read, record.blob_key)
            parsed = await to_thread.run_sync(parse, record.filename, data)
        except ParseError:
            return False
        texts = await to_thread.run_sync(chunk, parsed.text, AUTO, await self.tokenizer(model))
        vectors: list[np.ndarray] = []
        for start in range(0, len(texts), EMBED_GROUP):
            vectors.extend(await self.embed(caller, model, texts[start:start + EMBED_GROUP]))
        chunks = [Chunk(store_id, file_id, index, text, vector)
                  for index, (text, vector) in enumerate(zip(texts, vectors, strict=True))]
        await to_thread.run_sync(self.index.replace_file, model, store_id, file_id, chunks)
        return True

    def _read(self, key: str) -> bytes:
        with self.storage.blobs.open(key) as stream:
            return stream.read()

    async def tokenizer(self, model: str) -> Tokenizer:
        """OpenAI's cl100k_base, which the embedding model carries for its own token counts."""
        loaded = await self.embeddings.models.load(model, "embedding")
        tokens = getattr(loaded.engine, "openai_tokens", None)
        if tokens is None:
            raise RuntimeError(f"the embedding model {model} has no cl100k_base tokenizer to chunk with")
        return tokens

    async def embed(self, caller: Caller, model: str, texts: list[str]) -> list[np.ndarray]:
        response = await self.embeddings.create(caller, CreateEmbeddingRequest(model=model, input=texts),
                                                background=True)
        return [np.asarray(item.embedding, dtype=np.float32) for item in response.data]

    def _finish(self, store_id: str, file_id: str, generation: int, model: str, values: dict[str, Any]) -> None:
        with self.db.session() as session:
            if repo.finish_file(session, store_id, file_id, generation, **values):
                return
            row = repo.get_store_file(session, store_id, file_id)
            stale = row is None or (row.generation == generation and row.status == "cancelled")
        if stale:
            # Removed or cancelled meanwhile: what this run wrote must not be found.
            self.index.delete(model, store_id, [file_id])

    # -- upkeep ---------------------------------------------------------------------------------

    async def sweep_job(self, _: JobContext) -> None:
        await to_thread.run_sync(self.sweep)

    def sweep(self) -> None:
        with self.db.session() as session:
            orphans = repo.orphaned_files(session)
            models = {store_id: store.embedding_model for store_id in {s for s, _ in orphans}
                      if (store := repo.store_by_id(session, store_id)) is not None}
            repo.forget_files(session, orphans)
            expired = [(store_id, store.embedding_model) for store_id in repo.expired_store_ids(session, now())
                       if (store := repo.store_by_id(session, store_id)) is not None]
        for store_id, file_id in orphans:
            if store_id in models:
                self.index.delete(models[store_id], store_id, [file_id])
        for store_id, model in expired:
            # An expired store keeps its row (it says expired) but no longer its chunks.
            self.index.delete(model, store_id)
        self.index.optimize()
