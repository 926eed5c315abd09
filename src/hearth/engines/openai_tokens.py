"""OpenAI's cl100k_base token ids turned back into text.

The embeddings API takes inputs as arrays of token ids, and for OpenAI's
embedding models those are cl100k_base ids: LangChain's ``OpenAIEmbeddings``
sends exactly that by default, having tokenized with tiktoken. A local model
has its own vocabulary, so such an input is decoded to its text first, then
read by the model like any string.

The ranks file is tiktoken's own format, one ``base64(token bytes) id`` a
line, gzipped; the catalog pins its checksum.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Sequence
from pathlib import Path

RANKS_FILE = "cl100k_base.tiktoken.gz"


class UnknownTokens(ValueError):
    def __init__(self, index: int, n_vocab: int) -> None:
        super().__init__(f"Input {index} holds token ids that are not cl100k_base tokens "
                         f"(the tokenizer of OpenAI's embedding models; ids 0 to {n_vocab - 1}).")
        self.index = index


class Cl100kDecoder:
    def __init__(self, path: Path) -> None:
        with gzip.open(path, "rt", encoding="ascii") as lines:
            ranks = {int(rank): base64.b64decode(token)
                     for token, rank in (line.split() for line in lines if line.strip())}
        self._bytes = [ranks[rank] for rank in range(len(ranks))]

    @property
    def n_vocab(self) -> int:
        return len(self._bytes)

    def decode(self, index: int, ids: Sequence[int]) -> str:
        """The text of input ``index``; a character split across ids is joined again."""
        if not all(isinstance(token, int) and 0 <= token < self.n_vocab for token in ids):
            raise UnknownTokens(index, self.n_vocab)
        return b"".join(self._bytes[token] for token in ids).decode("utf-8", errors="replace")
