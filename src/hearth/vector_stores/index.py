"""The vector index: LanceDB tables of chunks and their vectors, in the data directory or in S3.

One table per embedding model (its vectors have that model's width) holds
every store's chunks: ``vector_store_id``, ``file_id``, ``chunk_index``, the
chunk's ``text`` and its ``vector``. A search is LanceDB's nearest-neighbour
query by cosine distance, prefiltered to the stores and files it may read;
past ``ANN_THRESHOLD`` rows the periodic upkeep builds an IVF-HNSW index on
the vectors (below it an exact scan over Arrow columns is faster than any
index). Optionally (``hybrid``), a full-text (BM25) query over the chunks'
text runs beside it, and the two rankings are fused by reciprocal rank.

Where: with the local blob store, ``<data_dir>/vector_index`` (one machine;
processes on it share it through Lance's atomic commits); with the S3 blob
store, ``s3://<bucket>/vector_index``, which every server process on every
machine shares (Lance commits to S3 with conditional writes). Reads see the
latest commit (``read_consistency_interval=0``), so a chunk indexed or
deleted by one process is searched (or not) by the next query of any other.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from hearth.settings import Settings

# Rows past which a table gets an approximate (IVF-HNSW) index on its vectors.
ANN_THRESHOLD = 50_000
# Reciprocal-rank fusion's constant (the usual 60): how much a top rank outweighs the next.
RRF_K = 60


@dataclass(frozen=True)
class Chunk:
    vector_store_id: str
    file_id: str
    chunk_index: int
    text: str
    vector: np.ndarray


@dataclass(frozen=True)
class Hit:
    vector_store_id: str
    file_id: str
    chunk_index: int
    text: str
    # Cosine similarity mapped to [0, 1] (1: same direction).
    score: float


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _in(column: str, values: Collection[str]) -> str:
    return f"{column} IN ({', '.join(_quoted(value) for value in sorted(values))})"


class ChunkIndex:
    def __init__(self, uri: str, storage_options: dict[str, str] | None = None) -> None:
        import lancedb

        self.uri = uri
        self._db = lancedb.connect(uri, storage_options=storage_options or None,
                                   read_consistency_interval=timedelta(0))
        self._tables: dict[str, Any] = {}
        self._text_indexed: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> ChunkIndex:
        if settings.blob_store == "s3":
            options = {"aws_region": settings.s3_region or "us-east-1"}
            if settings.s3_endpoint_url:
                options["aws_endpoint"] = settings.s3_endpoint_url
                options["allow_http"] = str(settings.s3_endpoint_url.startswith("http://")).lower()
            if settings.s3_access_key_id and settings.s3_secret_access_key:
                options["aws_access_key_id"] = settings.s3_access_key_id
                options["aws_secret_access_key"] = settings.s3_secret_access_key
            return cls(f"s3://{settings.s3_bucket}/vector_index", options)
        path = settings.data_dir / "vector_index"
        path.mkdir(parents=True, exist_ok=True)
        return cls(str(path))

    def _names(self) -> list[str]:
        names: list[str] = []
        token = None
        while True:
            page = self._db.list_tables(page_token=token)
            names += page.tables
            token = page.page_token
            if not token:
                return names

    @staticmethod
    def table_name(model: str) -> str:
        return "chunks_" + re.sub(r"[^A-Za-z0-9_]", "_", model)

    def _table(self, model: str, dimensions: int | None = None) -> Any:
        """The model's table; created (when ``dimensions`` is known) if missing, else None."""
        name = self.table_name(model)
        with self._lock:
            table = self._tables.get(name)
            if table is not None:
                return table
            if name in self._names():
                table = self._db.open_table(name)
            elif dimensions is None:
                return None
            else:
                schema = pa.schema([
                    pa.field("vector_store_id", pa.string()), pa.field("file_id", pa.string()),
                    pa.field("chunk_index", pa.int32()), pa.field("text", pa.string()),
                    pa.field("vector", pa.list_(pa.float32(), dimensions))])
                table = self._db.create_table(name, schema=schema, exist_ok=True)
            self._tables[name] = table
            return table

    # -- writes ---------------------------------------------------------------------------------

    def replace_file(self, model: str, vector_store_id: str, file_id: str, chunks: Sequence[Chunk]) -> None:
        """The file's chunks in this store, replacing any an earlier attempt left."""
        dimensions = int(chunks[0].vector.shape[-1]) if chunks else None
        table = self._table(model, dimensions)
        if table is None:
            return
        table.delete(f"vector_store_id = {_quoted(vector_store_id)} AND file_id = {_quoted(file_id)}")
        if chunks:
            table.add(pa.table({
                "vector_store_id": [c.vector_store_id for c in chunks], "file_id": [c.file_id for c in chunks],
                "chunk_index": pa.array([c.chunk_index for c in chunks], pa.int32()),
                "text": [c.text for c in chunks],
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(np.concatenate([c.vector.astype(np.float32).ravel() for c in chunks])),
                    dimensions)}))

    def delete(self, model: str, vector_store_id: str, file_ids: Collection[str] | None = None) -> None:
        table = self._table(model)
        if table is None:
            return
        condition = f"vector_store_id = {_quoted(vector_store_id)}"
        if file_ids is not None:
            if not file_ids:
                return
            condition += " AND " + _in("file_id", file_ids)
        table.delete(condition)

    def has_file(self, model: str, vector_store_id: str, file_id: str) -> bool:
        table = self._table(model)
        return table is not None and table.count_rows(
            f"vector_store_id = {_quoted(vector_store_id)} AND file_id = {_quoted(file_id)}") > 0

    # -- reads ----------------------------------------------------------------------------------

    def search(self, model: str, vector: np.ndarray, store_ids: Collection[str], file_ids: Collection[str],
               limit: int, *, text: str | None = None) -> list[Hit]:
        """The ``limit`` chunks nearest ``vector`` among these stores' files, best first; with ``text``,
        fused with a full-text ranking of the same chunks."""
        table = self._table(model)
        if table is None or not store_ids or not file_ids:
            return []
        where = f"{_in('vector_store_id', store_ids)} AND {_in('file_id', file_ids)}"
        columns = ["vector_store_id", "file_id", "chunk_index", "text"]
        nearest = (table.search(np.asarray(vector, dtype=np.float32), vector_column_name="vector")
                   .distance_type("cosine").where(where, prefilter=True).select([*columns, "_distance"])
                   .limit(limit * 2 if text else limit).to_list())
        hits = {(row["vector_store_id"], row["file_id"], row["chunk_index"]): row for row in nearest}
        similarity = {key: max(0.0, min(1.0, 1.0 - float(row["_distance"]))) for key, row in hits.items()}
        if not text:
            return [Hit(*key, hits[key]["text"], similarity[key]) for key in hits][:limit]
        fused: dict[tuple[str, str, int], float] = {}
        for rank, key in enumerate(hits):
            fused[key] = 1.0 / (RRF_K + rank)
        query = np.asarray(vector, dtype=np.float32)
        for rank, row in enumerate(self._full_text(table, text, where, [*columns, "vector"], limit * 2)):
            key = (row["vector_store_id"], row["file_id"], row["chunk_index"])
            fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + rank)
            if key not in hits:
                hits[key] = row
                other = np.asarray(row["vector"], dtype=np.float32)
                norm = float(np.linalg.norm(other) * np.linalg.norm(query)) or 1.0
                similarity[key] = max(0.0, min(1.0, float(np.dot(other, query)) / norm))
        ranked = sorted(fused, key=lambda key: fused[key], reverse=True)[:limit]
        return [Hit(*key, hits[key]["text"], similarity[key]) for key in ranked]

    def _full_text(self, table: Any, text: str, where: str, columns: list[str], limit: int) -> list[dict[str, Any]]:
        self._ensure_text_index(table)
        try:
            return list(table.search(text, query_type="fts").where(where, prefilter=True).select([*columns, "_score"])
                        .limit(limit).to_list())
        except (ValueError, RuntimeError, OSError):
            return []  # a query the full-text parser refuses: the vector ranking alone

    def _ensure_text_index(self, table: Any) -> None:
        """The BM25 index on the text, made on the first full-text query (rows added later are searched
        unindexed until the upkeep folds them in)."""
        if table.name in self._text_indexed:
            return
        if not any(index.index_type == "FTS" for index in table.list_indices()):
            from lancedb.index import FTS

            table.create_index("text", config=FTS(), replace=True)
        self._text_indexed.add(table.name)

    # -- upkeep ---------------------------------------------------------------------------------

    def optimize(self) -> None:
        """Compact small commits, fold new rows into the indexes, build the ANN index once it pays."""
        for name in self._names():
            if not name.startswith("chunks_"):
                continue
            table = self._db.open_table(name)
            table.optimize(cleanup_older_than=timedelta(hours=1))
            if (table.count_rows() >= ANN_THRESHOLD
                    and not any(index.columns == ["vector"] for index in table.list_indices())):
                table.create_index(metric="cosine", vector_column_name="vector", index_type="IVF_HNSW_SQ")
