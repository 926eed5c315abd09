"""A live Hearth server on loopback, started once per test session.

The server runs as its own process, exactly as `hearth serve` runs it, with a
fresh data directory; models are pulled once into the shared models
directory (outside the repository) and reused by every run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from hearth.catalog.catalog import Catalog
from hearth.catalog.provision import ModelStore
from hearth.settings import Settings

# The storage fixtures (files_server over SQLite+disk and PostgreSQL+S3) for every module.
pytest_plugins = ["tests.storage_backends"]

# Every model the live server loads for the suite.
SERVER_MODELS = Settings().default_models


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    base_url: str
    api_key: str
    admin_key: str
    data_dir: Path
    process: subprocess.Popen
    log_path: Path

    def client(self, **kwargs) -> OpenAI:
        return OpenAI(base_url=f"{self.base_url}/v1", api_key=kwargs.pop("api_key", self.api_key),
                      max_retries=0, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def pulled_model_dir(name: str) -> Path:
    """The directory of a catalog model, pulled into the shared models directory if missing."""
    store = ModelStore(Settings().resolved_models_dir)
    spec = Catalog.load().resolve(name)
    if not store.is_present(spec):
        store.pull(spec)
    return store.dir_for(spec)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """Pull what the server needs once; later runs find it already there."""
    for name in SERVER_MODELS:
        pulled_model_dir(name)
    return Settings().resolved_models_dir


def start_server(data_dir: Path, models_dir: Path, **env_overrides: str) -> LiveServer:
    port = _free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HEARTH_DATA_DIR": str(data_dir),
        "HEARTH_MODELS_DIR": str(models_dir),
        "HEARTH_DEFAULT_MODELS": json.dumps(SERVER_MODELS),
        "HEARTH_PULL_ON_START": "false",
        "HEARTH_LOG_LEVEL": "warning",
        **env_overrides,
    }
    log_path = data_dir / "server.log"
    log = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "hearth", "serve", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
    keys = dict(line.split("=", 1) for line in (data_dir / "initial-keys.txt").read_text()
                .splitlines() if "=" in line and not line.startswith("#"))
    return LiveServer(base_url, keys["HEARTH_API_KEY"], keys["HEARTH_ADMIN_KEY"], data_dir,
                      process, log_path)


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("hearth-data"), models_dir)
    yield live
    stop_server(live)
    assert "Traceback" not in live.log(), live.log()


@pytest.fixture(scope="session")
def client(server: LiveServer) -> OpenAI:
    return server.client()


@pytest.fixture(scope="session")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    """Raw HTTP for what the SDK cannot send: malformed bodies, wrong types, bad headers."""
    with httpx.Client(base_url=server.base_url,
                      headers={"Authorization": f"Bearer {server.api_key}"},
                      timeout=120) as raw:
        yield raw
