"""Content checks a file must pass for its purpose, run over the bytes as they stream.

``batch`` files are JSONL batch requests, ``fine-tune`` files JSONL chat (or
preference) examples, ``evals`` files JSONL objects. A check sees the file in
blocks and keeps at most one line in memory; the first bad line is a 400 that
names its number.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from hearth.errors import InvalidRequest

BATCH_URLS = frozenset({
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/moderations",
    "/v1/responses",
})
MAX_BATCH_REQUESTS = 50_000
MESSAGE_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class BadLine(ValueError):
    """Why one line of a JSONL file is not acceptable for the purpose."""


class ContentCheck(Protocol):
    def feed(self, block: bytes) -> None: ...

    def finish(self) -> None: ...


class NoCheck:
    def feed(self, block: bytes) -> None:
        pass

    def finish(self) -> None:
        pass


LineCheck = Callable[[Any], None]


class JsonlCheck:
    """Splits the stream into lines and hands each parsed line to ``check_line``."""

    def __init__(self, purpose: str, check_line: LineCheck, max_line_bytes: int) -> None:
        self.purpose = purpose
        self.check_line = check_line
        self.max_line_bytes = max_line_bytes
        self.lines = 0
        self._tail = b""

    def feed(self, block: bytes) -> None:
        lines = (self._tail + block).split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            self._line(line)
        if len(self._tail) > self.max_line_bytes:
            self._fail(self.lines + 1, f"the line is longer than {self.max_line_bytes} bytes")

    def finish(self) -> None:
        if self._tail:
            self._line(self._tail)
            self._tail = b""
        if self.lines == 0:
            raise InvalidRequest(f"Invalid file for purpose '{self.purpose}': the file is empty; "
                                 "expected one JSON object per line.", param="file",
                                 code="invalid_file_format")

    def _line(self, raw: bytes) -> None:
        self.lines += 1
        text = raw.removesuffix(b"\r")
        if not text.strip():
            self._fail(self.lines, "the line is empty")
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._fail(self.lines, f"not valid JSON ({exc})")
        try:
            self.check_line(value)
        except BadLine as exc:
            self._fail(self.lines, str(exc))

    def _fail(self, number: int, reason: str) -> None:
        raise InvalidRequest(f"Invalid file for purpose '{self.purpose}': line {number}: "
                             f"{reason}.", param="file", code="invalid_file_format")


def _require_object(value: Any, what: str = "the line") -> dict:
    if not isinstance(value, dict):
        raise BadLine(f"{what} must be a JSON object")
    return value


def batch_line_check() -> LineCheck:
    seen: set[str] = set()

    def check(value: Any) -> None:
        request = _require_object(value)
        custom_id = request.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise BadLine("'custom_id' must be a non-empty string")
        if custom_id in seen:
            raise BadLine(f"'custom_id' {custom_id!r} is used by an earlier line")
        if request.get("method") != "POST":
            raise BadLine("'method' must be \"POST\"")
        if request.get("url") not in BATCH_URLS:
            raise BadLine(f"'url' must be one of {', '.join(sorted(BATCH_URLS))}")
        _require_object(request.get("body"), "'body'")
        if len(seen) >= MAX_BATCH_REQUESTS:
            raise BadLine(f"a batch holds at most {MAX_BATCH_REQUESTS} requests")
        seen.add(custom_id)

    return check


def _check_messages(messages: Any, where: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise BadLine(f"{where} must be a non-empty array of messages")
    for index, message in enumerate(messages):
        _require_object(message, f"{where}[{index}]")
        if message.get("role") not in MESSAGE_ROLES:
            roles = ", ".join(sorted(MESSAGE_ROLES))
            raise BadLine(f"{where}[{index}].role must be one of {roles}")
        content = message.get("content")
        calls = message.get("tool_calls") or message.get("function_call")
        if not (isinstance(content, (str, list)) or (content is None and calls)):
            raise BadLine(f"{where}[{index}].content must be a string or an array of parts")


def fine_tune_line_check(value: Any) -> None:
    example = _require_object(value)
    if "messages" in example:
        _check_messages(example["messages"], "'messages'")
    elif "input" in example:  # preference (DPO) examples
        _check_messages(_require_object(example["input"], "'input'").get("messages"),
                        "'input.messages'")
        for key in ("preferred_output", "non_preferred_output"):
            _check_messages(example.get(key), f"'{key}'")
    else:
        raise BadLine("expected a chat example with 'messages' (or a preference example "
                      "with 'input', 'preferred_output' and 'non_preferred_output')")


def evals_line_check(value: Any) -> None:
    _require_object(value)


def content_check(purpose: str, max_line_bytes: int) -> ContentCheck:
    """The check a file of ``purpose`` must pass; purposes without a format get none."""
    line_checks: dict[str, Callable[[], LineCheck]] = {
        "batch": batch_line_check,
        "fine-tune": lambda: fine_tune_line_check,
        "evals": lambda: evals_line_check,
    }
    if purpose not in line_checks:
        return NoCheck()
    return JsonlCheck(purpose, line_checks[purpose](), max_line_bytes)
