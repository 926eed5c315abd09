"""The model lifecycle in-process, on a fake engine: lazy load, idle unload, the memory budget,
load options, and what /v1/models says is loaded."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from hearth.caller import Caller
from hearth.catalog.catalog import Catalog, ModelFile, ModelSpec
from hearth.catalog.provision import ModelStore, _write_marker
from hearth.engines import registry as registry_module
from hearth.engines.registry import ModelRegistry
from hearth.errors import NotFound, ServiceUnavailable
from hearth.models.service import AdaptedModel, ModelService
from hearth.settings import Settings

DEADLINE = 30.0


class FakeEngine:
    def __init__(self, spec: ModelSpec) -> None:
        self.options = dict(spec.options)
        self.adapters = tuple(spec.options.get("adapters", ()))
        self.adapter: Path | None = None
        self.closed = threading.Event()

    def with_adapter(self, adapter: Path) -> FakeEngine:
        assert adapter in self.adapters
        adapted = copy.copy(self)
        adapted.adapter = adapter
        return adapted

    def close(self) -> None:
        self.closed.set()


class Loads:
    """A fake engine kind: counts loads, hands out FakeEngines."""

    def __init__(self) -> None:
        self.engines: dict[str, list[FakeEngine]] = {}

    def __call__(self, spec: ModelSpec, directory: Path, settings: Settings) -> tuple[Any, int]:
        assert (directory / "weights.bin").is_file()
        engine = FakeEngine(spec)
        self.engines.setdefault(spec.id, []).append(engine)
        return engine, 1


def _pulled(store: ModelStore, name: str, memory_mib: int, **options: Any) -> ModelSpec:
    data = name.encode()
    spec = ModelSpec(id=name, kind="chat", engine="fake", description="", owned_by="me", created=1,
                     aliases=(f"{name}-alias",), options={"memory_mib": memory_mib, **options},
                     files=(ModelFile("weights.bin", len(data), hashlib.sha256(data).hexdigest(), ()),))
    directory = store.dir_for(spec)
    directory.mkdir(parents=True)
    (directory / "weights.bin").write_bytes(data)
    _write_marker(directory, spec)
    return spec


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Loads:
    fake = Loads()
    monkeypatch.setitem(registry_module.LOADERS, "fake", fake)
    return fake


def build(tmp_path: Path, **settings: Any) -> tuple[ModelRegistry, ModelService]:
    store = ModelStore(tmp_path)
    specs = [_pulled(store, name, 60) for name in ("a", "b", "c")]
    specs.append(_pulled(store, "huge", 500))
    registry = ModelRegistry(Catalog(specs), store, Settings(data_dir=tmp_path, **settings))
    return registry, ModelService(registry)


def run(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(make())


def loaded_ids(registry: ModelRegistry) -> list[str]:
    return [model.spec.id for model in registry.loaded()]


def test_models_load_on_first_use_once_and_the_listing_says_so(tmp_path: Path, loads: Loads) -> None:
    registry, models = build(tmp_path)
    assert not any(model.loaded for model in models.list().data)

    async def use() -> None:
        first, second = await asyncio.gather(models.load("a-alias", "chat"), models.load("a", "chat"))
        assert first is second

    run(use)
    assert len(loads.engines["a"]) == 1
    listing = {model.id: (model.loaded, model.device) for model in models.list().data}
    assert listing["a"] == listing["a-alias"] == (True, "cpu")
    assert listing["b"] == (False, None)
    registry.shutdown()


def test_idle_models_unload_after_the_ttl_and_load_again_when_asked(tmp_path: Path, loads: Loads) -> None:
    registry, models = build(tmp_path, model_idle_unload_seconds=0.2)

    async def scenario() -> None:
        model = await models.load("a", "chat")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while not loads.engines["a"][0].closed.is_set() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert loaded_ids(registry) == []
        assert model.runner.closed and loads.engines["a"][0].closed.is_set()
        assert (await models.load("a", "chat")) is not model  # loaded afresh

    run(scenario)
    assert len(loads.engines["a"]) == 2
    registry.shutdown()


def test_a_model_answering_a_request_is_not_unloaded_when_idle_time_passes(tmp_path: Path, loads: Loads) -> None:
    registry, models = build(tmp_path)

    async def scenario() -> None:
        model = await models.load("a", "chat")
        admission = await models.admit(model)
        assert await registry.unload_idle(0) == []  # in flight: kept however long it has been
        admission.release()
        assert await registry.unload_idle(0) == ["a"]

    run(scenario)
    registry.shutdown()


def test_the_budget_evicts_the_least_recently_used_idle_model(tmp_path: Path, loads: Loads) -> None:
    """Budget 150 MiB, models of 60: a third load unloads the least recently used one."""
    registry, models = build(tmp_path, model_memory_budget_mib=150)

    async def scenario() -> None:
        await models.load("a", "chat")
        await models.load("b", "chat")
        await models.load("a", "chat")  # a is now the more recently used
        await models.load("c", "chat")
        assert sorted(loaded_ids(registry)) == ["a", "c"]
        assert registry.memory_in_use() == 120

    run(scenario)
    assert loads.engines["b"][0].closed.is_set()
    registry.shutdown()


def test_a_model_with_requests_in_flight_is_never_evicted(tmp_path: Path, loads: Loads) -> None:
    """Budget 100, models of 60: while a answers (a background job here), b cannot load (503);
    once a is done, loading b unloads it."""
    registry, models = build(tmp_path, model_memory_budget_mib=100)

    async def scenario() -> None:
        a = await models.load("a", "chat")
        held = await models.admit(a, background=True)
        with pytest.raises(ServiceUnavailable) as refused:
            await models.load("b", "chat")
        assert (refused.value.status_code, refused.value.code) == (503, "model_memory_exhausted")
        assert "does not fit" in refused.value.message
        assert loaded_ids(registry) == ["a"]
        held.release()
        await models.load("b", "chat")
        assert loaded_ids(registry) == ["b"]

    run(scenario)
    registry.shutdown()


def test_a_model_bigger_than_the_whole_budget_is_refused(tmp_path: Path, loads: Loads) -> None:
    registry, models = build(tmp_path, model_memory_budget_mib=100)

    with pytest.raises(ServiceUnavailable, match="more than the whole model memory budget"):
        run(lambda: models.load("huge", "chat"))
    assert "huge" not in loads.engines
    registry.shutdown()


def test_a_model_unloaded_between_lookup_and_admission_is_a_retryable_503(tmp_path: Path, loads: Loads) -> None:
    registry, models = build(tmp_path)

    async def scenario() -> None:
        model = await models.load("a", "chat")
        await registry.unload("a")
        with pytest.raises(ServiceUnavailable) as refused:
            await models.admit(model)
        assert refused.value.code == "model_unloaded"

    run(scenario)
    registry.shutdown()


def test_load_options_come_from_the_catalog_and_the_setting_overrides_them(tmp_path: Path, loads: Loads) -> None:
    registry, models = build(tmp_path, model_options={"b": {"n_ctx": 1024, "threads": 2}})

    async def scenario() -> None:
        await models.load("a", "chat")
        await models.load("b", "chat")

    run(scenario)
    assert loads.engines["a"][0].options == {"memory_mib": 60}
    assert loads.engines["b"][0].options == {"memory_mib": 60, "n_ctx": 1024, "threads": 2}
    registry.shutdown()


def test_models_on_the_gpu_count_against_the_gpu_budget(tmp_path: Path, loads: Loads,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """b and c go to a (pretend) GPU: making room for c evicts b, never a, which sits in RAM."""
    monkeypatch.setattr(registry_module, "_device_of",
                        lambda spec, device, engine=None: "cuda" if spec.id in ("b", "c") else "cpu")
    registry, models = build(tmp_path, model_memory_budget_mib=100, model_gpu_memory_budget_mib=100)

    async def scenario() -> None:
        await models.load("a", "chat")
        await models.load("b", "chat")
        await models.load("c", "chat")

    run(scenario)
    assert sorted(loaded_ids(registry)) == ["a", "c"]
    assert (registry.memory_in_use("cpu"), registry.memory_in_use("cuda")) == (60, 60)
    assert {m.id: m.device for m in models.list().data if m.loaded} == {
        "a": "cpu", "a-alias": "cpu", "c": "cuda", "c-alias": "cuda"}
    registry.shutdown()


class Adapters:
    """Fine-tuned models of base ``a``, each an adapter file, all in one project."""

    def __init__(self, directory: Path, *names: str) -> None:
        self.found: dict[str, AdaptedModel] = {}
        for name in names:
            path = directory / f"{name}.gguf"
            path.write_bytes(b"lora")
            self.found[f"ft:a:{name}"] = _Adapted(f"ft:a:{name}", "a", path)

    def find(self, name: str, project_id: str) -> AdaptedModel | None:
        return self.found.get(name)

    def listed(self, project_id: str) -> list[AdaptedModel]:
        return list(self.found.values())

    def delete(self, name: str, project_id: str) -> None:
        del self.found[name]


class _Adapted:
    def __init__(self, name: str, base_model: str, adapter: Path) -> None:
        self.name, self.base_model, self.adapter = name, base_model, adapter
        self.created, self.owned_by = 1, "org"


def test_fine_tunes_share_their_base_engine_each_request_naming_its_adapter(tmp_path: Path, loads: Loads) -> None:
    """The base loads once per new adapter, keeping those it had; an idle base is swapped at once,
    a busy one finishes its request on the old engine before that engine closes."""
    registry, models = build(tmp_path)
    adapters = Adapters(tmp_path, "x", "y")
    models.adapted = adapters
    caller = Caller("org", "proj", "key")
    x, y = adapters.found["ft:a:x"].adapter, adapters.found["ft:a:y"].adapter

    async def scenario() -> None:
        base = await models.load("a", "chat")
        assert base.adapters == ()
        tuned_x = await models.load("ft:a:x", "chat", caller)
        assert (tuned_x.spec.id, tuned_x.engine.adapter, tuned_x.engine.adapters) == ("ft:a:x", x, (x,))
        assert base.engine.closed.is_set(), "the idle base was replaced at once"
        assert (await models.load("a", "chat")).runner is tuned_x.runner, "the fine-tune queues with its base"
        assert {m.id: m.loaded for m in models.list(caller).data}["ft:a:y"] is False

        busy = await models.admit(tuned_x)
        tuned_y = await models.load("ft:a:y", "chat", caller)
        assert tuned_y.engine.adapters == (x, y) and tuned_y.engine.adapter == y
        assert tuned_y.runner is not tuned_x.runner
        assert not tuned_x.engine.closed.is_set(), "the replaced engine still answers its request"
        assert registry.memory_in_use() == 2 * 60, "a draining engine's memory still counts"
        busy.release()
        await asyncio.wait_for(asyncio.to_thread(tuned_x.engine.closed.wait), DEADLINE)
        for _ in range(int(DEADLINE / 0.01)):  # the drain forgets the engine once it has closed it
            if registry.memory_in_use() == 60:
                break
            await asyncio.sleep(0.01)
        assert registry.memory_in_use() == 60

        again = await models.load("ft:a:x", "chat", caller)
        assert again.engine.adapters == (x, y) and again.runner is tuned_y.runner, "no reload for a known adapter"
        assert all(m.loaded for m in models.list(caller).data if m.id.startswith("ft:"))
        assert loaded_ids(registry) == ["a"]

        with pytest.raises(NotFound):
            await models.load("ft:a:z", "chat", caller)

    run(scenario)
    assert len(loads.engines["a"]) == 3
    registry.shutdown()
