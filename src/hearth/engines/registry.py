"""Loaded models: one engine and one runner per model, loaded on first use.

Loaders are looked up by the catalog's ``engine`` name and import their
engine module lazily, so a missing optional runtime only affects its models.

The lifecycle: a model loads when it is first asked for (the default models
may be preloaded at start); one nobody has used for
``model_idle_unload_seconds`` is unloaded; with a memory budget
(``model_memory_budget_mib``), the least recently used idle models are
unloaded to make room before another loads, and a model that cannot fit
beside those still answering requests is refused (``ModelMemoryExhausted``)
rather than loaded. A model with requests in flight is never unloaded. Load
options come from the catalog entry's ``options``, overridden per model by
``model_options``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hearth.catalog.catalog import Catalog, ModelSpec
from hearth.catalog.provision import ModelStore
from hearth.engines.device import (
    Device,
    ctranslate2_device,
    llama_gpu_layers,
    onnx_providers,
    resolve_device,
)
from hearth.engines.footprint import estimate_mib
from hearth.engines.runner import ModelRunner
from hearth.settings import Settings

log = logging.getLogger("hearth.engines")


@dataclass
class LoadedModel:
    spec: ModelSpec
    engine: Any
    runner: ModelRunner
    memory_mib: int = 0  # the estimate the memory budget counts
    device: str = "cpu"

    @property
    def adapters(self) -> tuple[Path, ...]:
        """The LoRA adapters (fine-tuned models) the engine holds beside its base weights."""
        return tuple(getattr(self.engine, "adapters", ()))


@functools.cache
def device_for(setting: str) -> Device:
    """What ``HEARTH_DEVICE`` means on this machine, probed once per process."""
    return resolve_device(setting)


Loader = Callable[[ModelSpec, Path, Settings], tuple[Any, int]]
"""Builds an engine from its model directory; returns it and how many workers it wants."""


def _threads(spec: ModelSpec, settings: Settings) -> int:
    """The ``threads`` load option, else the setting (0: the runtime decides)."""
    return int(spec.options.get("threads", settings.inference_threads))


def _load_kokoro(spec: ModelSpec, directory: Path, settings: Settings) -> tuple[Any, int]:
    from hearth.engines.kokoro import KokoroEngine

    return KokoroEngine(directory, threads=_threads(spec, settings) or None,
                        providers=onnx_providers(device_for(settings.device))), 1


def _load_whisper(spec: ModelSpec, directory: Path, settings: Settings) -> tuple[Any, int]:
    from hearth.engines.whisper import WhisperEngine

    device, compute_type = ctranslate2_device(device_for(settings.device))
    return WhisperEngine(directory, device=device, compute_type=compute_type,
                         cpu_threads=_threads(spec, settings)), 1


def _load_llama(spec: ModelSpec, directory: Path, settings: Settings) -> tuple[Any, int]:
    from hearth.engines.llama import LlamaEngine

    n_parallel = int(spec.options.get("n_parallel", 4))
    engine = LlamaEngine(directory / "model.gguf", n_ctx=int(spec.options.get("n_ctx", 8192)),
                         n_parallel=n_parallel,
                         threads=_threads(spec, settings) or os.cpu_count() or 2,
                         prompt_cache_mib=settings.llm_prompt_cache_mib,
                         gpu_layers=llama_gpu_layers(device_for(settings.device), spec.options),
                         adapters=spec.options.get("adapters", ()))
    # Each call blocks a thread while llama.cpp runs it in one of its slots.
    return engine, n_parallel


def _load_embeddings(spec: ModelSpec, directory: Path, settings: Settings) -> tuple[Any, int]:
    from hearth.engines.embeddings import EmbeddingEngine

    return EmbeddingEngine(directory, threads=_threads(spec, settings) or None,
                           providers=onnx_providers(device_for(settings.device))), 1


def _load_moderation(spec: ModelSpec, directory: Path, settings: Settings) -> tuple[Any, int]:
    from hearth.engines.moderation import ModerationEngine

    return ModerationEngine(directory, threads=settings.inference_threads or None), 1


def _load_diffusers(spec: ModelSpec, directory: Path, settings: Settings) -> tuple[Any, int]:
    from hearth.engines.diffusion import DEFAULT_GUIDANCE, DEFAULT_STEPS, DiffusionEngine

    engine = DiffusionEngine(directory, steps=int(spec.options.get("steps", DEFAULT_STEPS)),
                             guidance_scale=float(spec.options.get("guidance_scale", DEFAULT_GUIDANCE)),
                             threads=_threads(spec, settings) or None,
                             cuda=device_for(settings.device).is_gpu)
    # A picture takes seconds, not milliseconds: a short queue, so waiting clients get a 429 early.
    engine.queue_depth = settings.image_queue_depth
    return engine, 1


LOADERS: dict[str, Loader] = {
    "kokoro": _load_kokoro,
    "whisper": _load_whisper,
    "llama": _load_llama,
    "embeddings": _load_embeddings,
    "moderation": _load_moderation,
    "diffusers": _load_diffusers,
}


class ModelNotPulled(RuntimeError):
    def __init__(self, model_id: str) -> None:
        super().__init__(f"model {model_id} is not pulled; run `hearth models pull {model_id}`")
        self.model_id = model_id


class ModelMemoryExhausted(RuntimeError):
    """The model does not fit the memory budget beside the models answering requests now."""


class ModelRegistry:
    def __init__(self, catalog: Catalog, store: ModelStore, settings: Settings) -> None:
        self.catalog = catalog
        self.store = store
        self.settings = settings
        self._loaded: dict[str, LoadedModel] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.device = device_for(settings.device)
        log.info("inference device: %s", "CPU" if not self.device.is_gpu
                 else f"{self.device.name} (CUDA; HEARTH_DEVICE={settings.device})")
        self._budget_lock = asyncio.Lock()
        self._reserved: dict[str, tuple[str, int]] = {}  # (pool, MiB) held for models being loaded
        self._reaper: asyncio.Task[None] | None = None
        # Models replaced by a new load of themselves, finishing their requests; their memory counts.
        self._retiring: dict[asyncio.Task[None], LoadedModel] = {}

    def is_servable(self, spec: ModelSpec) -> bool:
        # A loaded model is servable by definition; only the others need the
        # disk check (a marker read and a stat per file), kept off the hot path.
        if spec.id in self._loaded:
            return True
        return spec.engine in LOADERS and self.store.is_present(spec)

    async def get(self, spec: ModelSpec) -> LoadedModel:
        """The loaded model, loading it on first use (off the event loop)."""
        if (loaded := self._loaded.get(spec.id)) is not None:
            loaded.runner.touch()
            return loaded
        self._start_reaper()
        lock = self._locks.setdefault(spec.id, asyncio.Lock())
        async with lock:
            if (loaded := self._loaded.get(spec.id)) is None:
                loaded = await self._load_within_budget(self.with_options(spec))
                self._loaded[spec.id] = loaded
        return loaded

    async def _load_within_budget(self, spec: ModelSpec) -> LoadedModel:
        """Load ``spec`` (off the event loop) once the memory budget has room for it."""
        memory = await self._make_room(spec)
        try:
            loaded = await asyncio.to_thread(self._load, spec)
        finally:
            self._reserved.pop(spec.id, None)
        loaded.memory_mib = memory
        return loaded

    def with_options(self, spec: ModelSpec) -> ModelSpec:
        """``spec`` with its load options overridden by the ``model_options`` setting."""
        overrides = self.settings.model_options.get(spec.id)
        return replace(spec, options={**spec.options, **overrides}) if overrides else spec

    def loaded(self) -> list[LoadedModel]:
        """The models loaded now, least recently used first."""
        return sorted(self._loaded.values(), key=lambda model: model.runner.last_used)

    def memory_in_use(self, pool: str = "cpu") -> int:
        """MiB the loaded models (and those loading or draining) take by estimate, in host RAM or on
        the GPU."""
        models = [*self._loaded.values(), *self._retiring.values()]
        return sum(m.memory_mib for m in models if m.device == pool) + \
            sum(mib for (reserved_pool, mib) in self._reserved.values() if reserved_pool == pool)

    async def _make_room(self, spec: ModelSpec) -> int:
        """Reserve the model's estimated memory, unloading idle models to fit the budget.

        A model bound for the GPU counts against the GPU budget, one for the CPU against the RAM one.
        """
        pool = await asyncio.to_thread(_device_of, spec, self.device)
        budget = self.settings.model_gpu_memory_budget_mib if pool == "cuda" \
            else self.settings.model_memory_budget_mib
        need = await asyncio.to_thread(estimate_mib, spec, self.store.dir_for(spec))
        if budget <= 0:
            return need
        what = "GPU memory budget (HEARTH_MODEL_GPU_MEMORY_BUDGET_MIB)" if pool == "cuda" \
            else "model memory budget (HEARTH_MODEL_MEMORY_BUDGET_MIB)"
        async with self._budget_lock:
            if need > budget:
                raise ModelMemoryExhausted(
                    f"The model {spec.id} needs about {need} MiB, more than the whole {what}: {budget} MiB.")
            for idle in [m for m in self.loaded() if m.runner.in_flight == 0 and m.device == pool]:
                if self.memory_in_use(pool) + need <= budget:
                    break
                log.info("unloading model %s (least recently used) to make room for %s",
                         idle.spec.id, spec.id)
                await self.unload(idle.spec.id)
            if self.memory_in_use(pool) + need > budget:
                busy = ", ".join(m.spec.id for m in self._loaded.values() if m.device == pool)
                raise ModelMemoryExhausted(
                    f"The model {spec.id} (about {need} MiB) does not fit the {what} of {budget} MiB "
                    f"beside the models answering requests now ({busy}). Please retry shortly.")
            self._reserved[spec.id] = (pool, need)
        return need

    async def unload(self, model_id: str) -> bool:
        """Unload a model if it is loaded and idle; returns whether it was."""
        loaded = self._loaded.get(model_id)
        if loaded is None or loaded.runner.in_flight:
            return False
        del self._loaded[model_id]
        await asyncio.to_thread(self._close, loaded)
        log.info("unloaded model %s", model_id)
        return True

    async def unload_idle(self, older_than: float) -> list[str]:
        """Unload every model nobody has used for ``older_than`` seconds."""
        now = time.monotonic()
        gone = []
        for model in self.loaded():
            if model.runner.in_flight == 0 and now - model.runner.last_used >= older_than \
                    and await self.unload(model.spec.id):
                gone.append(model.spec.id)
        return gone

    def _start_reaper(self) -> None:
        ttl = self.settings.model_idle_unload_seconds
        if ttl <= 0 or (self._reaper is not None and not self._reaper.done()):
            return

        async def reap() -> None:
            while True:
                await asyncio.sleep(min(max(ttl / 4, 0.05), 30.0))
                try:
                    await self.unload_idle(ttl)
                except Exception:
                    log.exception("unloading idle models failed")

        self._reaper = asyncio.get_running_loop().create_task(reap(), name="hearth-model-reaper")

    async def adapted(self, base: ModelSpec, adapter: Path, spec: ModelSpec) -> LoadedModel:
        """The fine-tuned model ``spec``: ``base`` answering with the LoRA ``adapter``.

        A base holds every adapter asked of it since it loaded, in one engine, so its fine-tunes
        share its weights, slots and queue and each request picks its adapter. An adapter the
        loaded base lacks reloads the base with it added: at once when the base is idle, else
        beside it, the old engine finishing its requests before it is unloaded.
        """
        loaded = await self.get(base)
        if adapter not in loaded.adapters:
            loaded = await self._reload_with(base, adapter)
        return LoadedModel(spec, loaded.engine.with_adapter(adapter), loaded.runner,
                           device=loaded.device)

    async def _reload_with(self, base: ModelSpec, adapter: Path) -> LoadedModel:
        async with self._locks.setdefault(base.id, asyncio.Lock()):
            current = self._loaded.get(base.id)
            if current is not None and adapter in current.adapters:
                return current  # another request added it meanwhile
            kept = tuple(path for path in current.adapters if path.is_file()) if current else ()
            spec = self.with_options(replace(base, options={**base.options, "adapters": (*kept, adapter)}))
            if current is not None and await self.unload(base.id):
                current = None
            log.info("loading model %s with %d adapters", base.id, len(kept) + 1)
            loaded = await self._load_within_budget(spec)
            if current is not None:
                self._retire(current)
            self._loaded[base.id] = loaded
            return loaded

    def _retire(self, model: LoadedModel) -> None:
        """Unload a model replaced by a new load of itself once its requests are done."""
        async def drain() -> None:
            while model.runner.in_flight:
                await asyncio.sleep(0.2)
            # The model's metrics (labelled by its name) now belong to its successor: they stay.
            await asyncio.to_thread(self._close, model, forget_metrics=False)
            del self._retiring[task]

        task = asyncio.get_running_loop().create_task(drain(), name=f"hearth-retire-{model.spec.id}")
        self._retiring[task] = model

    @staticmethod
    def _close(model: LoadedModel, *, forget_metrics: bool = True) -> None:
        model.runner.shutdown(forget_metrics=forget_metrics)
        close = getattr(model.engine, "close", None)
        if close is not None:
            close()

    def _load(self, spec: ModelSpec) -> LoadedModel:
        if not self.store.is_present(spec):
            raise ModelNotPulled(spec.id)
        log.info("loading model %s", spec.id)
        engine, workers = LOADERS[spec.engine](spec, self.store.dir_for(spec), self.settings)
        runner = ModelRunner(spec.id, workers=workers,
                             queue_depth=getattr(engine, "queue_depth", self.settings.queue_depth))
        return LoadedModel(spec, engine, runner, device=_device_of(spec, self.device, engine))

    def shutdown(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for task, draining in self._retiring.items():
            task.cancel()
            self._close(draining, forget_metrics=False)
        self._retiring.clear()
        for loaded in self._loaded.values():
            self._close(loaded)
        self._loaded.clear()


def _device_of(spec: ModelSpec, device: Device, engine: Any = None) -> str:
    """Where a loaded model runs (its runtime may lack GPU support), as /v1/models shows it."""
    if not device.is_gpu:
        return "cpu"
    on_gpu = {
        "llama": lambda: llama_gpu_layers(device, spec.options) > 0,
        "whisper": lambda: ctranslate2_device(device)[0] == "cuda",
        "kokoro": lambda: onnx_providers(device)[0] != "CPUExecutionProvider",
        "embeddings": lambda: onnx_providers(device)[0] != "CPUExecutionProvider",
        "diffusers": lambda: getattr(engine, "device", "cpu") == "cuda",
    }.get(spec.engine)
    return "cuda" if on_gpu is not None and on_gpu() else "cpu"
