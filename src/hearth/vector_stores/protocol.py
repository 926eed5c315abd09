"""Wire models for vector stores, their files, file batches and search (requests; objects are dicts
rendered by ``service.py`` in the API's shapes)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, StringConstraints

from hearth.chat.protocol import Metadata


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExpiresAfter(_Request):
    anchor: Literal["last_active_at"]
    days: Annotated[int, Field(ge=1, le=365)]


class StaticNumbers(_Request):
    max_chunk_size_tokens: int
    chunk_overlap_tokens: int


class AutoChunking(_Request):
    type: Literal["auto"]


class StaticChunking(_Request):
    type: Literal["static"]
    static: StaticNumbers


ChunkingStrategy = Annotated[AutoChunking | StaticChunking, Field(discriminator="type")]

AttributeValue = Annotated[str, StringConstraints(max_length=512)] | StrictBool | StrictInt | StrictFloat
Attributes = Annotated[dict[Annotated[str, StringConstraints(max_length=64)], AttributeValue], Field(max_length=16)]


class CreateVectorStoreRequest(_Request):
    file_ids: Annotated[list[StrictStr], Field(max_length=500)] | None = None
    name: StrictStr | None = None
    description: StrictStr | None = None
    expires_after: ExpiresAfter | None = None
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata | None = None


class UpdateVectorStoreRequest(_Request):
    name: StrictStr | None = None
    expires_after: ExpiresAfter | None = None
    metadata: Metadata | None = None


class CreateVectorStoreFileRequest(_Request):
    file_id: StrictStr
    chunking_strategy: ChunkingStrategy | None = None
    attributes: Attributes | None = None


class CreateVectorStoreFileBatchRequest(_Request):
    file_ids: Annotated[list[StrictStr], Field(min_length=1, max_length=2000)] | None = None
    files: Annotated[list[CreateVectorStoreFileRequest], Field(min_length=1, max_length=2000)] | None = None
    chunking_strategy: ChunkingStrategy | None = None
    attributes: Attributes | None = None


class UpdateVectorStoreFileRequest(_Request):
    attributes: Attributes | None


class RankingOptions(_Request):
    ranker: Literal["none", "auto", "default-2024-11-15"] = "auto"
    score_threshold: Annotated[float, Field(ge=0, le=1)] = 0.0


class SearchRequest(_Request):
    # Checked by the service: a validation error at `query` would read as the URL's query string.
    query: StrictStr | list[StrictStr] | None = None
    # Accepted and not acted on: queries are searched as written (``search_query`` says so).
    rewrite_query: StrictBool = False
    max_num_results: Annotated[int, Field(ge=1, le=50)] = 10
    # A comparison or compound filter over file attributes; checked by ``filters.check``.
    filters: dict[str, Any] | None = None
    ranking_options: RankingOptions | None = None
