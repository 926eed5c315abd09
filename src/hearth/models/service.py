"""Which model a name means, loaded and admitted: the one place names are resolved.

Routers, batch lines and assistant runs all come here with a model name and
the kind of work they want from it (``chat``, ``speech``, ...). The registry
below speaks in its own exceptions; this service turns them into the API's
errors, including the runner's ``ModelBusy`` (a 429 for online requests).
"""

from __future__ import annotations

import anyio.to_thread

from hearth.accounting.ratelimits import RateLimiter
from hearth.caller import Caller
from hearth.catalog.catalog import ModelSpec, UnknownModel
from hearth.engines.registry import LoadedModel, ModelNotPulled, ModelRegistry
from hearth.engines.runner import Admission, ModelBusy
from hearth.errors import InvalidRequest, PermissionDenied, RateLimited, model_not_found
from hearth.models.protocol import Model, ModelList


class ModelService:
    def __init__(self, registry: ModelRegistry, limiter: RateLimiter | None = None) -> None:
        self.registry = registry
        # The project's rate limits, checked as online work is admitted (background work is not limited).
        self.limiter = limiter

    def resolve(self, name: str, kind: str) -> ModelSpec:
        """The catalog model ``name`` refers to, if it does ``kind`` work and is pulled."""
        spec = self._servable(name)
        if spec.kind != kind:
            raise InvalidRequest(
                f"The model `{name}` is a {spec.kind} model and cannot be used with this endpoint.",
                param="model", code="model_not_supported")
        return spec

    async def load(self, name: str, kind: str) -> LoadedModel:
        """The loaded model ``name`` refers to (loaded on first use)."""
        return await self.get(self.resolve(name, kind))

    async def get(self, spec: ModelSpec) -> LoadedModel:
        try:
            return await self.registry.get(spec)
        except ModelNotPulled:
            raise model_not_found(spec.id) from None

    async def admit(self, model: LoadedModel, *, background: bool = False) -> Admission:
        """A place at the model: online work is refused when it is full, background work waits."""
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

    def list(self) -> ModelList:
        servable = {spec.id for spec in self.servable()}
        return ModelList(data=[_model(name, spec) for name, spec in self.registry.catalog.names()
                               if spec.id in servable])

    def retrieve(self, name: str) -> Model:
        return _model(name, self._servable(name))

    def delete(self, caller: Caller, name: str) -> None:
        """Only fine-tuned models can be deleted, by their owner; every catalog model is a base
        model, so it is refused, and any other name is not found."""
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


def _model(name: str, spec: ModelSpec) -> Model:
    return Model(id=name, created=spec.created, owned_by=spec.owned_by)
