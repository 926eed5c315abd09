"""How routers reach the services: typed dependencies on the one container.

``create_app`` keeps its container on the application; ``provide(T)`` is a
dependency that hands a route the container's ``T`` (a service, the
settings, the database), so routers name what they need by type and never
look into ``request.app.state`` themselves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from fastapi import Request

from hearth.errors import InvalidRequest, UnsupportedMediaType, validation_param

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


async def require_json(request: Request) -> None:
    """JSON endpoints refuse other media types up front (415), as the API does, and text
    that is not Unicode (400)."""
    content_type = request.headers.get("content-type")
    if content_type is not None:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            raise UnsupportedMediaType(
                f"Invalid Content-Type header ({media_type}), expected application/json.",
                code="unsupported_media_type",
            )
    _refuse_lone_surrogates(await request.body())


# A JSON string escape of a UTF-16 surrogate: the only way one reaches a decoded string.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}")


def _refuse_lone_surrogates(body: bytes) -> None:
    """A lone surrogate (``"\\ud800"``) decodes to a string that is not text: no tokenizer,
    encoder or log can take it. Paired surrogates decode to one character and are fine.
    The cheap scan finds none in nearly every body; only a hit is decoded and walked."""
    if not _SURROGATE_ESCAPE.search(body):
        return
    try:
        document = json.loads(body)
    except ValueError:
        return  # not JSON at all: validation reports that, with its own message
    path = _lone_surrogate_path(document, [])
    if path is not None:
        param = validation_param(path)
        where = f"'{param}'" if param else "the request body"
        raise InvalidRequest(f"Invalid value for {where}: the text holds a lone UTF-16 surrogate "
                             "(\\ud800-\\udfff), which is not a Unicode character.", param=param,
                             code="invalid_unicode")


def _lone_surrogate_path(node: Any, path: list[Any]) -> list[Any] | None:
    """Where in a decoded JSON document the first string with a lone surrogate is."""
    if isinstance(node, str):
        try:
            node.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if isinstance(key, str) and _lone_surrogate_path(key, []) is not None:
            return path
        if (found := _lone_surrogate_path(value, [*path, key])) is not None:
            return found
    return None


