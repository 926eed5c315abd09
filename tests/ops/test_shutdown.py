"""Graceful shutdown of a live server: on SIGTERM it stops accepting connections, lets the request
in flight finish, then exits cleanly (its job worker handing running jobs back on the way out,
which tests/jobs/test_worker.py shows for the worker itself)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import start_server


def _refuses_connections(base_url: str) -> bool:
    host, port = base_url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return True
    return False


def _in_progress(base_url: str) -> float:
    metrics = httpx.get(f"{base_url}/metrics").text
    return sum(float(line.split()[-1]) for line in metrics.splitlines()
               if line.startswith("hearth_http_requests_in_progress "))


def test_sigterm_finishes_the_request_in_flight_and_refuses_new_ones(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    data = tmp_path_factory.mktemp("shutdown")
    live = start_server(data, data / "models", HEARTH_DEFAULT_MODELS="[]",
                        HEARTH_SHUTDOWN_TIMEOUT_SECONDS="120", HEARTH_LOG_LEVEL="info")
    half_sent, go_on = threading.Event(), threading.Event()
    boundary = "hearthshutdowntest"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode()
    halves = [b"a" * 50_000, b"b" * 50_000]
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head + halves[0]
        half_sent.set()
        go_on.wait(120)
        yield halves[1] + tail

    outcome: dict[str, httpx.Response | BaseException] = {}

    def upload() -> None:
        try:
            outcome["response"] = httpx.post(
                f"{live.base_url}/v1/files", content=body(), timeout=120,
                headers={"Authorization": f"Bearer {live.api_key}",
                         "Content-Type": f"multipart/form-data; boundary={boundary}"})
        except BaseException as exc:  # noqa: BLE001 (reported by the assertion below)
            outcome["response"] = exc

    uploader = threading.Thread(target=upload)
    uploader.start()
    try:
        assert half_sent.wait(60)
        # Signal only once the app has the request (a connection whose request uvicorn has not
        # begun to read is closed at shutdown): it is in progress beside the scrape asking.
        deadline = time.monotonic() + 60
        while _in_progress(live.base_url) < 2:
            assert time.monotonic() < deadline, "the upload never reached the app"
            time.sleep(0.1)
        live.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        while not _refuses_connections(live.base_url):
            assert time.monotonic() < deadline, "the server still accepts connections after SIGTERM"
            time.sleep(0.1)
        assert live.process.poll() is None, "the server exited with a request in flight"
    finally:
        go_on.set()
        uploader.join(120)
    response = outcome["response"]
    assert isinstance(response, httpx.Response), response
    assert response.status_code == 200, response.text
    assert response.json()["bytes"] == sum(map(len, halves))
    # uvicorn re-raises the signal once it has shut down cleanly, so the exit is SIGTERM's.
    assert live.process.wait(60) in (0, -signal.SIGTERM)
    log = live.log()
    # The upload was answered after the shutdown began and before the app was closed.
    answered = log.index('"POST /v1/files HTTP/1.1" 200')
    assert log.index("Shutting down") < answered < log.index("Application shutdown complete"), log
    assert "Traceback" not in log, log
