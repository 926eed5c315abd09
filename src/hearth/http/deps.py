"""How routers reach the services: typed dependencies on the one container.

``create_app`` keeps its container on the application; ``provide(T)`` is a
dependency that hands a route the container's ``T`` (a service, the
settings, the database), so routers name what they need by type and never
look into ``request.app.state`` themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from fastapi import Request

from hearth.errors import UnsupportedMediaType

T = TypeVar("T")


class ServiceLookup(Protocol):
    def get(self, kind: type[T]) -> T: ...


def services_of(request: Request) -> ServiceLookup:
    return request.app.state.services


def provide(kind: type[T]) -> Callable[[Request], T]:
    """A dependency returning the container's ``kind``."""

    def dependency(request: Request) -> T:
        return services_of(request).get(kind)

    dependency.__name__ = f"provide_{kind.__name__}"
    return dependency


def require_json(request: Request) -> None:
    """JSON endpoints refuse other media types up front (415), as the API does."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"Invalid Content-Type header ({media_type}), expected application/json.",
            code="unsupported_media_type",
        )


