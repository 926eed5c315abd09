"""The ``file_search`` (v2) and ``retrieval`` (v1) tools in assistant runs.

Retrieval does not wait for the chat model to decide to search (a small model
decides poorly): at the start of a run whose tools include it, the thread's
latest user message is searched, as OpenAI's tool searches the user's
question, and the run records a completed ``tool_calls`` step with that call
(v2: ``file_search`` with its ranking options and results, whose chunk text
shows only with ``include[]=step_details.tool_calls[*].file_search.results[*].content``;
v1: ``retrieval``). The best passages go into the prompt, each under a
source marker (``【3:0†report.pdf】``); the answer's markers become
``file_citation`` annotations (the file and a quote of the passage). When the
model cites nothing, the passage the answer draws most words from is cited
with a marker at the end of the answer, so every answer from files names its
source.

What is searched:
- v2: the vector stores in the assistant's and the thread's
  ``tool_resources.file_search.vector_store_ids`` (the ``vector_stores``
  helper makes a store from ``file_ids`` when the assistant or thread is
  created). A run waits (up to ``READY_WAIT_SECONDS``) for their files still
  being processed, as OpenAI's runs wait for a thread's store to be ready.
- v1: the assistant's files (the run's ``file_ids``) and the thread's message
  files, each indexed on first use through the vector stores' pipeline.

Files a v2 message attaches for ``file_search`` join the thread's vector
store (made when the thread has none, expiring 7 days after its last use).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from sqlalchemy.orm import Session

from hearth.assistants.protocol import Version
from hearth.caller import Caller
from hearth.errors import InvalidRequest, NotFound
from hearth.store import assistants as repo
from hearth.store import vector_stores as vs_repo
from hearth.store.tables import AssistantRow, RunRow, ThreadRow
from hearth.vector_stores.execution import VectorStoreJobs
from hearth.vector_stores.service import SearchResult, VectorStoreService

TYPES = ("file_search", "retrieval")
# Passages a run's search gives the model unless the tool says otherwise (a small model's context is short).
DEFAULT_RESULTS = 5
# Passage text the prompt carries, at most, each.
PASSAGE_CHARS = 1200
READY_WAIT_SECONDS = 60.0
RANKER = "default_2024_08_21"
_MARKER = re.compile(r"【(\d+):(\d+)†([^】]*)】")
_WORD = re.compile(r"\w+")


def enabled(tools: Sequence[dict[str, Any]] | None) -> str | None:
    """The retrieval tool among the run's tools (``file_search`` or ``retrieval``), if any."""
    for tool in tools or []:
        if tool.get("type") in TYPES:
            return str(tool["type"])
    return None


# -- checks ---------------------------------------------------------------------------------------


def check_tool(tool: Any, version: Version, param: str) -> dict[str, Any]:
    """The tool as stored: v2 ``file_search`` (with its overrides checked) or v1 ``retrieval``."""
    valid = "retrieval" if version == "v1" else "file_search"
    if tool.type != valid:
        raise InvalidRequest(f"Invalid value for '{param}.type': '{tool.type}' is not a tool of Assistants "
                             f"{version}.", param=f"{param}.type")
    if tool.type == "retrieval":
        return {"type": "retrieval"}
    options = dict(tool.file_search or {})
    out: dict[str, Any] = {}
    unknown = set(options) - {"max_num_results", "ranking_options"}
    if unknown:
        name = min(unknown)
        raise InvalidRequest(f"Unrecognized request argument supplied: {param}.file_search.{name}",
                             param=f"{param}.file_search.{name}")
    if "max_num_results" in options:
        value = options["max_num_results"]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 50:
            raise InvalidRequest(f"Invalid '{param}.file_search.max_num_results': it must be an integer between "
                                 "1 and 50.", param=f"{param}.file_search.max_num_results")
        out["max_num_results"] = value
    if options.get("ranking_options") is not None:
        ranking = options["ranking_options"]
        where = f"{param}.file_search.ranking_options"
        if not isinstance(ranking, dict) or "score_threshold" not in ranking:
            raise InvalidRequest(f"Missing required parameter: '{where}.score_threshold'.",
                                 param=f"{where}.score_threshold")
        threshold = ranking["score_threshold"]
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 <= threshold <= 1:
            raise InvalidRequest(f"Invalid '{where}.score_threshold': it must be between 0 and 1.",
                                 param=f"{where}.score_threshold")
        ranker = ranking.get("ranker", "auto")
        if ranker not in ("auto", RANKER):
            raise InvalidRequest(f"Invalid value for '{where}.ranker': '{ranker}'; expected 'auto' or "
                                 f"'{RANKER}'.", param=f"{where}.ranker")
        out["ranking_options"] = {"ranker": ranker, "score_threshold": float(threshold)}
    return {"type": "file_search", "file_search": out} if out else {"type": "file_search"}


