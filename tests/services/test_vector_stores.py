"""Vector stores in-process: parsing each format, chunking, filters, the LanceDB index, and the file jobs
(status, counts, cancel, removal) over a real SQLite database, blob directory and job queue; only the
embedding model is a fake (its vectors carry no meaning, so ranking quality is tested on the live server)."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hearth.caller import Caller
from hearth.embeddings.service import EmbeddingsService
from hearth.errors import InvalidRequest, NotFound
from hearth.files import service as files
from hearth.files.service import FileStorage
from hearth.jobs import JobQueue, Worker
from hearth.settings import Settings
from hearth.store.db import Database
from hearth.store.ids import now
from hearth.store.pagination import PageRequest
from hearth.store.tables import Organization, Project
from hearth.vector_stores import filters
from hearth.vector_stores.chunking import AUTO, Strategy, chunk, strategy_of
from hearth.vector_stores.execution import VectorStoreJobs
from hearth.vector_stores.index import Chunk, ChunkIndex
from hearth.vector_stores.parsing import ParseError, parse
from hearth.vector_stores.protocol import (
    CreateVectorStoreFileBatchRequest,
    CreateVectorStoreFileRequest,
    CreateVectorStoreRequest,
    SearchRequest,
)
from hearth.vector_stores.service import VectorStoreService
from tests.conftest import pulled_model_dir
from tests.services.conftest import CALLER, Hearth

OTHER = Caller(organization_id=CALLER.organization_id, project_id="proj_other")


class WordTokens:
    """A token a word (what chunking needs of cl100k_base: tokens and where each starts)."""

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[int]]:
        starts = [match.start() for match in re.finditer(r"\S+", text)]
        return list(range(len(starts))), starts


# -- parsing ---------------------------------------------------------------------------------------


def _pdf(text: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, text)
    pdf.add_page()
    pdf.multi_cell(0, 8, "Second page.")
    return bytes(pdf.output())


def _docx(paragraphs: list[str]) -> bytes:
    from docx import Document

    document = Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "colour", "teal"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_each_format_parses_to_its_text() -> None:
    parsed = parse("report.pdf", _pdf("The vault opens at dawn."))
    assert "The vault opens at dawn." in parsed.text and parsed.pages == 2
    assert parse("memo.docx", _docx(["First point.", "Second point."])).text == \
        "First point.\nSecond point.\ncolour | teal"
    html = b"<html><head><style>p{}</style><script>var x=1</script></head><body><h1>Title</h1><p>Body</p></body>"
    assert parse("page.html", html).text == "Title\nBody"
    assert json.loads(parse("data.json", b'{"a": [1, 2]}').text) == {"a": [1, 2]}
    assert parse("notes.md", "\ufeff# Héllo".encode()).text == "# Héllo"
    assert parse("main.py", b"print('hi')").text == "print('hi')"


@pytest.mark.parametrize(("name", "data", "code"), [
    ("image.png", b"\x89PNG...", "unsupported_file"),
    ("broken.pdf", b"not a pdf at all", "invalid_file"),
    ("broken.docx", b"not a zip", "invalid_file"),
    ("latin1.txt", "café".encode("latin-1"), "invalid_file"),
    ("empty.md", b"   \n", "invalid_file"),
    ("bad.json", b"{", "invalid_file"),
])
def test_unreadable_files_are_refused_with_their_code(name: str, data: bytes, code: str) -> None:
    with pytest.raises(ParseError) as refused:
        parse(name, data)
    assert refused.value.code == code


# -- chunking --------------------------------------------------------------------------------------


def test_chunks_overlap_by_the_strategy_and_are_exact_substrings() -> None:
    text = " ".join(f"w{i}" for i in range(250))
    pieces = chunk(text, Strategy(100, 40), WordTokens())
    assert [len(piece.split()) for piece in pieces] == [100, 100, 100, 70]
    assert pieces[1].split()[0] == "w60" and all(piece in text for piece in pieces)
    assert chunk("", AUTO, WordTokens()) == []


def test_cl100k_chunking_keeps_every_character() -> None:
    from hearth.engines.openai_tokens import RANKS_FILE, Cl100k

    # The embedding model's files carry cl100k_base; pulled once, like the live server's models.
    ranks = pulled_model_dir("all-minilm-l6-v2") / RANKS_FILE
    text = "Zoë’s café — 数据 " * 200
    pieces = chunk(text, Strategy(100, 50), Cl100k(ranks))
    assert len(pieces) > 2 and all(piece in text for piece in pieces)


@pytest.mark.parametrize(("static", "param"), [
    ({"max_chunk_size_tokens": 99, "chunk_overlap_tokens": 0}, "chunking_strategy.static.max_chunk_size_tokens"),
    ({"max_chunk_size_tokens": 5000, "chunk_overlap_tokens": 0}, "chunking_strategy.static.max_chunk_size_tokens"),
    ({"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 101}, "chunking_strategy.static.chunk_overlap_tokens"),
    ({"max_chunk_size_tokens": 200, "chunk_overlap_tokens": -1}, "chunking_strategy.static.chunk_overlap_tokens"),
])
def test_static_strategy_is_checked_as_the_api_checks_it(static: dict[str, int], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        strategy_of({"type": "static", "static": static})
    assert refused.value.param == param
    assert strategy_of(None) == strategy_of({"type": "auto"}) == Strategy(800, 400)


# -- filters ---------------------------------------------------------------------------------------


def test_filters_compare_and_combine_attributes() -> None:
    attributes = {"year": 2024, "team": "blue", "public": True}
    assert filters.matches({"type": "gte", "key": "year", "value": 2020}, attributes)
    assert not filters.matches({"type": "lt", "key": "year", "value": 2020}, attributes)
    assert filters.matches({"type": "in", "key": "team", "value": ["red", "blue"]}, attributes)
    assert filters.matches({"type": "ne", "key": "missing", "value": 1}, attributes)
    assert not filters.matches({"type": "eq", "key": "missing", "value": 1}, attributes)
    both = {"type": "and", "filters": [{"type": "eq", "key": "public", "value": True},
                                       {"type": "or", "filters": [{"type": "eq", "key": "team", "value": "red"},
                                                                  {"type": "gt", "key": "year", "value": 2023}]}]}
    filters.check(both)
    assert filters.matches(both, attributes)
    for bad in ({"type": "near", "key": "a", "value": 1}, {"type": "in", "key": "a", "value": 3},
                {"type": "and", "filters": "x"}, {"type": "eq", "key": "a"}):
        with pytest.raises(InvalidRequest):
            filters.check(bad)


# -- the index -------------------------------------------------------------------------------------


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_index_finds_nearest_chunks_of_allowed_files_only(tmp_path: Path) -> None:
    index = ChunkIndex(str(tmp_path / "index"))
    index.replace_file("m", "vs_a", "file-1", [Chunk("vs_a", "file-1", 0, "apples and pears", _unit(1, 0, 0)),
                                               Chunk("vs_a", "file-1", 1, "boats on rivers", _unit(0, 1, 0))])
    index.replace_file("m", "vs_a", "file-2", [Chunk("vs_a", "file-2", 0, "apple orchards", _unit(0.9, 0.1, 0))])
    index.replace_file("m", "vs_b", "file-3", [Chunk("vs_b", "file-3", 0, "apples elsewhere", _unit(1, 0, 0))])
    hits = index.search("m", _unit(1, 0, 0), {"vs_a"}, {"file-1", "file-2"}, 2)
    assert [(hit.file_id, hit.chunk_index) for hit in hits] == [("file-1", 0), ("file-2", 0)]
    assert hits[0].score == pytest.approx(1.0, abs=1e-4) and 0 <= hits[1].score < 1
    assert [hit.file_id for hit in index.search("m", _unit(1, 0, 0), {"vs_a"}, {"file-2"}, 5)] == ["file-2"]
    hybrid = index.search("m", _unit(0, 0, 1), {"vs_a"}, {"file-1", "file-2"}, 3, text="boats")
    assert (hybrid[0].file_id, hybrid[0].chunk_index) == ("file-1", 1)  # the words win where vectors tie
    # Re-indexing a file replaces its chunks; deleting removes them.
    index.replace_file("m", "vs_a", "file-1", [Chunk("vs_a", "file-1", 0, "only chunk", _unit(0, 0, 1))])
    assert [hit.text for hit in index.search("m", _unit(0, 0, 1), {"vs_a"}, {"file-1"}, 5)] == ["only chunk"]
    index.delete("m", "vs_a", ["file-1"])
    assert not index.has_file("m", "vs_a", "file-1") and index.has_file("m", "vs_a", "file-2")
    index.delete("m", "vs_a")
    assert index.search("m", _unit(1, 0, 0), {"vs_a"}, {"file-1", "file-2"}, 5) == []
    assert index.search("unknown-model", _unit(1, 0, 0), {"vs_a"}, {"file-2"}, 5) == []
    index.optimize()


# -- stores, files and jobs ------------------------------------------------------------------------


@dataclass
class Env:
    db: Database
    storage: FileStorage
    queue: JobQueue
    service: VectorStoreService
    jobs: VectorStoreJobs

    async def upload(self, name: str, data: bytes, caller: Caller = CALLER) -> str:
        async def body() -> AsyncIterator[bytes]:
            yield data

        return (await files.store_file(self.storage, caller, name, "assistants", body())).id

    async def settle(self, store_id: str) -> dict[str, Any]:
        """Run the jobs until the store has no file in progress."""
        worker = Worker(self.queue, self.jobs.handlers(), concurrency=2, poll_interval=0.01)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            async with asyncio.timeout(60):
                while (store := self.service.retrieve(CALLER, store_id))["status"] == "in_progress":
                    await asyncio.sleep(0.02)
        finally:
            stop.set()
            await task
        return store


@asynccontextmanager
async def environment(hearth: Hearth, root: Path) -> AsyncIterator[Env]:
    config = Settings(data_dir=root, database_url=f"sqlite:///{root / 'hearth.db'}", vector_store_hybrid_search=False)
    db = Database(config.resolved_database_url)
    db.migrate()
    with db.session() as session:
        session.add(Organization(id=CALLER.organization_id, name="Test", created_at=now()))
        for project_id in (CALLER.project_id, OTHER.project_id):
            session.add(Project(id=project_id, organization_id=CALLER.organization_id, name=project_id,
                                status="active", created_at=now()))
    engine = hearth.engine("fake-minilm")
    engine.max_tokens = 100_000  # the fake reads whole chunks
    engine.openai_tokens = WordTokens()
    storage = await files.open_file_storage(db, config, hearth.meter)
    queue = JobQueue(db)
    embeddings = EmbeddingsService(hearth.models, hearth.meter)
    index = ChunkIndex.from_settings(config)
    try:
        yield Env(db, storage, queue, VectorStoreService(db, queue, embeddings, index, storage, config),
                  VectorStoreJobs(db, storage, embeddings, index))
    finally:
        db.dispose()


@pytest.fixture
def env(hearth: Hearth, tmp_path: Path) -> Iterator[Any]:
    def run(scenario: Any) -> None:
        async def main() -> None:
            async with environment(hearth, tmp_path) as built:
                await scenario(built)

        asyncio.run(main())

    yield run


def test_files_are_indexed_and_counted(env: Any) -> None:
    async def scenario(e: Env) -> None:
        good = await e.upload("notes.md", ("word " * 300).encode())
        bad = await e.upload("picture.png", b"\x89PNG")
        store = e.service.create(CALLER, CreateVectorStoreRequest(name="kb", file_ids=[good, bad]))
        assert store["status"] == "in_progress" and store["file_counts"]["in_progress"] == 2
        store = await e.settle(store["id"])
        assert store["status"] == "completed" and store["usage_bytes"] > 0
        assert {k: store["file_counts"][k] for k in ("completed", "failed", "total")} == \
            {"completed": 1, "failed": 1, "total": 2}
        failed = e.service.retrieve_file(CALLER, store["id"], bad)
        assert failed["status"] == "failed" and failed["last_error"]["code"] == "unsupported_file"
        done = e.service.retrieve_file(CALLER, store["id"], good)
        assert done["chunking_strategy"] == {"type": "static", "static": {
            "max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}
        found = await e.service.search(CALLER, store["id"], SearchRequest(query="word word"))
        assert {item["file_id"] for item in found["data"]} == {good}
        # Another project sees none of it.
        with pytest.raises(NotFound):
            e.service.retrieve(OTHER, store["id"])
        with pytest.raises(NotFound):
            await e.service.search(OTHER, store["id"], SearchRequest(query="word"))
        # Removing the file from the store, or deleting the File, takes its chunks out of search at once.
        e.service.delete_file(CALLER, store["id"], good)
        assert (await e.service.search(CALLER, store["id"], SearchRequest(query="word")))["data"] == []
        e.service.create_file(CALLER, store["id"], CreateVectorStoreFileRequest(file_id=good))
        await e.settle(store["id"])
        assert (await e.service.search(CALLER, store["id"], SearchRequest(query="word")))["data"]
        files.delete_file(e.storage, CALLER, good)
        assert (await e.service.search(CALLER, store["id"], SearchRequest(query="word")))["data"] == []
        e.jobs.sweep()  # the sweep then drops the file's row and chunks
        assert e.service.retrieve(CALLER, store["id"])["file_counts"]["total"] == 1
        assert not e.jobs.index.has_file(e.service.embedding_model, store["id"], good)

    env(scenario)


def test_a_cancelled_batch_stops_its_files(env: Any) -> None:
    async def scenario(e: Env) -> None:
        ids = [await e.upload(f"doc{i}.txt", f"document {i} text".encode()) for i in range(3)]
        store = e.service.create(CALLER, CreateVectorStoreRequest(name="kb"))
        batch = e.service.create_batch(CALLER, store["id"], CreateVectorStoreFileBatchRequest(file_ids=ids))
        assert batch["status"] == "in_progress" and batch["file_counts"]["in_progress"] == 3
        cancelled = e.service.cancel_batch(CALLER, store["id"], batch["id"])  # before any worker ran
        assert cancelled["status"] == "cancelled" and cancelled["file_counts"]["cancelled"] == 3
        store = await e.settle(store["id"])
        listed, _ = e.service.list_files(CALLER, store["id"], PageRequest(limit=10), "cancelled", batch["id"])
        assert sorted(item["id"] for item in listed) == sorted(ids)
        assert (await e.service.search(CALLER, store["id"], SearchRequest(query="document")))["data"] == []
        with pytest.raises(InvalidRequest):
            e.service.cancel_batch(CALLER, store["id"], batch["id"])
        # A new batch of the same files indexes them.
        again = e.service.create_batch(CALLER, store["id"], CreateVectorStoreFileBatchRequest(
            files=[CreateVectorStoreFileRequest(file_id=ids[0], attributes={"n": 0})]))
        await e.settle(store["id"])
        assert e.service.retrieve_batch(CALLER, store["id"], again["id"])["status"] == "completed"
        found = await e.service.search(CALLER, store["id"], SearchRequest(
            query="document", filters={"type": "eq", "key": "n", "value": 0}))
        assert [item["file_id"] for item in found["data"]] == [ids[0]]

    env(scenario)


# -- the file_search tool's pieces ---------------------------------------------------------------------


def test_answers_cite_their_passages() -> None:
    from hearth.assistants.file_search import FileSearch, Source, shown

    sources = [Source("【2:0†a.pdf】", "file-a", "a.pdf", "The vault opens at dawn."),
               Source("【2:1†b.md】", "file-b", "b.md", "Bread is baked on Fridays.")]
    text, notes = FileSearch.cite("It opens at dawn 【2:0†a.pdf】.", sources)
    assert text == "It opens at dawn 【2:0†a.pdf】." and len(notes) == 1
    assert (notes[0]["start_index"], notes[0]["end_index"]) == (17, 17 + len("【2:0†a.pdf】"))
    assert notes[0]["file_citation"] == {"file_id": "file-a", "quote": "The vault opens at dawn."}
    # No marker of its own: the passage the answer shares most words with is cited at its end.
    text, notes = FileSearch.cite("Bread is baked on Fridays.", sources)
    assert text.endswith(" 【2:1†b.md】") and notes[0]["file_citation"]["file_id"] == "file-b"
    assert text[notes[0]["start_index"]:notes[0]["end_index"]] == "【2:1†b.md】"
    assert FileSearch.cite("Hello.", []) == ("Hello.", [])
    call = {"id": "call_1", "type": "file_search", "file_search": {"results": [
        {"file_id": "file-a", "file_name": "a.pdf", "score": 0.5, "content": [{"type": "text", "text": "x"}]}]}}
    assert "content" not in shown(call, False)["file_search"]["results"][0]
    assert shown(call, True) == call


def test_file_search_tool_options_are_checked() -> None:
    from hearth.assistants.file_search import check_resource, check_tool
    from hearth.assistants.protocol import FileSearchTool, RetrievalTool

    tool = FileSearchTool(type="file_search", file_search={"max_num_results": 3,
                                                           "ranking_options": {"score_threshold": 0.2}})
    assert check_tool(tool, "v2", "tools[0]") == {"type": "file_search", "file_search": {
        "max_num_results": 3, "ranking_options": {"ranker": "auto", "score_threshold": 0.2}}}
    assert check_tool(RetrievalTool(type="retrieval"), "v1", "tools[0]") == {"type": "retrieval"}
    for options, param in (({"max_num_results": 51}, "tools[0].file_search.max_num_results"),
                           ({"ranking_options": {}}, "tools[0].file_search.ranking_options.score_threshold"),
                           ({"ranking_options": {"score_threshold": 0.1, "ranker": "x"}},
                            "tools[0].file_search.ranking_options.ranker")):
        with pytest.raises(InvalidRequest) as refused:
            check_tool(FileSearchTool(type="file_search", file_search=options), "v2", "tools[0]")
        assert refused.value.param == param
    with pytest.raises(InvalidRequest) as two:
        check_resource({"vector_store_ids": ["vs_1", "vs_2"]}, "tool_resources.file_search")
    assert two.value.param == "tool_resources.file_search.vector_store_ids"
