"""A multipart form as services read it: text fields, and file parts as streams of bytes.

Services that take uploads (files, upload parts, audio) work against this
protocol, not against the HTTP request, so they can be driven by anything
that yields parts: the HTTP layer's streaming parser, or a test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass
class FilePart:
    name: str
    filename: str
    content_type: str | None
    chunks: AsyncIterator[bytes]


class IncomingForm(Protocol):
    """One form, read front to back once.

    ``next_file()`` collects text fields up to the next file part and returns
    it (its ``chunks`` must be consumed before asking for the next);
    ``finish()`` collects the fields after the last file and refuses another.
    """

    fields: dict[str, str]  # the last value of each name
    items: list[tuple[str, str]]  # every value in order, repeats included (include[]=a, ...)

    async def next_file(self) -> FilePart | None: ...

    async def finish(self) -> None: ...
