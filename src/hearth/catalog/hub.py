"""``hearth models pull hf:OWNER/REPO[:QUANT|:FILE]``: any model from a Hugging Face-style hub.

The hub's HTTP API lists a repository's files at one commit
(``/api/models/{repo}`` for the commit, ``/api/models/{repo}/tree/{commit}``
for the files, each large file with the sha256 of its LFS object and every
file with its git blob id). The files the detected engine needs are
downloaded from ``/{repo}/resolve/{commit}/{path}`` with a progress bar,
into ``<name>.partial`` files that survive an interruption: the next attempt
(a retry, or the next ``pull``) asks for the rest with an HTTP Range request.
Each file is checked against the hub's sha256 (or its git blob id, for small
files kept outside LFS) before it takes its place; a file that does not match
is deleted and the pull fails. The model is then registered in the user
catalog, with the hub as its source.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from hearth.catalog.catalog import Catalog, ModelSpec
from hearth.catalog.detect import Detected, detect
from hearth.catalog.importing import build_spec
from hearth.catalog.provision import CHUNK, ModelStore, PullError, _write_marker
from hearth.catalog.user import add_user_model, read_user_catalog, user_catalog_path

PUBLIC_HUB = "https://huggingface.co"
ATTEMPTS = 4  # tries per file; each after the first resumes where the last one stopped
_REFERENCE = re.compile(r"(?:hf:|hub:)(?P<repo>[^/:\s]+/[^/:\s]+)(?:(?::|/)(?P<select>.+))?")


def hub_endpoint(configured: str | None = None) -> str:
    """The hub's base URL: the setting, else ``$HF_ENDPOINT``, else the public hub."""
    return (configured or os.environ.get("HF_ENDPOINT") or PUBLIC_HUB).rstrip("/")


def is_hub_reference(name: str) -> bool:
    return name.startswith(("hf:", "hub:"))


def parse_reference(reference: str) -> tuple[str, str | None]:
    """``hf:OWNER/REPO``, ``hf:OWNER/REPO:Q4_K_M``, ``hf:OWNER/REPO:file.gguf`` or
    ``hf:OWNER/REPO/path/file.gguf`` -> (repository, the quantization or file chosen)."""
    match = _REFERENCE.fullmatch(reference.strip())
    if match is None:
        raise PullError(f"{reference!r} is not a hub reference (hf:OWNER/REPO[:QUANT or FILE])")
    return match["repo"], match["select"]


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int
    sha256: str | None  # the LFS object's; small files outside LFS have none
    git_oid: str | None  # the git blob id (sha1 of "blob <size>\0" + bytes)

    def check(self) -> Callable[[], Any]:
        """A fresh hasher that verifies this file the strongest way the hub allows."""
        if self.sha256:
            return hashlib.sha256
        if self.git_oid:
            def blob() -> Any:
                digest = hashlib.sha1(usedforsecurity=False)
                digest.update(b"blob %d\0" % self.size)
                return digest
            return blob
        raise PullError(f"the hub publishes no checksum for {self.path}; refusing it unverified")

    @property
    def expected(self) -> str:
        return (self.sha256 or self.git_oid or "").lower()


