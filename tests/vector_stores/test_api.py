"""Vector stores and file search through the official SDK on the live server: real parsing, the real
embedding model, the LanceDB index and the real chat model answering from the user's files.

Every object the server sends is checked against OpenAI's schema for it.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI

from hearth.store.db import Database
from tests.conftest import LiveServer
from tests.raw_http import Raw
from tests.spec import assert_matches_schema
from tests.storage_backends import new_project_key

# The SDK marks the Assistants API deprecated (in favour of Responses); it still serves it.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
MODEL = "gpt-4o-mini"
INCLUDE = "step_details.tool_calls[*].file_search.results[*].content"

REPORT = ("Orchard Cooperative annual report.\n\nIn 2025 the cooperative harvested 4812 crates of Pinova apples. "
          "The head gardener is named Ilse Marwitz. Membership fees rose to 37 euros per year.")
MEMO = ["Lighthouse maintenance memo.", "The lighthouse lamp on Skerry Point was replaced on 3 March.",
        "The keeper of the Skerry Point lighthouse is Tobias Lindqvist."]
GUIDE = ("# Greenhouse guide\n\nThe greenhouse thermostat must be set to 19 degrees at night.\n\n"
         "## Watering\n\nWater the orchids every Thursday.\n")


def pdf_bytes(text: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def docx_bytes(paragraphs: list[str]) -> bytes:
    from docx import Document

    document = Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def raw(server: LiveServer) -> Iterator[Raw]:
    client = Raw(server)
    yield client
    client.http.close()


@pytest.fixture(scope="module")
def other(server: LiveServer) -> OpenAI:
    db = Database(f"sqlite:///{server.data_dir / 'hearth.db'}")
    key = new_project_key(db)[2]
    db.dispose()
    return server.client(api_key=key)


def upload(client: OpenAI, name: str, data: bytes) -> str:
    return client.files.create(file=(name, io.BytesIO(data)), purpose="assistants").id


def settled(client: OpenAI, store_id: str) -> Any:
    deadline = time.monotonic() + 300
    while (store := client.vector_stores.retrieve(store_id)).status == "in_progress":
        assert time.monotonic() < deadline, store
        time.sleep(0.3)
    return store


@pytest.fixture(scope="module")
def docs(client: OpenAI) -> dict[str, str]:
    """The three documents, uploaded once."""
    return {"pdf": upload(client, "report.pdf", pdf_bytes(REPORT)),
            "docx": upload(client, "memo.docx", docx_bytes(MEMO)),
            "md": upload(client, "guide.md", GUIDE.encode())}


@pytest.fixture(scope="module")
def library(client: OpenAI, docs: dict[str, str]) -> str:
    """A store holding the three documents, with attributes, fully indexed."""
    store = client.vector_stores.create(name="library")
    batch = client.vector_stores.file_batches.create(store.id, files=[
        {"file_id": docs["pdf"], "attributes": {"kind": "report", "year": 2025}},
        {"file_id": docs["docx"], "attributes": {"kind": "memo", "year": 2024}},
        {"file_id": docs["md"], "attributes": {"kind": "guide", "year": 2023},
         "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20}}},
    ])
    assert batch.status == "in_progress" and batch.file_counts.total == 3
    settled(client, store.id)
    return store.id


# -- stores ---------------------------------------------------------------------------------------


def test_store_lifecycle(client: OpenAI, raw: Raw) -> None:
    made = [client.vector_stores.create(name=f"store {i}", metadata={"n": str(i)},
                                        expires_after={"anchor": "last_active_at", "days": 7}) for i in range(2)]
    body = raw("GET", f"/vector_stores/{made[0].id}", "VectorStoreObject")
    assert body["status"] == "completed" and body["file_counts"]["total"] == 0 and body["usage_bytes"] == 0
    assert body["expires_after"] == {"anchor": "last_active_at", "days": 7}
    assert body["expires_at"] == body["last_active_at"] + 7 * 86400
    listed = raw("GET", "/vector_stores", "ListVectorStoresResponse", params={"limit": 1})
    assert listed["data"][0]["id"] == made[1].id and listed["has_more"]
    after = client.vector_stores.list(limit=1, after=made[1].id)
    assert after.data[0].id == made[0].id
    updated = client.vector_stores.update(made[0].id, name="renamed", expires_after=None, metadata={"k": "v"})
    assert (updated.name, updated.expires_at, updated.metadata) == ("renamed", None, {"k": "v"})
    assert_matches_schema(raw("DELETE", f"/vector_stores/{made[1].id}"), "DeleteVectorStoreResponse")
    raw("GET", f"/vector_stores/{made[1].id}", status=404)


def test_files_chunking_attributes_and_content(client: OpenAI, raw: Raw, library: str, docs: dict[str, str]) -> None:
    store = raw("GET", f"/vector_stores/{library}", "VectorStoreObject")
    assert store["file_counts"] == {"in_progress": 0, "completed": 3, "failed": 0, "cancelled": 0, "total": 3}
    assert store["usage_bytes"] > 0
    listed = raw("GET", f"/vector_stores/{library}/files", "ListVectorStoreFilesResponse",
                 params={"filter": "completed"})
    assert {item["id"] for item in listed["data"]} == set(docs.values())
    guide = raw("GET", f"/vector_stores/{library}/files/{docs['md']}", "VectorStoreFileObject")
    assert guide["chunking_strategy"] == {"type": "static", "static": {"max_chunk_size_tokens": 100,
                                                                       "chunk_overlap_tokens": 20}}
    assert guide["attributes"] == {"kind": "guide", "year": 2023} and guide["last_error"] is None
    assert raw("GET", f"/vector_stores/{library}/files", params={"filter": "failed"})["data"] == []
    content = raw("GET", f"/vector_stores/{library}/files/{docs['docx']}/content")
    assert content["object"] == "vector_store.file_content.page"
    assert "Tobias Lindqvist" in content["data"][0]["text"]
    updated = client.vector_stores.files.update(docs["md"], vector_store_id=library,
                                                attributes={"kind": "guide", "year": 2022})
    assert updated.attributes == {"kind": "guide", "year": 2022}


def test_search_ranks_filters_and_thresholds(client: OpenAI, raw: Raw, library: str, docs: dict[str, str]) -> None:
    page = raw("POST", f"/vector_stores/{library}/search", "VectorStoreSearchResultsPage",
               json={"query": "Who is the keeper of the lighthouse?", "max_num_results": 2})
    assert page["search_query"] == ["Who is the keeper of the lighthouse?"] and len(page["data"]) <= 2
    top = page["data"][0]
    assert (top["file_id"], top["filename"]) == (docs["docx"], "memo.docx")
    assert "Tobias Lindqvist" in top["content"][0]["text"] and top["attributes"]["kind"] == "memo"
    results = client.vector_stores.search(library, query="How warm must the greenhouse be at night?")
    assert results.data[0].file_id == docs["md"]
    filtered = client.vector_stores.search(library, query="Who is the keeper of the lighthouse?",
                                           filters={"type": "lt", "key": "year", "value": 2024})
    assert {item.file_id for item in filtered.data} <= {docs["md"]}
    strict = client.vector_stores.search(library, query="lighthouse keeper",
                                         ranking_options={"score_threshold": 0.99})
    assert all(item.score >= 0.99 for item in strict.data)


def test_deleting_a_file_removes_its_chunks_from_search(client: OpenAI) -> None:
    secret = upload(client, "secret.txt", b"The password of the blue vault is heliotrope-42.")
    kept = upload(client, "kept.txt", b"The password of the red vault is marigold-17.")
    store = client.vector_stores.create(name="vaults", file_ids=[secret, kept])
    settled(client, store.id)

    def found() -> set[str]:
        return {item.file_id for item in client.vector_stores.search(store.id, query="vault password").data}

    assert found() == {secret, kept}
    deleted = client.vector_stores.files.delete(secret, vector_store_id=store.id)
    assert deleted.deleted and found() == {kept}
    assert client.vector_stores.retrieve(store.id).file_counts.total == 1
    client.files.delete(kept)  # deleting the File itself takes it out of every store's search
    assert found() == set()


def test_batches(client: OpenAI, raw: Raw) -> None:
    ids = [upload(client, f"part{i}.txt", f"Part {i} of the manual.".encode()) for i in range(2)]
    store = client.vector_stores.create(name="batches")
    batch = raw("POST", f"/vector_stores/{store.id}/file_batches", "VectorStoreFileBatchObject",
                json={"file_ids": ids, "attributes": {"manual": True}})
    assert batch["object"] == "vector_store.files_batch" and batch["file_counts"]["total"] == 2
    settled(client, store.id)
    done = raw("GET", f"/vector_stores/{store.id}/file_batches/{batch['id']}", "VectorStoreFileBatchObject")
    assert done["status"] == "completed" and done["file_counts"]["completed"] == 2
    files = client.vector_stores.file_batches.list_files(batch["id"], vector_store_id=store.id)
    assert {item.id for item in files.data} == set(ids) and all(item.attributes == {"manual": True}
                                                                 for item in files.data)
    refused = raw("POST", f"/vector_stores/{store.id}/file_batches/{batch['id']}/cancel", status=400)
    assert "completed" in refused["error"]["message"]


def test_bad_input_is_refused(client: OpenAI, raw: Raw, library: str) -> None:
    for static, param in (({"max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0},
                           "chunking_strategy.static.max_chunk_size_tokens"),
                          ({"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 150},
                           "chunking_strategy.static.chunk_overlap_tokens")):
        error = raw("POST", "/vector_stores", status=400,
                    json={"chunking_strategy": {"type": "static", "static": static}})["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", param)
    with pytest.raises(openai.NotFoundError) as missing:
        client.vector_stores.files.create(library, file_id="file-nope")
    assert missing.value.param == "file_id"  # type: ignore[attr-defined]
    assert raw("POST", f"/vector_stores/{library}/search", status=400,
               json={"query": "x", "max_num_results": 0})["error"]["param"] == "max_num_results"
    assert raw("POST", f"/vector_stores/{library}/search", status=400,
               json={"query": "x", "filters": {"type": "near", "key": "a", "value": 1}})["error"]["param"] == \
        "filters.type"
    assert raw("POST", f"/vector_stores/{library}/search", status=400,
               json={"max_num_results": 3})["error"]["param"] == "query"
    assert raw("GET", f"/vector_stores/{library}/files", status=400,
               params={"filter": "done"})["error"]["param"] == "filter"
    with pytest.raises(openai.BadRequestError):
        client.beta.assistants.create(model=MODEL, tools=[{"type": "file_search"}], tool_resources={
            "file_search": {"vector_store_ids": [library], "vector_stores": [{"file_ids": []}]}})


def test_another_projects_ids_are_not_found(other: OpenAI, library: str, docs: dict[str, str]) -> None:
    for call in (lambda: other.vector_stores.retrieve(library),
                 lambda: other.vector_stores.search(library, query="apples"),
                 lambda: other.vector_stores.files.retrieve(docs["pdf"], vector_store_id=library),
                 lambda: other.vector_stores.delete(library)):
        with pytest.raises(openai.NotFoundError):
            call()
    store = other.vector_stores.create(name="theirs")
    with pytest.raises(openai.NotFoundError):
        other.vector_stores.files.create(store.id, file_id=docs["pdf"])  # our file is not theirs
    with pytest.raises(openai.NotFoundError):
        other.beta.assistants.create(model=MODEL, tools=[{"type": "file_search"}],
                                     tool_resources={"file_search": {"vector_store_ids": [library]}})


# -- file search in runs --------------------------------------------------------------------------


def ask(client: OpenAI, assistant_id: str, question: str, **thread: Any) -> tuple[Any, Any]:
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant_id, thread={"messages": [{"role": "user", "content": question}], **thread},
        poll_interval_ms=300)
    assert run.status == "completed", run.last_error
    answer = client.beta.threads.messages.list(run.thread_id, run_id=run.id).data[0]
    return run, answer


def test_an_assistant_answers_from_a_pdf_and_cites_it(client: OpenAI, raw: Raw, docs: dict[str, str]) -> None:
    assistant = client.beta.assistants.create(
        model=MODEL, temperature=0, instructions="Answer questions about the user's documents in one sentence.",
        tools=[{"type": "file_search", "file_search": {"max_num_results": 3}}],
        tool_resources={"file_search": {"vector_stores": [{"file_ids": [docs["pdf"]]}]}})
    store_ids = assistant.tool_resources.file_search.vector_store_ids
    assert len(store_ids) == 1
    run, answer = ask(client, assistant.id, "How many crates of apples did the cooperative harvest in 2025?")
    text = answer.content[0].text
    assert "4812" in text.value.replace(",", "")
    citations = [note for note in text.annotations if note.type == "file_citation"]
    assert citations and citations[0].file_citation.file_id == docs["pdf"]
    assert text.value[citations[0].start_index:citations[0].end_index] == citations[0].text
    assert_matches_schema(raw("GET", f"/threads/{run.thread_id}/messages/{answer.id}",
                              headers={"OpenAI-Beta": "assistants=v2"}), "MessageObject")

    steps = raw("GET", f"/threads/{run.thread_id}/runs/{run.id}/steps", "ListRunStepsResponse",
                headers={"OpenAI-Beta": "assistants=v2"})["data"]
    (search,) = [step for step in steps if step["type"] == "tool_calls"]
    call = search["step_details"]["tool_calls"][0]
    assert call["type"] == "file_search"
    assert call["file_search"]["ranking_options"] == {"ranker": "default_2024_08_21", "score_threshold": 0.0}
    assert call["file_search"]["results"][0]["file_id"] == docs["pdf"]
    assert "content" not in call["file_search"]["results"][0]
    included = raw("GET", f"/threads/{run.thread_id}/runs/{run.id}/steps/{search['id']}", "RunStepObject",
                   headers={"OpenAI-Beta": "assistants=v2"}, params={"include[]": INCLUDE})
    result = included["step_details"]["tool_calls"][0]["file_search"]["results"][0]
    assert "4812 crates" in result["content"][0]["text"]


def test_answers_from_docx_and_markdown_through_the_thread_store(client: OpenAI, library: str,
                                                                docs: dict[str, str]) -> None:
    assistant = client.beta.assistants.create(
        model=MODEL, temperature=0, instructions="Answer from the user's documents in one short sentence.",
        tools=[{"type": "file_search"}])
    for question, fact, file_id in (("Who is the keeper of the Skerry Point lighthouse?", "Lindqvist", docs["docx"]),
                                    ("At what temperature must the greenhouse thermostat be set at night?", "19",
                                     docs["md"])):
        _, answer = ask(client, assistant.id, question,
                        tool_resources={"file_search": {"vector_store_ids": [library]}})
        text = answer.content[0].text
        assert fact in text.value
        assert file_id in {note.file_citation.file_id for note in text.annotations if note.type == "file_citation"}


def test_v1_retrieval_over_the_assistants_files(server: LiveServer, client: OpenAI, docs: dict[str, str]) -> None:
    v1 = Raw(server, beta="assistants=v1")
    assistant = v1("POST", "/assistants", json={
        "model": MODEL, "temperature": 0, "tools": [{"type": "retrieval"}], "file_ids": [docs["docx"]],
        "instructions": "Answer from the user's documents in one short sentence."})
    run = v1("POST", "/threads/runs", json={"assistant_id": assistant["id"], "thread": {"messages": [
        {"role": "user", "content": "Who is the keeper of the Skerry Point lighthouse?"}]}})
    deadline = time.monotonic() + 300
    while run["status"] in ("queued", "in_progress"):
        assert time.monotonic() < deadline
        time.sleep(0.3)
        run = v1("GET", f"/threads/{run['thread_id']}/runs/{run['id']}")
    assert run["status"] == "completed", run["last_error"]
    answer = v1("GET", f"/threads/{run['thread_id']}/messages", params={"run_id": run["id"]})["data"][0]
    assert "Lindqvist" in answer["content"][0]["text"]["value"]
    notes = answer["content"][0]["text"]["annotations"]
    assert notes and notes[0]["file_citation"]["file_id"] == docs["docx"] and notes[0]["file_citation"]["quote"]
    steps = v1("GET", f"/threads/{run['thread_id']}/runs/{run['id']}/steps")["data"]
    calls = [call for step in steps if step["type"] == "tool_calls" for call in step["step_details"]["tool_calls"]]
    assert calls == [{"id": calls[0]["id"], "type": "retrieval", "retrieval": {}}]


def test_a_streamed_answer_carries_its_citations(client: OpenAI, library: str, docs: dict[str, str]) -> None:
    assistant = client.beta.assistants.create(
        model=MODEL, temperature=0, instructions="Answer from the user's documents in one short sentence.",
        tools=[{"type": "file_search"}], tool_resources={"file_search": {"vector_store_ids": [library]}})
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "On which day are the orchids watered?"}])
    streamed, names = "", []
    annotations: list[Any] = []
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        for event in stream:
            names.append(event.event)
            if event.event == "thread.message.delta":
                assert_matches_schema(event.data.model_dump(mode="json", exclude_unset=True), "MessageDeltaObject")
                part = event.data.delta.content[0]
                streamed += part.text.value or ""
                annotations += part.text.annotations or []
            elif event.event == "thread.run.step.completed" and event.data.type == "tool_calls":
                assert event.data.step_details.tool_calls[0].type == "file_search"
        final = stream.get_final_messages()[0]
    assert names.index("thread.run.step.completed") < names.index("thread.message.created")  # searched first
    assert streamed == final.content[0].text.value and "Thursday" in streamed
    assert [note.file_citation.file_id for note in annotations] == \
        [note.file_citation.file_id for note in final.content[0].text.annotations]
    assert docs["md"] in {note.file_citation.file_id for note in annotations}


def test_message_attachments_join_the_threads_store(client: OpenAI, docs: dict[str, str]) -> None:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Read this.", "attachments": [
        {"file_id": docs["md"], "tools": [{"type": "file_search"}]}]}])
    (store_id,) = thread.tool_resources.file_search.vector_store_ids
    store = client.vector_stores.retrieve(store_id)
    assert store.expires_after.days == 7 and store.file_counts.total == 1
    message = client.beta.threads.messages.create(thread.id, role="user", content="And this.", attachments=[
        {"file_id": docs["docx"], "tools": [{"type": "file_search"}]}])
    assert message.attachments[0].file_id == docs["docx"]
    assert message.attachments[0].tools[0].type == "file_search"
    assert client.beta.threads.retrieve(thread.id).tool_resources.file_search.vector_store_ids == [store_id]
    assert {f.id for f in client.vector_stores.files.list(store_id)} == {docs["md"], docs["docx"]}
