"""The ``code_interpreter`` tool in assistant runs: the chat model writes Python, the sandbox runs it.

The chat model sees the tool as a function, ``python(code)``, whose
description names the files the run has in ``/mnt/data``. When it calls it,
the executor does not wait for the client: the code runs in the sandbox
(``hearth.sandbox``) with the run's files copied into its working directory,
and the step records the call as the API shows it: ``{"type":
"code_interpreter", "code_interpreter": {"input", "outputs": [logs | image]}}``.
Files the code created become Files (purpose ``assistants_output``); images
are ``image`` outputs and ``image_file`` parts of the answer. The output goes
back to the model, which then answers. Each run that runs code counts one
session for the usage API's ``code_interpreter_sessions``.

The run's files: v2's ``tool_resources.code_interpreter.file_ids`` of the
assistant and the thread and message attachments for the tool; v1's
assistant files (the run's ``file_ids``) and message files.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from anyio import to_thread

from hearth.accounting.meter import Meter, UsageEvent
from hearth.caller import Caller
from hearth.errors import InvalidRequest
from hearth.files import service as files
from hearth.files.blobio import read_blob_sync
from hearth.files.service import FileStorage
from hearth.sandbox import Sandbox, SandboxResult, SandboxUnavailable, ensure_available
from hearth.store import assistants as repo
from hearth.store import files as files_repo
from hearth.store.db import Database
from hearth.store.tables import RunRow

TYPE = "code_interpreter"
# The function the chat model calls to run code.
FUNCTION = "python"
PURPOSE = "assistants_output"
# Code runs a run may make; after these the model must answer.
MAX_CALLS_PER_RUN = 3
# Input files copied into the sandbox: at most this many bytes each.
MAX_INPUT_FILE_BYTES = 50 << 20
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")


# -- checks shared with the services ---------------------------------------------------------


def check_available(param: str) -> None:
    """A 400 naming what is missing unless code can run sandboxed on this server."""
    try:
        ensure_available()
    except SandboxUnavailable as missing:
        raise InvalidRequest(f"The 'code_interpreter' tool cannot be used: {missing}", param=param,
                             code="unsupported_tool") from None


def check_function_names(tools: Sequence[dict[str, Any]], param: str) -> None:
    """The model calls the code interpreter as the function ``python``: no function tool may share the name."""
    if not enabled(tools):
        return
    for index, tool in enumerate(tools):
        if tool.get("type") == "function" and tool["function"].get("name") == FUNCTION:
            raise InvalidRequest(f"The function name '{FUNCTION}' is the code_interpreter tool's on this server; "
                                 "rename the function.", param=f"{param}[{index}].function.name")


def check_resource(value: Any, param: str) -> dict[str, Any]:
    """``tool_resources.code_interpreter`` as stored: ``{"file_ids": [...]}`` (at most 20)."""
    if not isinstance(value, dict):
        raise InvalidRequest(f"Invalid type for '{param}': expected an object.", param=param)
    for key in value:
        if key != "file_ids":
            raise InvalidRequest(f"Unrecognized request argument supplied: {param}.{key}", param=f"{param}.{key}")
    file_ids = value.get("file_ids") or []
    if not isinstance(file_ids, list) or not all(isinstance(item, str) for item in file_ids):
        raise InvalidRequest(f"Invalid type for '{param}.file_ids': expected an array of strings.",
                             param=f"{param}.file_ids")
    if len(file_ids) > 20:
        raise InvalidRequest(f"Invalid '{param}.file_ids': at most 20 files.", param=f"{param}.file_ids")
    return {"file_ids": list(dict.fromkeys(file_ids))}


def check_attachments(attachments: Sequence[Any] | None, param: str) -> list[dict[str, Any]] | None:
    """A message's attachments as stored when every one is for the code interpreter; None when any is for
    another tool (the caller refuses those)."""
    if not attachments:
        return []
    out = []
    for attachment in attachments:
        types = [tool.get("type") if isinstance(tool, dict) else None for tool in attachment.tools]
        if not types or any(kind != TYPE for kind in types):
            return None
        out.append({"file_id": attachment.file_id, "tools": [{"type": TYPE}]})
    check_available(param)
    return out


def enabled(tools: Sequence[dict[str, Any]] | None) -> bool:
    return any(tool.get("type") == TYPE for tool in tools or [])


# -- the chat request ---------------------------------------------------------------------------


def chat_tool(file_names: Sequence[str]) -> dict[str, Any]:
    where = ("Files available in /mnt/data: " + ", ".join(file_names) + ". ") if file_names else ""
    return {"type": "function", "function": {
        "name": FUNCTION,
        "description": "Run Python 3 code in a sandbox (no internet) and get back what it prints. "
                       "The working directory is /mnt/data. " + where +
                       "Use print() to show results. numpy, pandas and matplotlib are installed; save charts "
                       "as PNG files in /mnt/data with plt.savefig.",
        "parameters": {"type": "object", "properties": {"code": {"type": "string",
                                                                  "description": "The Python code to run."}},
                       "required": ["code"]}}}


def chat_tools(tools: Sequence[dict[str, Any]], file_names: Sequence[str]) -> list[dict[str, Any]]:
    """The run's tools as chat tools: code_interpreter becomes the ``python`` function."""
    return [chat_tool(file_names) if tool.get("type") == TYPE else tool for tool in tools]


