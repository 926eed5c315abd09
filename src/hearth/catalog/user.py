"""The user catalog: models a user added, and the names they gave them.

``<data_dir>/catalog.toml`` has the built-in catalog's schema (``[[models]]``
entries; a file with no ``sources`` was imported from this machine) plus an
optional ``[aliases]`` table (``gpt-4o = "qwen2.5-coder-1.5b"``). It is merged
with the built-in catalog wherever models are served or listed. Names are
resolved in layers, each overriding the one before:

1. the built-in catalog's aliases;
2. the default model settings (``HEARTH_DEFAULT_CHAT_MODEL`` ...): every
   built-in alias of that kind moves to the model named;
3. the user catalog's models' own aliases, then its ``[aliases]`` table;
4. ``HEARTH_ALIASES``.

A model id defined twice, an alias that shadows a model id, an alias to an
unknown model, or a malformed entry is a ``CatalogError`` naming the file and
the entry, raised at start-up.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from hearth.catalog.catalog import (
    CATALOG_FILE,
    Catalog,
    CatalogError,
    ModelSpec,
    UnknownModel,
    _parse_model,
)
from hearth.settings import Settings

USER_CATALOG = "catalog.toml"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+@/-]*")


def user_catalog_path(data_dir: Path) -> Path:
    return data_dir / USER_CATALOG


def load_catalog(data_dir: Path | None = None, *, aliases: Mapping[str, str] | None = None,
                 defaults: Mapping[str, str] | None = None, builtin: Path = CATALOG_FILE) -> Catalog:
    """The built-in catalog merged with the user catalog in ``data_dir`` and the alias settings.

    ``defaults`` maps a kind (``chat``, ``speech`` ...) to the model its built-in aliases mean.
    """
    base = Catalog.load(builtin)
    user_models: list[ModelSpec] = []
    user_aliases: dict[str, str] = {}
    path = user_catalog_path(data_dir) if data_dir is not None else None
    if path is not None and path.is_file():
        user_models, user_aliases = read_user_catalog(path)
    return merge(base.models, user_models, defaults=defaults or {}, user_source=str(path),
                 aliases=[(str(path), user_aliases), ("HEARTH_ALIASES", dict(aliases or {}))])


def read_user_catalog(path: Path) -> tuple[list[ModelSpec], dict[str, str]]:
    """The models and the alias table of one user catalog file, checked."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - {"models", "aliases"}
    if unknown:
        raise CatalogError(f"{path}: unknown top-level keys {sorted(unknown)} (expected models, aliases)")
    raw_models = data.get("models", [])
    if not isinstance(raw_models, list):
        raise CatalogError(f"{path}: `models` must be an array of tables ([[models]])")
    models = [_checked_model(path, index, raw) for index, raw in enumerate(raw_models)]
    raw_aliases = data.get("aliases", {})
    if not isinstance(raw_aliases, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw_aliases.items()):
        raise CatalogError(f"{path}: `aliases` must be a table of name = \"model id\"")
    return models, dict(raw_aliases)


def _checked_model(path: Path, index: int, raw: Any) -> ModelSpec:
    where = f"{path}: models[{index}]"
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: not a table")
    if isinstance(raw.get("id"), str):
        where += f" ({raw['id']})"

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise CatalogError(f"{where}: {what}")

    for key in ("id", "kind", "engine"):
        need(isinstance(raw.get(key), str) and bool(raw[key]), f"`{key}` must be a non-empty string")
    need(bool(_ID.fullmatch(raw["id"])), "`id` may hold only letters, digits and . _ - : + @ /")
    need(isinstance(raw.get("aliases", []), list) and all(isinstance(a, str) and a for a in raw.get("aliases", [])),
         "`aliases` must be a list of names")
    need(isinstance(raw.get("options", {}), dict), "`options` must be a table")
    need(isinstance(raw.get("created", 0), int), "`created` must be an integer (Unix seconds)")
    for key in ("description", "owned_by"):
        need(isinstance(raw.get(key, ""), str), f"`{key}` must be a string")
    files = raw.get("files", [])
    need(isinstance(files, list) and bool(files), "`files` must list at least one file ([[models.files]])")
    for number, entry in enumerate(files):
        need(isinstance(entry, dict), f"files[{number}] is not a table")
        name = entry.get("path")
        need(isinstance(name, str) and bool(name), f"files[{number}]: `path` must be a non-empty string")
        pure = PurePosixPath(name)
        need(not pure.is_absolute() and ".." not in pure.parts,
             f"files[{number}]: `path` must be relative to the model's directory")
        need(isinstance(entry.get("size"), int) and entry["size"] >= 0,
             f"files[{number}] ({name}): `size` must be a byte count")
        need(isinstance(entry.get("sha256"), str) and bool(_SHA256.fullmatch(entry["sha256"])),
             f"files[{number}] ({name}): `sha256` must be 64 lowercase hex digits")
    try:
        return _parse_model(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"{where}: {exc}") from None


