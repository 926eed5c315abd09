"""A file's text, by its format: one maintained parser per format, nothing guessed.

- PDF: ``pypdf`` (text per page);
- DOCX: ``python-docx`` (paragraphs, then table cells, in document order);
- HTML: ``beautifulsoup4`` with the standard library's parser (scripts and styles dropped);
- JSON: re-indented, so keys and values read as lines;
- text, markdown and source code: UTF-8 (with a BOM or not), else refused.

A format the server cannot read is ``unsupported_file``; a file of a known
format that cannot be read or holds no text is ``invalid_file``: the two
codes a vector store file's ``last_error`` has for them.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import PurePosixPath

TEXT_SUFFIXES = frozenset({
    ".txt", ".md", ".markdown", ".rst", ".tex", ".csv", ".tsv", ".log", ".xml", ".yaml", ".yml", ".toml",
    ".ini", ".py", ".js", ".ts", ".tsx", ".jsx", ".java", ".c", ".h", ".cc", ".cpp", ".hpp", ".cs", ".go",
    ".rs", ".rb", ".php", ".sh", ".swift", ".kt", ".scala", ".sql", ".css", ".r", ".lua", ".pl", ".m",
})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})


class ParseError(Exception):
    """The file cannot be turned into text; ``code`` is ``unsupported_file`` or ``invalid_file``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Parsed:
    text: str
    # Pages for a PDF; 1 for every other format.
    pages: int


def parse(filename: str, data: bytes) -> Parsed:
    suffix = PurePosixPath(filename.lower()).suffix
    try:
        if suffix == ".pdf":
            parsed = _pdf(data)
        elif suffix == ".docx":
            parsed = Parsed(_docx(data), 1)
        elif suffix in HTML_SUFFIXES:
            parsed = Parsed(_html(_utf8(data)), 1)
        elif suffix == ".json":
            parsed = Parsed(_json(_utf8(data)), 1)
        elif suffix in TEXT_SUFFIXES or suffix == "":
            parsed = Parsed(_utf8(data), 1)
        else:
            raise ParseError("unsupported_file", f"Files of type '{suffix}' are not supported for retrieval; "
                                                 "supported are PDF, DOCX, HTML, JSON, text, markdown and code.")
    except ParseError:
        raise
    except Exception as exc:  # noqa: BLE001 - each parser raises its own errors on a malformed file
        raise ParseError("invalid_file", f"The file could not be parsed as {suffix or 'text'}: {exc}") from None
    if not parsed.text.strip():
        raise ParseError("invalid_file", "The file contains no text to index.")
    return parsed


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ParseError("invalid_file", "The file is not UTF-8 text.") from None


def _pdf(data: bytes) -> Parsed:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    pages = [page.extract_text() or "" for page in reader.pages]
    return Parsed("\n\n".join(text.strip() for text in pages if text.strip()), len(pages))


def _docx(data: bytes) -> str:
    from docx import Document

    document = Document(io.BytesIO(data))
    parts = [paragraph.text for paragraph in document.paragraphs if paragraph.text.strip()]
    for table in document.tables:
        for row in table.rows:
            cells = [cell.text.strip() for cell in row.cells]
            if any(cells):
                parts.append(" | ".join(cells))
    return "\n".join(parts)


def _html(markup: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    return "\n".join(line for line in lines if line)


def _json(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=1, ensure_ascii=False)
    except ValueError as exc:
        raise ParseError("invalid_file", f"The file is not valid JSON: {exc}") from None