def check_resource(value: Any, param: str) -> dict[str, Any]:
    """``tool_resources.file_search`` checked for shape; ``settle`` makes its ``vector_stores`` into stores."""
    if not isinstance(value, dict):
        raise InvalidRequest(f"Invalid type for '{param}': expected an object.", param=param)
    for key in value:
        if key not in ("vector_store_ids", "vector_stores"):
            raise InvalidRequest(f"Unrecognized request argument supplied: {param}.{key}", param=f"{param}.{key}")
    ids = value.get("vector_store_ids") or []
    helpers = value.get("vector_stores") or []
    if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
        raise InvalidRequest(f"Invalid type for '{param}.vector_store_ids': expected an array of strings.",
                             param=f"{param}.vector_store_ids")
    if not isinstance(helpers, list) or not all(isinstance(item, dict) for item in helpers):
        raise InvalidRequest(f"Invalid type for '{param}.vector_stores': expected an array of objects.",
                             param=f"{param}.vector_stores")
    if len(ids) + len(helpers) > 1:
        raise InvalidRequest(f"Invalid '{param}': at most one vector store can be attached (vector_store_ids "
                             "and vector_stores together).", param=f"{param}.vector_store_ids")
    for index, helper in enumerate(helpers):
        where = f"{param}.vector_stores[{index}]"
        for key in helper:
            if key not in ("file_ids", "chunking_strategy", "metadata"):
                raise InvalidRequest(f"Unrecognized request argument supplied: {where}.{key}", param=f"{where}.{key}")
        file_ids = helper.get("file_ids") or []
        if not isinstance(file_ids, list) or not all(isinstance(item, str) for item in file_ids) \
                or len(file_ids) > 10000:
            raise InvalidRequest(f"Invalid '{where}.file_ids': expected an array of at most 10000 file ids.",
                                 param=f"{where}.file_ids")
    out: dict[str, Any] = {"vector_store_ids": list(ids)}
    if helpers:
        out["vector_stores"] = helpers
    return out


def settle(session: Session, caller: Caller, stores: VectorStoreService | None, resources: dict[str, Any] | None,
           param: str = "tool_resources") -> dict[str, Any]:
    """The resources as stored: each ``vector_stores`` helper made into a new store (with its files' jobs),
    each named store checked to be the caller's."""
    resources = dict(resources or {})
    value = resources.get("file_search")
    if value is None:
        return resources
    where = f"{param}.file_search"
    if stores is None:
        raise InvalidRequest("File search is not available in this process.", param=where, code="unsupported_tool")
    ids = list(value.get("vector_store_ids") or [])
    for index, store_id in enumerate(ids):
        if vs_repo.get_store(session, caller.project_id, store_id) is None:
            raise NotFound(f"No vector store found with id '{store_id}'.", param=f"{where}.vector_store_ids[{index}]")
    for index, helper in enumerate(value.get("vector_stores") or []):
        row = stores.new_store_in(session, caller, name=None, file_ids=helper.get("file_ids") or [],
                                  chunking_strategy=helper.get("chunking_strategy"), metadata=helper.get("metadata"),
                                  param=f"{where}.vector_stores[{index}]")
        ids.append(row.id)
    resources["file_search"] = {"vector_store_ids": ids}
    return resources


# -- a run's search -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    marker: str
    file_id: str
    filename: str
    text: str


def _text(content: list[dict[str, Any]]) -> str:
    return "\n".join(part["text"]["value"] for part in content if part.get("type") == "text")


