"""Loaded models: one engine and one runner per model, loaded once and kept warm.

Loaders are looked up by the catalog's ``engine`` name and import their
engine module lazily, so a missing optional runtime only affects its models.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.catalog.catalog import Catalog, ModelSpec
from hearth.catalog.provision import ModelStore
from hearth.engines.runner import ModelRunner
from hearth.settings import Settings

log = logging.getLogger("hearth.engines")


@dataclass
class LoadedModel:
    spec: ModelSpec
    engine: Any
    runner: ModelRunner


Loader = Callable[[ModelSpec, Path, Settings], tuple[Any, int]]
"""Builds an engine from its model directory; returns it and how many workers it wants."""


def _load_kokoro(spec: ModelSpec, directory: Path, settings: Settings) -> tuple[Any, int]:
    from hearth.engines.kokoro import KokoroEngine

    return KokoroEngine(directory, threads=settings.inference_threads or None), 1


def _load_whisper(spec: ModelSpec, directory: Path, settings: Settings) -> tuple[Any, int]:
    from hearth.engines.whisper import WhisperEngine

    return WhisperEngine(directory, cpu_threads=settings.inference_threads), 1


def _load_llama(spec: ModelSpec, directory: Path, settings: Settings) -> tuple[Any, int]:
    from hearth.engines.llama import LlamaEngine

    n_parallel = int(spec.options.get("n_parallel", 4))
    engine = LlamaEngine(directory / "model.gguf", n_ctx=int(spec.options.get("n_ctx", 8192)),
                         n_parallel=n_parallel,
                         threads=settings.inference_threads or os.cpu_count() or 2,
                         prompt_cache_mib=settings.llm_prompt_cache_mib)
    # Each call blocks a thread while llama.cpp runs it in one of its slots.
    return engine, n_parallel


def _load_embeddings(spec: ModelSpec, directory: Path, settings: Settings) -> tuple[Any, int]:
    from hearth.engines.embeddings import EmbeddingEngine

    return EmbeddingEngine(directory, threads=settings.inference_threads or None), 1


def _load_moderation(spec: ModelSpec, directory: Path, settings: Settings) -> tuple[Any, int]:
    from hearth.engines.moderation import ModerationEngine

    return ModerationEngine(directory, threads=settings.inference_threads or None), 1


LOADERS: dict[str, Loader] = {
    "kokoro": _load_kokoro,
    "whisper": _load_whisper,
    "llama": _load_llama,
    "embeddings": _load_embeddings,
    "moderation": _load_moderation,
}


class ModelNotPulled(RuntimeError):
    pass


class ModelRegistry:
    def __init__(self, catalog: Catalog, store: ModelStore, settings: Settings) -> None:
        self.catalog = catalog
        self.store = store
        self.settings = settings
        self._loaded: dict[str, LoadedModel] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def is_servable(self, spec: ModelSpec) -> bool:
        # A loaded model is servable by definition; only the others need the
        # disk check (a marker read and a stat per file), kept off the hot path.
        if spec.id in self._loaded:
            return True
        return spec.engine in LOADERS and self.store.is_present(spec)

    async def get(self, spec: ModelSpec) -> LoadedModel:
        """The loaded model, loading it on first use (off the event loop)."""
        if (loaded := self._loaded.get(spec.id)) is not None:
            return loaded
        lock = self._locks.setdefault(spec.id, asyncio.Lock())
        async with lock:
            if (loaded := self._loaded.get(spec.id)) is None:
                loaded = await asyncio.to_thread(self._load, spec)
                self._loaded[spec.id] = loaded
        return loaded

    def _load(self, spec: ModelSpec) -> LoadedModel:
        if not self.store.is_present(spec):
            raise ModelNotPulled(f"model {spec.id} is not pulled; run `hearth models pull {spec.id}`")
        log.info("loading model %s", spec.id)
        engine, workers = LOADERS[spec.engine](spec, self.store.dir_for(spec), self.settings)
        runner = ModelRunner(spec.id, workers=workers, queue_depth=self.settings.queue_depth)
        return LoadedModel(spec, engine, runner)

    def shutdown(self) -> None:
        for loaded in self._loaded.values():
            loaded.runner.shutdown()
            close = getattr(loaded.engine, "close", None)
            if close is not None:
                close()
        self._loaded.clear()
