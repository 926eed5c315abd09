"""Rate limits enforced on live servers under concurrent clients: one process with counters in
memory, and three processes sharing counters in Redis. Never more than the limit admitted, every
other request a 429 with ``Retry-After``, none lost, and the ``x-ratelimit-*`` headers on each."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.accounting.test_ratelimits import REDIS_URL, _redis_up
from tests.conftest import LiveServer, start_server, stop_server
from tests.http.test_foundation import assert_envelope

RATE_LIMIT = "rl-all-minilm-l6-v2"


def _limited_key(base_url: str, admin_key: str, rpm: int) -> str:
    """A fresh project whose embedding model takes ``rpm`` requests a minute, and a key for it."""
    with httpx.Client(base_url=f"{base_url}/v1/organization", timeout=60,
                      headers={"Authorization": f"Bearer {admin_key}"}) as admin:
        project = admin.post("/projects", json={"name": "Limited"}).json()["id"]
        admin.post(f"/projects/{project}/rate_limits/{RATE_LIMIT}",
                   json={"max_requests_per_1_minute": rpm}).raise_for_status()
        account = admin.post(f"/projects/{project}/service_accounts", json={"name": "load"}).json()
    return account["api_key"]["value"]


def _burst(base_urls: list[str], key: str, count: int) -> list[httpx.Response]:
    """``count`` embedding requests at once, spread over the servers in turn."""
    clients = [httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {key}"})
               for url in base_urls]

    def send(index: int) -> httpx.Response:
        return clients[index % len(clients)].post("/v1/embeddings", json={
            "model": "text-embedding-3-small", "input": f"request number {index}"})

    try:
        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(send, range(count)))
    finally:
        for client in clients:
            client.close()


def _check(responses: list[httpx.Response], limit: int) -> None:
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == limit and statuses.count(429) == len(responses) - limit, statuses
    for response in responses:
        assert response.headers["x-ratelimit-limit-requests"] == str(limit)
        assert response.headers["x-ratelimit-reset-requests"].endswith("s")
        assert "x-ratelimit-remaining-tokens" in response.headers
    remaining = sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in responses if r.status_code == 200)
    assert remaining == list(range(limit))
    refused = next(r for r in responses if r.status_code == 429)
    error = assert_envelope(refused, 429, type_="rate_limit_error", code="rate_limit_exceeded")
    assert "requests per min" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_one_process_admits_exactly_the_limit(server: LiveServer) -> None:
    key = _limited_key(server.base_url, server.admin_key, rpm=6)
    _check(_burst([server.base_url], key, 20), 6)
    # Every limited route answers with the headers; the default project has the default limits.
    ok = httpx.post(f"{server.base_url}/v1/moderations", json={"input": "hello"},
                    headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60)
    assert ok.status_code == 200 and ok.headers["x-ratelimit-limit-requests"] == "10000"
    assert int(ok.headers["x-ratelimit-limit-tokens"]) == 10_000_000


@pytest.fixture(scope="module")
def three_servers(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[list[LiveServer]]:
    if not _redis_up():
        pytest.skip("no Redis on 127.0.0.1:6379 (.ci/run starts one)")
    data_dir = tmp_path_factory.mktemp("hearth-shared")
    env = {"HEARTH_REDIS_URL": REDIS_URL, "HEARTH_DEFAULT_MODELS": json.dumps(["all-minilm-l6-v2"])}
    servers: list[LiveServer] = []
    try:
        # The first creates the database and its keys; the others join it (and run no job worker).
        servers.append(start_server(data_dir / "a", models_dir, **env))
        shared = {"HEARTH_DATABASE_URL": f"sqlite:///{data_dir / 'a' / 'hearth.db'}", "HEARTH_RUN_WORKER": "false"}
        for name in ("b", "c"):
            (data_dir / name).mkdir()
            (data_dir / name / "initial-keys.txt").write_text((data_dir / "a" / "initial-keys.txt").read_text())
            servers.append(start_server(data_dir / name, models_dir, **env, **shared))
        yield servers
    finally:
        for live in servers:
            stop_server(live)
    for live in servers:
        assert "Traceback" not in live.log(), live.log()


def test_three_processes_sharing_redis_admit_exactly_the_limit(three_servers: list[LiveServer]) -> None:
    first = three_servers[0]
    key = _limited_key(first.base_url, first.admin_key, rpm=9)
    responses = _burst([live.base_url for live in three_servers], key, 30)
    _check(responses, 9)
    # Each server admitted some: the limit was shared, not enforced by one of them alone.
    per_server = [sum(r.status_code == 200 for r in responses[i::3]) for i in range(3)]
    assert sum(per_server) == 9 and sum(1 for count in per_server if count) >= 2, per_server