class FileSearch:
    """Runs a run's search and turns its results into the prompt's passages and the answer's citations."""

    def __init__(self, stores: VectorStoreService, jobs: VectorStoreJobs) -> None:
        self.stores = stores
        self.jobs = jobs
        self.db = stores.db

    async def search(self, run: RunRow, tool: str) -> dict[str, Any] | None:
        """The run's search as a tool call (with its results), or None when there is nothing to search."""
        query, store_ids, file_ids, options = await to_thread.run_sync(self._scope, run, tool)
        if not query.strip():
            return None
        caller = Caller(run.organization_id, run.project_id, run.api_key_id)
        limit = int(options.get("max_num_results") or DEFAULT_RESULTS)
        ranking = options.get("ranking_options") or {}
        threshold = float(ranking.get("score_threshold", 0.0))
        call_id = f"call_{repo.ordered_id('')[-24:]}"
        if tool == "retrieval":
            results = await self._search_files(caller, file_ids, query, limit)
            return {"id": call_id, "type": "retrieval", "retrieval": {}, "_results": _results(results)}
        await self._wait_ready(store_ids)
        results = await self.stores.search_stores(caller, store_ids, [query], limit, score_threshold=threshold,
                                                  background=True)
        return {"id": call_id, "type": "file_search", "file_search": {
            "ranking_options": {"ranker": RANKER, "score_threshold": threshold}, "results": _results(results)}}

    def _scope(self, run: RunRow, tool: str) -> tuple[str, list[str], list[str], dict[str, Any]]:
        with self.db.session() as session:
            messages = repo.thread_messages(session, run.thread_id)
            query = next((_text(m.content) for m in reversed(messages) if m.role == "user"), "")
            options = next((t.get("file_search") or {} for t in run.tools if t.get("type") == "file_search"), {})
            if tool == "retrieval":
                files = list(dict.fromkeys([*run.file_ids, *(f for m in messages for f in m.file_ids)]))
                return query, [], files, options
            assistant = session.get(AssistantRow, run.assistant_id)
            thread = session.get(ThreadRow, run.thread_id)
            ids: list[str] = []
            for owner in (assistant, thread):
                resources = (owner.tool_resources or {}) if owner is not None else {}
                ids += (resources.get("file_search") or {}).get("vector_store_ids") or []
            return query, list(dict.fromkeys(ids)), [], options

    async def _wait_ready(self, store_ids: list[str]) -> None:
        deadline = asyncio.get_running_loop().time() + READY_WAIT_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            counts = await to_thread.run_sync(self._counts, store_ids)
            if not any(count.in_progress for count in counts.values()):
                return
            await asyncio.sleep(0.5)

    def _counts(self, store_ids: list[str]) -> dict[str, vs_repo.Counts]:
        with self.db.session() as session:
            return vs_repo.counts_by_store(session, store_ids)

    async def _search_files(self, caller: Caller, file_ids: list[str], query: str, limit: int) -> list[SearchResult]:
        """v1: the files themselves, each indexed once (under a store of its own) on first use."""
        indexed = []
        for file_id in file_ids:
            if await self.jobs.ensure_file_indexed(caller, file_id, self.stores.embedding_model):
                indexed.append(file_id)
        return await self.stores.search_loose_files(caller, indexed, [query], limit, background=True)

    # -- the prompt and the answer ---------------------------------------------------------------

    @staticmethod
    def sources(call: dict[str, Any] | None, position: int) -> list[Source]:
        """The passages of a recorded search, each with its marker (``position``: the answer's place in the
        thread, the marker's first number)."""
        if call is None:
            return []
        results = call.get("file_search", {}).get("results") if call.get("type") == "file_search" \
            else call.get("_results")
        out = []
        for index, result in enumerate(results or []):
            text = " ".join(part.get("text", "") for part in result.get("content") or [])
            out.append(Source(f"【{position}:{index}†{result['file_name']}】", result["file_id"], result["file_name"],
                              text))
        return out

    @staticmethod
    def instructions(sources: list[Source]) -> str:
        if not sources:
            return ("File search found no passages in the user's files for this question; say so if the answer "
                    "needs them.")
        passages = "\n\n".join(f"{source.marker}\n{source.text[:PASSAGE_CHARS]}" for source in sources)
        return ("Answer the user's question from these passages of the user's files. Quote the facts as "
                "written, and cite the passage you used by its marker, e.g. " + sources[0].marker + ".\n\n" + passages)

    @staticmethod
    def cite(text: str, sources: list[Source]) -> tuple[str, list[dict[str, Any]]]:
        """The answer with its citations: the model's own markers, else one for the passage it drew on."""
        if not sources:
            return text, []
        by_marker = {(source.marker[1:].split("†", 1)[0]): source for source in sources}
        found = [(match, by_marker.get(f"{match.group(1)}:{match.group(2)}")) for match in _MARKER.finditer(text)]
        annotations = [_annotation(match.group(0), match.start(), source)
                       for match, source in found if source is not None]
        if annotations:
            return text, annotations
        source = _best_source(text, sources)
        marker = source.marker
        cited = f"{text.rstrip()} {marker}" if text.strip() else marker
        return cited, [_annotation(marker, len(cited) - len(marker), source)]


def _annotation(marker: str, start: int, source: Source) -> dict[str, Any]:
    return {"type": "file_citation", "text": marker, "start_index": start, "end_index": start + len(marker),
            "file_citation": {"file_id": source.file_id, "quote": source.text[:PASSAGE_CHARS]}}


