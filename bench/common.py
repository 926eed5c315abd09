"""Shared plumbing for the benchmarks: a live server, its memory, timing."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import LiveServer, pulled_model_dir, start_server, stop_server


@contextmanager
def live_server(models: list[str], data_root: Path | None = None,
                **env: str) -> Iterator[LiveServer]:
    """A server loading ``models``, its data directory a fresh folder under ``data_root``."""
    for name in models:
        pulled_model_dir(name)
    from hearth.settings import Settings

    with tempfile.TemporaryDirectory(prefix="hearth-bench-", dir=data_root) as data_dir:
        server = start_server(Path(data_dir), Settings().resolved_models_dir,
                              HEARTH_DEFAULT_MODELS=json.dumps(models), **env)
        try:
            yield server
        finally:
            stop_server(server)


def peak_rss_mib(pid: int) -> float:
    """The process's high-water resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result
