"""The memory budget's estimates, and the GGUF header they read (on the pulled chat models)."""

from __future__ import annotations

from pathlib import Path

from hearth.catalog.catalog import Catalog
from hearth.catalog.gguf import gguf_metadata
from hearth.catalog.importing import gguf_context_length
from hearth.engines.footprint import MiB, estimate_mib, kv_bytes_per_token
from tests.conftest import pulled_model_dir


def test_the_kv_cache_per_token_follows_the_gguf_header() -> None:
    """Qwen2.5-0.5B: 24 layers x 2 KV heads x (64 + 64) x 2 bytes = 12 KiB a token."""
    gguf = pulled_model_dir("qwen2.5-coder-0.5b") / "model.gguf"
    meta = gguf_metadata(gguf, (".block_count", ".context_length"))
    assert (meta["general.architecture"], meta["qwen2.block_count"]) == ("qwen2", 24)
    assert kv_bytes_per_token(gguf) == 24 * 2 * 128 * 2
    assert gguf_context_length(gguf) == 8192  # trained for 32768: the default is the cap


def test_a_chat_models_estimate_is_its_weights_and_its_kv_cache(tmp_path: Path) -> None:
    spec = Catalog.load().resolve("qwen2.5-coder-0.5b")
    directory = pulled_model_dir("qwen2.5-coder-0.5b")
    expected = (spec.total_bytes + 8192 * 4 * 12288 + MiB - 1) // MiB
    assert estimate_mib(spec, directory) == expected
    minilm = Catalog.load().resolve("all-minilm-l6-v2")
    assert estimate_mib(minilm, tmp_path) == -(-minilm.total_bytes // MiB)  # no GGUF: its files


def test_the_catalog_option_replaces_the_estimate(tmp_path: Path) -> None:
    from dataclasses import replace

    spec = replace(Catalog.load().resolve("smollm2-135m"), options={"memory_mib": 42})
    assert estimate_mib(spec, tmp_path) == 42
    assert kv_bytes_per_token(tmp_path / "missing.gguf") == 0