def chat_tool_choice(choice: Any, tools: Sequence[dict[str, Any]], calls: Sequence[dict[str, Any]],
                     answered: bool) -> Any:
    """The turn's tool choice, given the run's code_interpreter ``calls`` so far.

    A choice naming code_interpreter (or ``auto`` with it as the only tool) forces the first turn to write
    code; after it the model answers from the output (``none``), unless the code failed, when it writes code
    again, at most ``MAX_CALLS_PER_RUN`` times. Other choices force only the turn before the run's calls
    are answered, as for functions.
    """
    if len(calls) >= MAX_CALLS_PER_RUN:
        return "none"
    if (isinstance(choice, dict) and choice.get("type") == TYPE) or (
            choice in (None, "auto") and len(tools) == 1 and enabled(tools)):
        if not calls or failed(calls[-1]):
            return {"type": "function", "function": {"name": FUNCTION}}
        return "none"
    if answered and choice not in (None, "none", "auto"):
        return "auto"
    return choice


def failed(call: dict[str, Any]) -> bool:
    """Whether a recorded call's code ended in an error (the model gets to try again)."""
    logs = _outputs_text((call.get(TYPE) or {}).get("outputs") or [])
    return any(sign in logs for sign in ("Traceback (most recent call last)", 'File "<code>"', "Execution stopped"))


