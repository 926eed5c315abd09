"""GET / and /playground/{asset}: the playground's static page, served from the package.

The page is plain HTML, CSS and JavaScript (no build step, nothing fetched from
elsewhere) and talks to the server only through the public API, with the key
the user signs in with.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from hearth.errors import NotFound

router = APIRouter(include_in_schema=False)

STATIC = Path(str(files("hearth.playground") / "static"))
_MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
# Revalidate on every load: a new release's page is picked up at once; unchanged files answer 304.
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def _asset(name: str) -> FileResponse:
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in _MEDIA_TYPES or not path.is_file():
        raise NotFound(f"No playground asset named `{name}`.")
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=_HEADERS)


@router.get("/")
def index() -> FileResponse:
    return _asset("index.html")


@router.get("/playground/{name}")
def asset(name: str) -> FileResponse:
    return _asset(name)
