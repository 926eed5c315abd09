"""How much memory a model takes once loaded, estimated before loading it.

The memory budget (``HEARTH_MODEL_MEMORY_BUDGET_MIB``) compares these
estimates: a model's files (weights are read or mapped whole), plus, for a
GGUF chat model, its KV cache (context length x parallel slots x the bytes a
token takes in every layer, read from the GGUF header). A catalog entry's
``memory_mib`` option replaces the estimate.
"""

from __future__ import annotations

import struct
from pathlib import Path

from hearth.catalog.catalog import ModelSpec
from hearth.catalog.gguf import gguf_metadata

MiB = 1024 * 1024


def estimate_mib(spec: ModelSpec, directory: Path) -> int:
    if "memory_mib" in spec.options:
        return int(spec.options["memory_mib"])
    total = sum(f.size for f in spec.files)
    if spec.engine == "llama" and (directory / "model.gguf").is_file():
        ctx = int(spec.options.get("n_ctx", 8192)) * int(spec.options.get("n_parallel", 4))
        total += ctx * kv_bytes_per_token(directory / "model.gguf")
    return max(1, -(-total // MiB))


def kv_bytes_per_token(path: Path) -> int:
    """Bytes of f16 KV cache one token takes across every layer; 0 when the header lacks them."""
    try:
        meta = gguf_metadata(path, wanted_suffixes=(".block_count", ".embedding_length",
                                                    ".attention.head_count", ".attention.head_count_kv",
                                                    ".attention.key_length", ".attention.value_length"))
    except (OSError, ValueError, struct.error):
        return 0
    arch = meta.get("general.architecture")

    def number(key: str) -> int:
        value = meta.get(f"{arch}.{key}")
        if isinstance(value, list):  # per-layer values: the largest
            value = max(value) if value else 0
        return int(value or 0)

    heads = number("attention.head_count")
    kv_heads = number("attention.head_count_kv") or heads
    head_dim = (number("embedding_length") // heads) if heads else 0
    key = number("attention.key_length") or head_dim
    value = number("attention.value_length") or head_dim
    return number("block_count") * kv_heads * (key + value) * 2
