"""Fine-tuned models on one llama.cpp server: LoRA adapters loaded beside the base weights, each
request choosing its own (or none), on SmolLM2-135M with random adapters written as llama.cpp reads
them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from hearth.engines.llama import LlamaEngine
from hearth.engines.training import write_lora_gguf
from tests.conftest import pulled_model_dir

# SmolLM2-135M's shape: 30 layers, hidden 576, 9 query heads and 3 key/value heads of 64.
LAYERS, HIDDEN, HEADS, KV_HEADS, RANK = 30, 576, 9, 3, 8


def random_adapter(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(LAYERS):
        for module, rows in (("q_proj", HIDDEN), ("v_proj", KV_HEADS * HIDDEN // HEADS)):
            tensors[f"model.layers.{layer}.self_attn.{module}"] = (
                rng.standard_normal((RANK, HIDDEN)) * 0.05, rng.standard_normal((rows, RANK)) * 0.05)
    write_lora_gguf(path, tensors, architecture="llama", alpha=16, n_head=HEADS, n_head_kv=KV_HEADS)
    return path


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("adapters")
    return random_adapter(directory / "x.gguf", 1), random_adapter(directory / "y.gguf", 2)


@pytest.fixture(scope="module")
def model_path() -> Path:
    return pulled_model_dir("smollm2-135m") / "model.gguf"


@pytest.fixture(scope="module")
def engine(model_path: Path, adapters: tuple[Path, Path]) -> LlamaEngine:
    return LlamaEngine(model_path, n_ctx=512, n_parallel=2, threads=2, adapters=adapters)


def answer(engine: LlamaEngine, text: str = "Say hello.") -> str:
    reply = engine.chat({"messages": [{"role": "user", "content": text}], "max_tokens": 12, "temperature": 0})
    return reply["choices"][0]["message"]["content"]


def test_each_request_answers_with_its_own_adapter(model_path: Path, engine: LlamaEngine,
                                                   adapters: tuple[Path, Path]) -> None:
    x, y = (engine.with_adapter(path) for path in adapters)
    base_alone = LlamaEngine(model_path, n_ctx=512, n_parallel=1, threads=2)
    try:
        plain = answer(base_alone)
    finally:
        base_alone.close()
    answers = {"base": answer(engine), "x": answer(x), "y": answer(y)}
    assert answers["base"] == plain, "loaded adapters leave the base untouched"
    assert len(set(answers.values())) == 3, answers
    # Switching back and forth, on the same slots and cached prompts, changes nothing.
    for _ in range(2):
        assert {"y": answer(y), "base": answer(engine), "x": answer(x)} == answers
    # Nor do requests for different adapters running at once.
    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(answer, [engine, x, y])) == list(answers.values())


def test_streams_and_completions_use_the_adapter(engine: LlamaEngine, adapters: tuple[Path, Path]) -> None:
    x = engine.with_adapter(adapters[0])
    streamed = "".join(choice["delta"].get("content") or "" for chunk in x.chat_stream(
        {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 12, "temperature": 0})
        for choice in chunk["choices"])
    assert streamed == answer(x)

    def complete(which: LlamaEngine) -> str:
        return which.complete({"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0})["choices"][0]["text"]

    assert complete(x) != complete(engine)


def test_an_adapter_not_loaded_is_refused(engine: LlamaEngine, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not loaded"):
        engine.with_adapter(tmp_path / "other.gguf")
