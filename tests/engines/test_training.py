"""The LoRA adapter as llama.cpp reads it: names, shapes, alpha, and the q/k row order."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from hearth.engines.training import write_lora_gguf


def read(path: Path) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    reader = gguf.GGUFReader(str(path))
    fields = {key: reader.get_field(key).contents() for key in  # type: ignore[union-attr]
              ("general.architecture", "general.type", "adapter.type", "adapter.lora.alpha")}
    tensors = {t.name: np.array(t.data).reshape([int(n) for n in reversed(t.shape)]) for t in reader.tensors}
    return fields, tensors


def test_the_adapter_names_every_layer_as_llama_cpp_does(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rank, hidden, heads, kv_heads, head_dim = 2, 8, 2, 1, 4
    tensors = {
        "model.layers.0.self_attn.q_proj": (rng.standard_normal((rank, hidden)), rng.standard_normal((heads * head_dim, rank))),
        "model.layers.0.self_attn.k_proj": (rng.standard_normal((rank, hidden)), rng.standard_normal((kv_heads * head_dim, rank))),
        "model.layers.1.mlp.down_proj": (rng.standard_normal((rank, 16)), rng.standard_normal((hidden, rank))),
    }
    write_lora_gguf(tmp_path / "llama.gguf", tensors, architecture="llama", alpha=16, n_head=heads, n_head_kv=kv_heads)
    fields, written = read(tmp_path / "llama.gguf")
    assert fields == {"general.architecture": "llama", "general.type": "adapter", "adapter.type": "lora",
                      "adapter.lora.alpha": 16.0}
    assert sorted(written) == ["blk.0.attn_k.weight.lora_a", "blk.0.attn_k.weight.lora_b",
                               "blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b",
                               "blk.1.ffn_down.weight.lora_a", "blk.1.ffn_down.weight.lora_b"]
    # A is untouched; B's rows of q (and k) follow llama.cpp's rotary layout: per head, the
    # first and second halves interleaved.
    np.testing.assert_allclose(written["blk.0.attn_q.weight.lora_a"], tensors["model.layers.0.self_attn.q_proj"][0],
                               rtol=1e-6)
    q_b = tensors["model.layers.0.self_attn.q_proj"][1]
    order = [0, 2, 1, 3, 4, 6, 5, 7]
    np.testing.assert_allclose(written["blk.0.attn_q.weight.lora_b"], q_b[order], rtol=1e-6)
    np.testing.assert_allclose(written["blk.0.attn_k.weight.lora_b"],
                               tensors["model.layers.0.self_attn.k_proj"][1][[0, 2, 1, 3]], rtol=1e-6)
    np.testing.assert_allclose(written["blk.1.ffn_down.weight.lora_b"], tensors["model.layers.1.mlp.down_proj"][1],
                               rtol=1e-6)

    # Qwen2's converter keeps the rows as they are.
    write_lora_gguf(tmp_path / "qwen2.gguf", tensors, architecture="qwen2", alpha=8, n_head=heads, n_head_kv=kv_heads)
    _, qwen = read(tmp_path / "qwen2.gguf")
    np.testing.assert_allclose(qwen["blk.0.attn_q.weight.lora_b"], q_b, rtol=1e-6)