def merge(builtin: Iterable[ModelSpec], user: Iterable[ModelSpec], *,
          defaults: Mapping[str, str] = {},
          aliases: Iterable[tuple[str, Mapping[str, str]]] = (),
          user_source: str = "the user catalog") -> Catalog:
    """One catalog of both; every alias layer is applied in order (see the module's doc)."""
    specs: dict[str, ModelSpec] = {}
    builtin_ids: set[str] = set()
    for spec in builtin:
        specs[spec.id] = spec
        builtin_ids.add(spec.id)
    owner: dict[str, str] = {}  # alias -> model id, in the order names are listed
    for spec in specs.values():
        for alias in spec.aliases:
            owner[alias] = spec.id
    builtin_owner = dict(owner)

    for spec in user:
        if spec.id in specs:
            where = "the built-in catalog" if spec.id in builtin_ids else "the user catalog"
            raise CatalogError(f"{user_source}: the user catalog defines model {spec.id!r} twice "
                               f"(already in {where})")
        specs[spec.id] = spec

    def target(source: str, alias: str, name: str) -> str:
        if alias in specs:
            raise CatalogError(f"{source}: alias {alias!r} is a model id; an alias must be a new name")
        if name in specs:
            return name
        if name in owner:
            return owner[name]
        raise CatalogError(f"{source}: alias {alias!r} names unknown model {name!r}")

    for kind, model in defaults.items():
        if model not in specs and model not in owner:
            raise CatalogError(f"the default {kind} model {model!r} is not in the catalog")
        chosen = specs[model] if model in specs else specs[owner[model]]
        if chosen.kind != kind:
            raise CatalogError(f"the default {kind} model {model!r} is a {chosen.kind} model")
        for alias, held_by in builtin_owner.items():
            if specs[held_by].kind == kind:
                owner[alias] = chosen.id

    user_alias_source: dict[str, str] = {}
    for spec in specs.values():
        if spec.id in builtin_ids:
            continue
        for alias in spec.aliases:
            if alias in user_alias_source:
                raise CatalogError(f"{user_source}: the user catalog gives alias {alias!r} to both "
                                   f"{user_alias_source[alias]!r} and {spec.id!r}")
            user_alias_source[alias] = spec.id
            owner[alias] = target(f"{user_source}: model {spec.id!r}", alias, spec.id)
    for source, table in aliases:
        for alias, name in table.items():
            owner[alias] = target(source, alias, name)

    ordered = [replace(spec, aliases=tuple(a for a, held_by in owner.items() if held_by == spec.id))
               for spec in specs.values()]
    return Catalog(ordered)


# -- writing --------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _spec_toml(spec: ModelSpec) -> str:
    lines = ["[[models]]"]
    for key in ("id", "kind", "engine", "description", "owned_by", "created"):
        lines.append(f"{key} = {_toml_value(getattr(spec, key))}")
    lines.append(f"aliases = {_toml_value(list(spec.aliases))}")
    if spec.options:
        lines.append(f"options = {_toml_value(spec.options)}")
    for file in spec.files:
        lines += ["", "[[models.files]]", f"path = {_toml_value(file.path)}",
                  f"size = {file.size}", f"sha256 = {_toml_value(file.sha256)}"]
        hub = [{"hub": s.ref[0], "file": s.member} for s in file.sources if s.kind == "hub"]
        if hub:
            lines.append(f"sources = [{', '.join(_toml_value(s) for s in hub)}]")
    return "\n".join(lines) + "\n"


def write_user_catalog(path: Path, models: list[ModelSpec], aliases: Mapping[str, str]) -> None:
    """Replace the user catalog with ``models`` and ``aliases``, atomically."""
    parts = [("# Hearth's user catalog: models added with `hearth models pull|import`.\n"
             "# Same schema as the built-in catalog; edit freely (checked at start-up).\n")]
    if aliases:
        parts.append("[aliases]\n" + "".join(f"{json.dumps(k)} = {json.dumps(v)}\n"
                                             for k, v in aliases.items()))
    parts += [_spec_toml(spec) for spec in models]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text("\n".join(parts))
    os.replace(tmp, path)


def add_user_model(data_dir: Path, spec: ModelSpec, *, replace_existing: bool = False) -> None:
    """Write ``spec`` into the user catalog (checked against the built-in one first)."""
    path = user_catalog_path(data_dir)
    models, aliases = read_user_catalog(path) if path.is_file() else ([], {})
    if any(m.id == spec.id for m in models):
        if not replace_existing:
            raise CatalogError(f"the user catalog already has a model {spec.id!r}")
        models = [m for m in models if m.id != spec.id]
    models.append(spec)
    merge(Catalog.load().models, models, aliases=[(str(path), aliases)])  # refuses clashes before writing
    write_user_catalog(path, models, aliases)


def remove_user_model(data_dir: Path, model_id: str) -> ModelSpec:
    """Drop a model (and the alias table's names for it) from the user catalog; returns it."""
    path = user_catalog_path(data_dir)
    models, aliases = read_user_catalog(path) if path.is_file() else ([], {})
    found = [m for m in models if m.id == model_id]
    if not found:
        raise KeyError(model_id)
    write_user_catalog(path, [m for m in models if m.id != model_id],
                       {k: v for k, v in aliases.items() if v != model_id})
    return found[0]


def catalog_for(settings: Settings) -> Catalog:
    """The catalog a process serves: built-in, user catalog, default model and alias settings."""
    return load_catalog(settings.data_dir, aliases=settings.aliases,
                        defaults=settings.default_model_of_kind)


def preload_names(settings: Settings, catalog: Catalog) -> list[str]:
    """The models to pull and load at start: ``default_models``, each kind's default setting
    taking the place of that kind's entry."""
    chosen = settings.default_model_of_kind
    names: list[str] = []
    for name in settings.default_models:
        try:
            kind = catalog.resolve(name).kind
        except UnknownModel:
            kind = None
        names.append(chosen.get(kind, name) if kind else name)
    names += [model for model in chosen.values() if model not in names]
    return list(dict.fromkeys(names))
