"""``hearth models import`` and ``rm``: local files registered in the user catalog.

A file or folder is detected (``detect.py``), its chosen files copied (or
linked) into the models directory under the names its engine loads,
checksummed, and written to the user catalog with no sources (it cannot be
pulled again, only imported). A finished import leaves the pull marker, so
the model is servable at once.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import time
from pathlib import Path

from hearth.catalog.catalog import ModelFile, ModelSpec, Source
from hearth.catalog.detect import Detected, detect
from hearth.catalog.gguf import gguf_metadata
from hearth.catalog.provision import MARKER, ModelStore, _sha256_of, _write_marker
from hearth.catalog.user import add_user_model, read_user_catalog, remove_user_model, user_catalog_path

DEFAULT_N_CTX = 8192  # the built-in chat models' context per request


class ImportFailed(RuntimeError):
    """An import or removal that cannot be done; the message says why."""


def model_name(text: str) -> str:
    """A model id made from a file, folder or repository name."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    name = re.sub(r"\.gguf$", "", name)
    return name or "model"


def folder_listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.name != MARKER)


def build_spec(name: str, detected: Detected, directory: Path, *, description: str,
               owned_by: str = "user", hub_repo: str | None = None) -> ModelSpec:
    """The catalog entry for ``detected``'s files, now in ``directory`` and verified by the caller."""
    files = tuple(
        ModelFile(dest, (directory / dest).stat().st_size, _sha256_of(directory / dest),
                  (Source("hub", (hub_repo,), source),) if hub_repo else ())
        for dest, source in detected.files.items())
    options = dict(detected.options)
    if detected.engine == "llama":
        options.setdefault("n_ctx", gguf_context_length(directory / "model.gguf"))
    return ModelSpec(id=name, kind=detected.kind, engine=detected.engine, description=description,
                     owned_by=owned_by, created=int(time.time()), files=files, options=options)


def gguf_context_length(path: Path, largest: int = DEFAULT_N_CTX) -> int:
    """The context a chat model is given per request: what it was trained for, at most ``largest``."""
    try:
        meta = gguf_metadata(path, (".context_length",))
    except (OSError, ValueError, struct.error):
        return largest
    trained = meta.get(f"{meta.get('general.architecture')}.context_length")
    return min(int(trained), largest) if isinstance(trained, int) and trained > 0 else largest


def import_model(path: Path, *, data_dir: Path, store: ModelStore, name: str | None = None,
                 link: bool = False, select: str | None = None) -> ModelSpec:
    """Register the model at ``path`` (a file or a folder) in the user catalog."""
    path = path.expanduser().resolve()
    if path.is_file():
        root, listing = path.parent, [path.name]
    elif path.is_dir():
        root, listing = path, folder_listing(path)
    else:
        raise ImportFailed(f"{path} does not exist")
    detected = detect(listing, select)
    name = name or model_name(path.name)
    directory = store.root / name
    if directory.exists() and any(directory.iterdir()):
        raise ImportFailed(f"{directory} already holds a model; choose another --name or "
                           f"`hearth models rm {name}` first")
    directory.mkdir(parents=True, exist_ok=True)
    try:
        for dest, source in detected.files.items():
            target = directory / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            if link:
                target.symlink_to(root / source)
            else:
                tmp = target.with_name(target.name + ".partial")
                shutil.copyfile(root / source, tmp)
                os.replace(tmp, target)
        spec = build_spec(name, detected, directory, description=f"imported from {path}")
        add_user_model(data_dir, spec)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    _write_marker(directory, spec)
    return spec


def remove_model(name: str, *, data_dir: Path, store: ModelStore) -> tuple[str, bool]:
    """Remove a user model (its catalog entry and files); returns its id and whether files went.

    Built-in models cannot be removed from the catalog; their pulled files can
    (the caller decides whether to offer that).
    """
    path = user_catalog_path(data_dir)
    models, aliases = read_user_catalog(path) if path.is_file() else ([], {})
    spec = next((m for m in models if name in (m.id, *m.aliases)), None)
    if spec is None and name in aliases:
        spec = next((m for m in models if m.id == aliases[name]), None)
    if spec is None:
        raise ImportFailed(f"{name!r} is not a model of the user catalog ({path})")
    remove_user_model(data_dir, spec.id)
    directory = store.dir_for(spec)
    had_files = directory.exists()
    shutil.rmtree(directory, ignore_errors=True)  # links are removed, never what they point at
    return spec.id, had_files
