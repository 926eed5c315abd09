"""OpenAI's cl100k_base tokens: ids turned back into text, and texts counted.

The embeddings API takes inputs as arrays of token ids, and for OpenAI's
embedding models those are cl100k_base ids: LangChain's ``OpenAIEmbeddings``
sends exactly that by default, having tokenized with tiktoken. A local model
has its own vocabulary, so such an input is decoded to its text first, then
read by the model like any string. OpenAI's limits on an input (8192 tokens)
are counted in the same tokens, so a client that chunked its text with
tiktoken is never refused for a count it could not make.

The ranks file is tiktoken's own format, one ``base64(token bytes) id`` a
line, gzipped; the catalog pins its checksum. Counting runs on tiktoken's
BPE over those ranks, nothing fetched.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Sequence
from pathlib import Path

import tiktoken

RANKS_FILE = "cl100k_base.tiktoken.gz"

# cl100k_base's pre-tokenizer: how text is cut into pieces before byte-pair merges.
_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
            r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
_SPECIAL_TOKENS = {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                   "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}


class UnknownTokens(ValueError):
    def __init__(self, index: int, n_vocab: int) -> None:
        super().__init__(f"Input {index} holds token ids that are not cl100k_base tokens "
                         f"(the tokenizer of OpenAI's embedding models; ids 0 to {n_vocab - 1}).")
        self.index = index


class Cl100k:
    def __init__(self, path: Path) -> None:
        with gzip.open(path, "rt", encoding="ascii") as lines:
            ranks = {int(rank): base64.b64decode(token)
                     for token, rank in (line.split() for line in lines if line.strip())}
        self._bytes = [ranks[rank] for rank in range(len(ranks))]
        self._encoding = tiktoken.Encoding(
            "cl100k_base", pat_str=_PATTERN, special_tokens=_SPECIAL_TOKENS,
            mergeable_ranks={token: rank for rank, token in enumerate(self._bytes)})

    @property
    def n_vocab(self) -> int:
        return len(self._bytes)

    def decode(self, index: int, ids: Sequence[int]) -> str:
        """The text of input ``index``; a character split across ids is joined again."""
        if not all(isinstance(token, int) and 0 <= token < self.n_vocab for token in ids):
            raise UnknownTokens(index, self.n_vocab)
        return b"".join(self._bytes[token] for token in ids).decode("utf-8", errors="replace")

    def count(self, text: str) -> int:
        """How many tokens OpenAI's embedding models read in ``text`` (special tokens as text)."""
        return len(self._encoding.encode_ordinary(text))

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[int]]:
        """The tokens of ``text`` (special tokens as text) and where each starts in it, in characters."""
        tokens = self._encoding.encode_ordinary(text)
        return tokens, self._encoding.decode_with_offsets(tokens)[1]
