"""A GGUF file's header metadata, read without loading the model.

Used to size a chat model's KV cache for the memory budget and to give an
imported model its trained context length. Long arrays (the vocabulary) are
skipped over, not read.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
            11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_LIMIT = 1 << 24  # longer strings or more keys than this mean the header is not GGUF after all


def gguf_metadata(path: Path, wanted_suffixes: tuple[str, ...] = ()) -> dict[str, Any]:
    """The GGUF header's scalar metadata (and ``general.*``); long arrays are skipped unread."""
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version, = struct.unpack("<I", fh.read(4))
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} is not supported")
        _tensors, count = struct.unpack("<QQ", fh.read(16))
        if count > _LIMIT:
            raise ValueError(f"{path}: not a readable GGUF header")
        meta: dict[str, Any] = {}
        for _ in range(count):
            key = _string(fh)
            kind, = struct.unpack("<I", fh.read(4))
            keep = key.startswith("general.") or key.endswith(wanted_suffixes) or not wanted_suffixes
            meta_value = _value(fh, kind, keep)
            if keep:
                meta[key] = meta_value
        return meta


def _string(fh: BinaryIO) -> str:
    length, = struct.unpack("<Q", fh.read(8))
    if length > _LIMIT:
        raise ValueError("not a readable GGUF header")
    return fh.read(length).decode(errors="replace")


def _value(fh: BinaryIO, kind: int, keep: bool) -> Any:
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]
    if kind == _STRING:
        return _string(fh)
    if kind == _ARRAY:
        inner, length = struct.unpack("<IQ", fh.read(12))
        if length > _LIMIT * 64:
            raise ValueError("not a readable GGUF header")
        if inner in _SCALARS and not (keep and length <= 1024):
            fh.seek(length * struct.calcsize(_SCALARS[inner]), 1)  # skipped, not read
            return None
        items = [_value(fh, inner, keep) for _ in range(length)]
        return items if keep else None
    raise ValueError(f"unknown GGUF value type {kind}")
