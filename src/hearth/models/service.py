"""Which model a name means, loaded and admitted: the one place names are resolved.

Routers, batch lines and assistant runs all come here with a model name and
the kind of work they want from it (``chat``, ``speech``, ...). The registry
below speaks in its own exceptions; this service turns them into the API's
errors, including the runner's ``ModelBusy`` (a 429 for online requests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import anyio.to_thread

from hearth.accounting.ratelimits import RateLimiter
from hearth.caller import Caller
from hearth.catalog.catalog import ModelSpec, UnknownModel
from hearth.engines.registry import LoadedModel, ModelMemoryExhausted, ModelNotPulled, ModelRegistry
from hearth.engines.runner import Admission, ModelBusy
from hearth.errors import (
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    model_not_found,
)
from hearth.models.protocol import Model, ModelList


class AdaptedModel(Protocol):
    """A fine-tuned model: a catalog base model with a LoRA adapter, owned by one project."""

    @property
    def name(self) -> str: ...
    @property
    def base_model(self) -> str: ...
    @property
    def adapter(self) -> Path: ...
    @property
    def created(self) -> int: ...
    @property
    def owned_by(self) -> str: ...


class AdaptedModels(Protocol):
    """Where ``ft:`` names are looked up (the fine-tuning area), always within a project."""

    def find(self, name: str, project_id: str) -> AdaptedModel | None: ...
    def listed(self, project_id: str) -> Sequence[AdaptedModel]: ...
    def delete(self, name: str, project_id: str) -> None: ...


FINE_TUNED_PREFIX = "ft:"


class ModelService:
    def __init__(self, registry: ModelRegistry, limiter: RateLimiter | None = None) -> None:
        self.registry = registry
        # The project's rate limits, checked as online work is admitted (background work is not limited).
        self.limiter = limiter
        # Fine-tuned models, when the fine-tuning area is wired in (the container sets it).
        self.adapted: AdaptedModels | None = None

    def resolve(self, name: str, kind: str) -> ModelSpec:
        """The catalog model ``name`` refers to, if it does ``kind`` work and is pulled."""
        spec = self._servable(name)
        if spec.kind != kind:
            raise InvalidRequest(
                f"The model `{name}` is a {spec.kind} model and cannot be used with this endpoint.",
                param="model", code="model_not_supported")
        return spec

    async def load(self, name: str, kind: str, caller: Caller | None = None) -> LoadedModel:
        """The loaded model ``name`` refers to (loaded on first use); a fine-tuned (``ft:``)
        name only for the ``caller`` whose project owns it, answered by its base model's engine
        with the fine-tune's adapter."""
        if not name.startswith(FINE_TUNED_PREFIX):
            return await self._loaded_or_error(self.registry.get(self.resolve(name, kind)))
        found = self._find_adapted(name, caller)
        base = self.resolve(found.base_model, kind)
        spec = replace(base, id=name, aliases=(), created=found.created, owned_by=found.owned_by)
        return await self._loaded_or_error(self.registry.adapted(base, found.adapter, spec))

    def _find_adapted(self, name: str, caller: Caller | None) -> AdaptedModel:
        found = None
        if self.adapted is not None and caller is not None:
            found = self.adapted.find(name, caller.project_id)
        if found is None or not found.adapter.is_file():
            raise model_not_found(name)
        return found

    async def get(self, spec: ModelSpec) -> LoadedModel:
        return await self._loaded_or_error(self.registry.get(spec))

    @staticmethod
    async def _loaded_or_error(loading: Awaitable[LoadedModel]) -> LoadedModel:
        try:
            return await loading
        except ModelNotPulled as exc:
            raise model_not_found(exc.model_id) from None
        except ModelMemoryExhausted as exc:
            raise ServiceUnavailable(str(exc), code="model_memory_exhausted") from None

    async def admit(self, model: LoadedModel, *, background: bool = False) -> Admission:
        """A place at the model: online work is refused when it is full, background work waits."""
        if model.runner.closed:
            # Unloaded (idle, or for room) between being looked up and admitted: rare, and retryable.
            raise ServiceUnavailable(f"The model {model.spec.id} was unloaded just now; please retry.",
                                     code="model_unloaded")
        if background:
            return await model.runner.admit_background()
        if self.limiter is not None:
            if self.limiter.remote:
                # The thread runs in a copy of this context, so it sees (and fills) the request's scope.
                await anyio.to_thread.run_sync(self.limiter.admit, model.spec.id)
            else:
                self.limiter.admit(model.spec.id)
        try:
            return model.runner.admit()
        except ModelBusy as exc:
            raise RateLimited(str(exc), code="model_overloaded") from None

    def servable(self, kind: str | None = None) -> list[ModelSpec]:
        """Every model that can answer now, of one kind or of all."""
        return [spec for spec in self.registry.catalog.models
                if (kind is None or spec.kind == kind) and self.registry.is_servable(spec)]

    def list(self, caller: Caller | None = None) -> ModelList:
        servable = {spec.id for spec in self.servable()}
        loaded = self._loaded()
        listed = ModelList(data=[_model(name, spec, loaded) for name, spec in self.registry.catalog.names()
                                 if spec.id in servable])
        if self.adapted is not None and caller is not None:
            listed.data += [_adapted_model(found, loaded) for found in self.adapted.listed(caller.project_id)]
        return listed

    def retrieve(self, name: str, caller: Caller | None = None) -> Model:
        if name.startswith(FINE_TUNED_PREFIX):
            return _adapted_model(self._find_adapted(name, caller), self._loaded())
        return _model(name, self._servable(name), self._loaded())

    def _loaded(self) -> dict[str, LoadedModel]:
        return {model.spec.id: model for model in self.registry.loaded()}

    async def delete(self, caller: Caller, name: str) -> None:
        """Only fine-tuned models can be deleted, by their owner; every catalog model is a base
        model, so it is refused, and any other name is not found."""
        if name.startswith(FINE_TUNED_PREFIX) and self.adapted is not None:
            # Its adapter stays in a loaded base until the base next loads; no request reaches it.
            self.adapted.delete(name, caller.project_id)
            return
        try:
            self.registry.catalog.resolve(name)
        except UnknownModel:
            raise model_not_found(name) from None
        raise PermissionDenied(f"The model `{name}` is a base model; only fine-tuned models can "
                               "be deleted, by the organization that owns them.",
                               code="insufficient_permissions")

    def _servable(self, name: str) -> ModelSpec:
        try:
            spec = self.registry.catalog.resolve(name)
        except UnknownModel:
            raise model_not_found(name) from None
        if not self.registry.is_servable(spec):
            raise model_not_found(name)
        return spec


def _adapted_model(found: AdaptedModel, loaded: dict[str, LoadedModel]) -> Model:
    base = loaded.get(found.base_model)
    if base is not None and found.adapter not in base.adapters:
        base = None
    return Model(id=found.name, created=found.created, owned_by=found.owned_by, loaded=base is not None,
                 device=base.device if base is not None else None)


def _model(name: str, spec: ModelSpec, loaded: dict[str, LoadedModel]) -> Model:
    model = loaded.get(spec.id)
    return Model(id=name, created=spec.created, owned_by=spec.owned_by, loaded=model is not None,
                 device=model.device if model is not None else None)
