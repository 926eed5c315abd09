"""multipart/form-data read as it arrives, so a file part streams straight through.

Starlette's own form parser spools every file to a temporary file before the
endpoint runs; for uploads of hundreds of megabytes that means holding the
file on disk twice. ``StreamingForm`` instead hands the endpoint each file
part as an async iterator of chunks while the body is still arriving; small
text fields are collected into ``fields`` (the last value of each name) and,
in order with repeats, into ``items`` (``include[]=a`` then ``include[]=b``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from hearth.errors import InvalidRequest, UnsupportedMediaType
from hearth.forms import FilePart

MAX_TEXT_FIELD_BYTES = 64 * 1024


@dataclass
class _PartStart:
    name: str
    filename: str | None
    content_type: str | None


_PART_END = object()


@dataclass
class _HeaderState:
    name: bytearray = field(default_factory=bytearray)
    value: bytearray = field(default_factory=bytearray)
    headers: dict[str, bytes] = field(default_factory=dict)


class StreamingForm:
    """One multipart body, read front to back exactly once (an ``IncomingForm``).

    Call ``next_file()`` to collect text fields up to the next file part and
    get that part; consume its ``chunks`` before asking for the next one.
    ``finish()`` collects the fields after the last file.
    """

    def __init__(self, request: Request) -> None:
        boundary = _boundary(request.headers.get("content-type"))
        self.fields: dict[str, str] = {}
        self.items: list[tuple[str, str]] = []
        self._request = request
        self._events: list[object] = []
        self._header = _HeaderState()
        self._parser = MultipartParser(boundary, {
            "on_part_data": lambda data, start, end: self._events.append(data[start:end]),
            "on_part_end": lambda: self._events.append(_PART_END),
            "on_header_field": lambda data, start, end: self._header.name.extend(
                data[start:end]),
            "on_header_value": lambda data, start, end: self._header.value.extend(
                data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        })
        self._stream = self._parse()

    def _header_end(self) -> None:
        name = self._header.name.decode("latin-1").lower()
        self._header.headers[name] = bytes(self._header.value)
        self._header.name.clear()
        self._header.value.clear()

    def _headers_finished(self) -> None:
        headers = self._header.headers
        _, options = parse_options_header(headers.get("content-disposition", b""))
        filename = options.get(b"filename")
        content_type = headers.get("content-type")
        self._events.append(_PartStart(
            name=options.get(b"name", b"").decode("utf-8", "replace"),
            filename=filename.decode("utf-8", "replace") if filename is not None else None,
            content_type=content_type.decode("latin-1") if content_type else None,
        ))
        self._header = _HeaderState()

    async def _parse(self) -> AsyncIterator[object]:
        try:
            async for body in self._request.stream():
                self._parser.write(body)
                for event in self._events:
                    yield event
                self._events.clear()
            self._parser.finalize()
        except MultipartParseError as exc:
            raise InvalidRequest(f"The multipart body could not be parsed: {exc}") from None
        except ClientDisconnect:
            raise InvalidRequest("The client closed the connection before the body ended.") \
                from None
        for event in self._events:
            yield event
        self._events.clear()

    async def next_file(self) -> FilePart | None:
        async for event in self._stream:
            if not isinstance(event, _PartStart):
                raise InvalidRequest("The multipart body is malformed.")
            if event.filename is None:
                value = await self._text_value(event.name)
                self.fields[event.name] = value
                self.items.append((event.name, value))
                continue
            return FilePart(event.name, event.filename, event.content_type, self._part_data())
        return None

    async def finish(self) -> None:
        """Read the rest of the body; a second file part there is a client mistake."""
        extra = await self.next_file()
        if extra is not None:
            raise InvalidRequest(f"Unexpected file field '{extra.name}'.", param=extra.name)

    async def _text_value(self, name: str) -> str:
        value = bytearray()
        async for chunk in self._part_data():
            value += chunk
            if len(value) > MAX_TEXT_FIELD_BYTES:
                raise InvalidRequest(f"The field '{name}' is too long.", param=name)
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"The field '{name}' is not UTF-8 text.", param=name) from None

    async def _part_data(self) -> AsyncIterator[bytes]:
        async for event in self._stream:
            if event is _PART_END:
                return
            if isinstance(event, _PartStart):
                raise InvalidRequest("The multipart body is malformed.")
            yield event  # type: ignore[misc]


def _boundary(content_type: str | None) -> bytes:
    media_type, options = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        raise UnsupportedMediaType(
            f"Invalid Content-Type header ({media_type.decode('latin-1') or 'none'}), "
            "expected multipart/form-data.", code="unsupported_media_type")
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidRequest("The multipart Content-Type header has no boundary.")
    return boundary