def _best_source(text: str, sources: list[Source]) -> Source:
    """The passage sharing the most words with the answer (the better-ranked one on a tie)."""
    words = {word.lower() for word in _WORD.findall(text)}
    return max(sources, key=lambda source: (len(words & {w.lower() for w in _WORD.findall(source.text)}),
                                            -sources.index(source)))


def _results(results: list[SearchResult]) -> list[dict[str, Any]]:
    return [{"file_id": result.file_id, "file_name": result.filename, "score": result.score,
             "content": [{"type": "text", "text": result.text}]} for result in results]


def shown(call: dict[str, Any], include_content: bool) -> dict[str, Any]:
    """A recorded call as the API shows it: results' text only when asked for; v1's kept results never."""
    if call.get("type") == "retrieval":
        return {key: value for key, value in call.items() if key != "_results"}
    if call.get("type") != "file_search" or include_content:
        return call
    details = call.get("file_search") or {}
    results = [{key: value for key, value in result.items() if key != "content"}
               for result in details.get("results") or []]
    return {**call, "file_search": {**details, "results": results}}



# -- the run's recorded search ----------------------------------------------------------------------


def _order(object_id: str) -> str:
    return object_id.split("_", 1)[1]


def recorded_call(session: Session, run: RunRow) -> tuple[dict[str, Any] | None, int]:
    """The run's search call (from its completed step) and its place in the thread (the markers' first
    number: how many messages came before it)."""
    for step in repo.steps_of_run(session, run.id, ["completed"]):
        for call in step.step_details.get("tool_calls") or []:
            if call.get("type") in TYPES:
                position = sum(1 for message in repo.thread_messages(session, run.thread_id)
                               if _order(message.id) < _order(step.id))
                return call, position
    return None, 0


def run_sources(session: Session, run: RunRow) -> list[Source] | None:
    """The passages the run's search found (None: the run did not search)."""
    call, position = recorded_call(session, run)
    return None if call is None else FileSearch.sources(call, position)


def citation_delta(message_id: str, streamed: str, text: str, annotations: list[dict[str, Any]]
                   ) -> tuple[str, dict[str, Any]]:
    """The ``thread.message.delta`` event that brings a streamed answer to its cited form: the marker
    appended (if one was) and every annotation."""
    added = text[len(streamed):] if text.startswith(streamed) else ""
    return "thread.message.delta", {"id": message_id, "object": "thread.message.delta", "delta": {"content": [{
        "index": 0, "type": "text", "text": {"value": added, "annotations": [
            {"index": index, **annotation} for index, annotation in enumerate(annotations)]}}]}}


# -- message attachments ----------------------------------------------------------------------------


def attachment_files(attachments: Sequence[Any] | None) -> list[str]:
    """The files a message attaches for file search."""
    return list(dict.fromkeys(attachment.file_id for attachment in attachments or []
                              if any(isinstance(tool, dict) and tool.get("type") == "file_search"
                                     for tool in attachment.tools)))


def other_attachments(attachments: Sequence[Any] | None) -> list[Any]:
    """The attachments with their file_search tool taken out (those for nothing else dropped)."""
    out = []
    for attachment in attachments or []:
        tools = [tool for tool in attachment.tools if not (isinstance(tool, dict) and tool.get("type") == "file_search")]
        if tools or not attachment.tools:
            out.append(attachment.model_copy(update={"tools": tools}))
    return out


def stored_attachments(attachments: Sequence[Any] | None) -> list[dict[str, Any]]:
    """Every attachment as stored, each with its (checked) tools."""
    return [{"file_id": attachment.file_id, "tools": [{"type": kind} for kind in ("code_interpreter", "file_search")
                                                     if any(tool.get("type") == kind for tool in attachment.tools)]}
            for attachment in attachments or []]


def attach_to_thread(session: Session, caller: Caller, stores: VectorStoreService | None, thread_id: str,
                     file_ids: list[str], param: str) -> None:
    """Files attached to a message for file search join the thread's vector store (made, expiring 7 days
    after its last use, when the thread has none), as OpenAI's threads do."""
    if stores is None:
        raise InvalidRequest("File search is not available in this process.", param=param, code="unsupported_tool")
    thread = session.get(ThreadRow, thread_id)
    assert thread is not None
    resources = dict(thread.tool_resources or {})
    ids = list((resources.get("file_search") or {}).get("vector_store_ids") or [])
    store = vs_repo.get_store(session, caller.project_id, ids[0]) if ids else None
    if store is None:
        store = stores.new_store_in(session, caller, name=None, file_ids=file_ids,
                                    expires_after={"anchor": "last_active_at", "days": 7}, param=param)
        resources["file_search"] = {"vector_store_ids": [store.id]}
        thread.tool_resources = resources
    else:
        stores.attach_files_in(session, caller, store, file_ids, param)