class HubClient:
    def __init__(self, endpoint: str, *, token: str | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(headers=headers, follow_redirects=True, transport=transport,
                                  timeout=httpx.Timeout(60, connect=10))

    def close(self) -> None:
        self._http.close()

    def _get_json(self, url: str, what: str) -> httpx.Response:
        try:
            response = self._http.get(url)
        except httpx.HTTPError as exc:
            raise PullError(f"cannot reach the hub at {self.endpoint} ({type(exc).__name__}); "
                            "set HEARTH_HUB_URL or HF_ENDPOINT to another") from None
        if response.status_code in (401, 403):
            raise PullError(f"the hub refused {what} (HTTP {response.status_code}): a gated or private "
                            "repository needs HF_TOKEN")
        if response.status_code == 404:
            raise PullError(f"the hub has no {what}")
        if response.status_code != 200:
            raise PullError(f"the hub answered HTTP {response.status_code} for {what}")
        return response

    def files(self, repo: str) -> tuple[str, list[HubFile]]:
        """The repository's current commit and every file in it."""
        info = self._get_json(f"{self.endpoint}/api/models/{repo}", f"repository {repo}").json()
        revision = str(info.get("sha") or "main")
        url: str | None = f"{self.endpoint}/api/models/{repo}/tree/{revision}?recursive=true"
        found: list[HubFile] = []
        while url:
            response = self._get_json(url, f"file listing of {repo}")
            for entry in response.json():
                if entry.get("type") != "file":
                    continue
                lfs = entry.get("lfs") or {}
                found.append(HubFile(entry["path"], int(entry.get("size", lfs.get("size", 0))),
                                     lfs.get("oid") or lfs.get("sha256"), entry.get("oid")))
            url = response.links.get("next", {}).get("url")  # the listing comes in pages
        return revision, found

    def download(self, repo: str, revision: str, file: HubFile, dest: Path,
                 progress: Progress) -> None:
        """Fetch ``file`` to ``dest``, resuming a partial one, verified before it takes its place."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")
        task = progress.add_task(file.path, total=file.size)
        try:
            for attempt in range(ATTEMPTS):
                try:
                    self._fetch_into(repo, revision, file, partial, progress, task)
                    break
                except (httpx.TransportError, _Incomplete) as exc:
                    if attempt == ATTEMPTS - 1:
                        raise PullError(f"{file.path}: download interrupted ({type(exc).__name__}); "
                                        "run the pull again to resume it") from None
            digest = file.check()()
            with partial.open("rb") as fh:
                while block := fh.read(CHUNK):
                    digest.update(block)
            if partial.stat().st_size != file.size or digest.hexdigest() != file.expected:
                partial.unlink(missing_ok=True)
                raise PullError(f"{file.path}: checksum mismatch: the bytes served are not the ones the "
                                f"hub published (sha {digest.hexdigest()[:12]}..., expected "
                                f"{file.expected[:12]}...); the file was discarded")
            os.replace(partial, dest)
        finally:
            progress.remove_task(task)

    def _fetch_into(self, repo: str, revision: str, file: HubFile, partial: Path,
                    progress: Progress, task: TaskID) -> None:
        have = partial.stat().st_size if partial.exists() else 0
        if have > file.size:
            partial.unlink()
            have = 0
        if have == file.size:
            progress.update(task, completed=have)
            return
        headers = {"Range": f"bytes={have}-"} if have else {}
        url = f"{self.endpoint}/{repo}/resolve/{revision}/{file.path}"
        with self._http.stream("GET", url, headers=headers) as response:
            if response.status_code == 206 and _range_start(response) == have:
                mode = "ab"
            elif response.status_code == 200:
                mode, have = "wb", 0  # the server ignored the range: start again
            else:
                raise PullError(f"{file.path}: the hub answered HTTP {response.status_code}")
            progress.update(task, completed=have)
            with partial.open(mode) as out:
                # As the bytes arrive (not gathered in large blocks), so a cut keeps what came.
                for block in response.iter_bytes():
                    out.write(block)
                    have += len(block)
                    progress.update(task, completed=have)
                out.flush()
                os.fsync(out.fileno())
        if have < file.size:
            raise _Incomplete(f"{have} of {file.size} bytes")


class _Incomplete(Exception):
    pass


def _range_start(response: httpx.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("content-range", ""))
    return int(match[1]) if match else None


def _default_name(repo: str, detected: Detected) -> str:
    from hearth.catalog.importing import model_name

    if detected.engine == "llama":
        return model_name(Path(detected.files["model.gguf"]).name)
    return model_name(repo.split("/", 1)[1])


def pull_from_hub(reference: str, *, data_dir: Path, store: ModelStore, endpoint: str,
                  name: str | None = None, console: Console | None = None,
                  token: str | None = None, transport: httpx.BaseTransport | None = None) -> ModelSpec:
    """Resolve, download, verify and register ``reference``; returns its catalog entry."""
    console = console or Console(stderr=True)
    repo, select = parse_reference(reference)
    client = HubClient(endpoint, token=token if token is not None else os.environ.get("HF_TOKEN"),
                       transport=transport)
    try:
        revision, files = client.files(repo)
        by_path = {f.path: f for f in files}
        try:
            detected = detect(by_path, select)
        except ValueError as exc:
            raise PullError(f"{repo}: {exc}") from None
        name = name or _default_name(repo, detected)
        _check_name_is_free(name, repo, data_dir)
        directory = store.root / name
        wanted = [(dest, by_path[source]) for dest, source in detected.files.items()]
        total = sum(f.size for _, f in wanted)
        console.print(f"[bold]Pulling {repo}[/bold] as {name} ({detected.kind}, {detected.engine}): "
                      f"{len(wanted)} files, {total / 1e6:.0f} MB")
        with _progress(console) as progress:
            for dest, file in wanted:
                target = directory / dest
                if _already_verified(target, file):
                    continue
                client.download(repo, revision, file, target, progress)
    finally:
        client.close()
    spec = build_spec(name, detected, directory, description=f"{repo} from the hub",
                      owned_by=repo.split("/", 1)[0].lower(), hub_repo=repo)
    add_user_model(data_dir, spec, replace_existing=True)
    _write_marker(directory, spec)
    return spec


def _check_name_is_free(name: str, repo: str, data_dir: Path) -> None:
    """Before downloading anything: the name is new, or the same repository's (an update)."""
    try:
        Catalog.load().resolve(name)
    except KeyError:
        pass
    else:
        raise PullError(f"{name!r} is a built-in model name; choose another with --name")
    path = user_catalog_path(data_dir)
    models, _ = read_user_catalog(path) if path.is_file() else ([], {})
    for model in models:
        if model.id == name:
            repos = {s.ref[0] for f in model.files for s in f.sources if s.kind == "hub"}
            if repos != {repo}:
                raise PullError(f"the user catalog already has a model {name!r}; choose another "
                                "with --name or `hearth models rm` it first")


def _already_verified(target: Path, file: HubFile) -> bool:
    if not target.is_file() or target.stat().st_size != file.size:
        return False
    digest = file.check()()
    with target.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest() == file.expected


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("  {task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=console)