def call_messages(call: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A recorded code_interpreter call as the chat model's tool call and the output it read."""
    details = call.get(TYPE) or {}
    tool_call = {"id": call["id"], "type": "function",
                 "function": {"name": FUNCTION, "arguments": json.dumps({"code": details.get("input", "")})}}
    return tool_call, _outputs_text(details.get("outputs") or [])


def text_messages(call: dict[str, Any]) -> list[dict[str, Any]]:
    """A recorded call as plain text, for the turn that answers from it: small models read a tool's output
    this way far more reliably than as a tool message (they tend to call the tool again instead)."""
    details = call.get(TYPE) or {}
    fence = "```"
    return [{"role": "assistant", "content": f"I ran this code:\n{fence}python\n{details.get('input', '')}\n{fence}"},
            {"role": "user", "content": f"The code printed:\n{fence}\n{_outputs_text(details.get('outputs') or [])}\n"
                                        f"{fence}\nUsing this output, answer my request."}]


def answers_from_text(run_tool_choice: Any, tools: Sequence[dict[str, Any]], calls: Sequence[dict[str, Any]]
                      ) -> bool:
    """Whether the turn only answers from the run's code output (no tool call allowed): its calls are then
    shown as text and no tools are offered."""
    return enabled(tools) and bool(calls) and chat_tool_choice(run_tool_choice, tools, calls, True) == "none"


def _outputs_text(outputs: list[dict[str, Any]]) -> str:
    lines = []
    for output in outputs:
        if output.get("type") == "logs":
            lines.append(output["logs"])
        elif output.get("type") == "image":
            lines.append(f"[image {output['image']['file_id']}]")
    return "\n".join(lines) or "(no output)"


def code_of(arguments: str) -> str:
    """The code in the model's arguments; arguments that are not the expected JSON are taken as code."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return arguments
    if isinstance(parsed, dict):
        code = parsed.get("code")
        if isinstance(code, str):
            return code
        strings = [value for value in parsed.values() if isinstance(value, str)]
        return strings[0] if len(strings) == 1 else ""
    return parsed if isinstance(parsed, str) else ""


# -- running ----------------------------------------------------------------------------------


@dataclass
class Execution:
    """One call's record (the step's tool call) and what the model reads of it."""

    call: dict[str, Any]
    image_file_ids: list[str]


class CodeInterpreter:
    def __init__(self, db: Database, storage: FileStorage, sandbox: Sandbox, meter: Meter) -> None:
        self.db = db
        self.storage = storage
        self.sandbox = sandbox
        self.meter = meter

    def input_files(self, run: RunRow) -> list[tuple[str, str, str]]:
        """(file id, file name, blob key) of every file the run's code may read."""
        with self.db.session() as session:
            ids: list[str] = list(run.file_ids or [])
            assistant = repo.get_assistant(session, run.project_id, run.assistant_id)
            thread = repo.get_thread(session, run.project_id, run.thread_id)
            for owner in (assistant, thread):
                resources = (getattr(owner, "tool_resources", None) or {}).get(TYPE) or {}
                ids += resources.get("file_ids") or []
            for message in repo.thread_messages(session, run.thread_id):
                ids += message.file_ids or []
                for attachment in message.attachments or []:
                    if any(tool.get("type") == TYPE for tool in attachment.get("tools") or []):
                        ids.append(attachment["file_id"])
            found = []
            names: set[str] = set()
            for file_id in dict.fromkeys(ids):
                record = files_repo.get_file(session, run.project_id, file_id)
                if record is None or record.bytes is None or record.bytes > MAX_INPUT_FILE_BYTES:
                    continue
                name = _unique(posixpath.basename((record.filename or "").replace("\\", "/")) or file_id, names)
                names.add(name)
                found.append((file_id, name, record.blob_key))
            return found

    def file_names(self, run: RunRow) -> list[str]:
        return [name for _, name, _ in self.input_files(run)]

    async def execute(self, run: RunRow, call_id: str, arguments: str, *, first_of_run: bool) -> Execution:
        """Run one call's code; store what it created as Files; the call as the step records it."""
        code = code_of(arguments)
        caller = Caller(run.organization_id, run.project_id, run.api_key_id)
        try:
            result = await to_thread.run_sync(self._run, run, code)
        except SandboxUnavailable as missing:
            result = SandboxResult(stdout="", stderr="", exit_code=None, notes=[str(missing)])
        if first_of_run:
            self.meter.record(UsageEvent(caller, kind="code_interpreter_sessions", endpoint="/v1/threads/runs",
                                         sessions=1))
        outputs: list[dict[str, Any]] = []
        images: list[str] = []
        created_lines = []
        for created in result.created:
            stored = await files.store_file(self.storage, caller, created.name.replace("/", "_"), PURPOSE,
                                            _chunks(created.data))
            files.record_stored(self.storage, caller, "/v1/threads/runs", len(created.data))
            if created.name.lower().endswith(_IMAGE_SUFFIXES):
                images.append(stored.id)
                created_lines.append(f"Created /mnt/data/{created.name}: shown to the user as an image.")
            else:
                created_lines.append(f"Created /mnt/data/{created.name}: given to the user as file {stored.id}.")
        logs = "\n".join(part for part in [result.logs, *created_lines] if part)
        if logs:
            outputs.append({"type": "logs", "logs": logs})
        outputs += [{"type": "image", "image": {"file_id": file_id}} for file_id in images]
        call = {"id": call_id, "type": TYPE, TYPE: {"input": code, "outputs": outputs}}
        return Execution(call=call, image_file_ids=images)

    def _run(self, run: RunRow, code: str) -> SandboxResult:
        inputs = []
        for _, name, key in self.input_files(run):
            inputs.append((name, b"".join(read_blob_sync(self.storage.blobs, key))))
        return self.sandbox.run(code, inputs)


def _unique(name: str, taken: set[str]) -> str:
    candidate, counter = name, 1
    while candidate in taken:
        stem, dot, suffix = name.rpartition(".")
        candidate = f"{stem}-{counter}.{suffix}" if dot and stem else f"{name}-{counter}"
        counter += 1
    return candidate


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data

