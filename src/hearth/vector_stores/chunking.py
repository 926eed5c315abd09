"""A text cut into overlapping chunks of OpenAI's tokens (cl100k_base), as file search cuts files.

``auto`` is what OpenAI documents for it: 800 tokens a chunk, 400 shared with
the next. ``static`` takes the caller's two numbers, checked as the API checks
them (100 to 4096 tokens; an overlap of at most half the size). Every chunk is
an exact substring of the text: chunk boundaries are token boundaries mapped
back to character offsets, so no character is ever cut in half.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from hearth.errors import InvalidRequest

AUTO_SIZE = 800
AUTO_OVERLAP = 400
MIN_SIZE, MAX_SIZE = 100, 4096


class Tokenizer(Protocol):
    def encode_with_offsets(self, text: str) -> tuple[list[int], list[int]]:
        """The text's tokens and each token's starting character offset."""
        ...


@dataclass(frozen=True)
class Strategy:
    max_chunk_size_tokens: int
    chunk_overlap_tokens: int

    def as_object(self) -> dict[str, Any]:
        """What a vector store file shows: auto resolves to its static numbers, as OpenAI shows it."""
        return {"type": "static", "static": {"max_chunk_size_tokens": self.max_chunk_size_tokens,
                                             "chunk_overlap_tokens": self.chunk_overlap_tokens}}


AUTO = Strategy(AUTO_SIZE, AUTO_OVERLAP)


def strategy_of(value: dict[str, Any] | None, param: str = "chunking_strategy") -> Strategy:
    """The strategy a request names (None: auto), or a 400 naming what is wrong."""
    if value is None or value.get("type") == "auto":
        return AUTO
    numbers = value.get("static") or {}
    size, overlap = int(numbers.get("max_chunk_size_tokens", 0)), int(numbers.get("chunk_overlap_tokens", -1))
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise InvalidRequest(f"Invalid '{param}.static.max_chunk_size_tokens': {size}; it must be between "
                             f"{MIN_SIZE} and {MAX_SIZE}.", param=f"{param}.static.max_chunk_size_tokens")
    if overlap < 0 or overlap > size // 2:
        raise InvalidRequest(f"Invalid '{param}.static.chunk_overlap_tokens': {overlap}; it must be at least 0 "
                             f"and at most half of max_chunk_size_tokens ({size // 2}).",
                             param=f"{param}.static.chunk_overlap_tokens")
    return Strategy(size, overlap)


def chunk(text: str, strategy: Strategy, tokenizer: Tokenizer) -> list[str]:
    tokens, offsets = tokenizer.encode_with_offsets(text)
    if not tokens:
        return []
    size, step = strategy.max_chunk_size_tokens, strategy.max_chunk_size_tokens - strategy.chunk_overlap_tokens
    chunks = []
    for start in range(0, len(tokens), step):
        end = min(start + size, len(tokens))
        piece = text[offsets[start]:offsets[end] if end < len(tokens) else len(text)].strip()
        if piece:
            chunks.append(piece)
        if end == len(tokens):
            break
    return chunks
