"""Operations endpoints on the live server: /health, /ready, /metrics; JSON logs; readiness failing.

The shared ``server`` answers the happy paths. A server of this module's own,
on a PostgreSQL database of its own, with a start-up model it does not have,
and JSON logs, shows /ready failing (first its models, then its database,
dropped under it) and its log lines carrying request ids and projects.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator

import httpx
import openai
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveServer, start_server, stop_server
from tests.storage_backends import _drop_pg_database, _fresh_pg_database

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base_url: str) -> Samples:
    response = httpx.get(f"{base_url}/metrics", timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def metric(base_url: str, name: str, **labels: str) -> float:
    """One metric of the live server now: the sum of its samples with these labels."""
    return value(scrape(base_url), name, **labels)


def families(base_url: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(httpx.get(f"{base_url}/metrics").text)}


# -- the shared server -------------------------------------------------------------------------


def test_health_needs_no_key(server: LiveServer) -> None:
    response = httpx.get(f"{server.base_url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_when_database_blobs_and_models_are(server: LiveServer) -> None:
    response = httpx.get(f"{server.base_url}/ready", timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert {name: check["ok"] for name, check in body["checks"].items()} == \
        {"database": True, "blobs": True, "models": True}
    models = body["checks"]["models"]["models"]
    assert models and set(models.values()) == {"ready"}


def test_request_counters_and_latency_move_by_route_template_and_status(server: LiveServer,
                                                                       client: openai.OpenAI) -> None:
    before = scrape(server.base_url)
    client.models.list()
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-does-not-exist")
    after = scrape(server.base_url)
    listed = {"method": "GET", "route": "/v1/models", "status": "200"}
    missing = {"method": "GET", "route": "/v1/files/{file_id}", "status": "404"}
    assert value(after, "hearth_http_requests_total", **listed) >= value(before, "hearth_http_requests_total",
                                                                          **listed) + 1
    assert value(after, "hearth_http_requests_total", **missing) >= value(before, "hearth_http_requests_total",
                                                                           **missing) + 1
    route = {"method": "GET", "route": "/v1/models"}
    for histogram in ("hearth_http_request_duration_seconds_count", "hearth_http_time_to_first_byte_seconds_count"):
        assert value(after, histogram, **route) >= value(before, histogram, **route) + 1
    # Ids in paths never become label values.
    assert not any("file-does-not-exist" in dict(labels).get("route", "") for _, labels in after)


def test_model_metrics_move_with_speech_transcription_and_chat(server: LiveServer,
                                                               client: openai.OpenAI) -> None:
    before = scrape(server.base_url)
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input="Good morning.",
                                       response_format="wav").content
    client.audio.transcriptions.create(model="whisper-1", file=("hi.wav", audio))
    with client.chat.completions.create(model="gpt-4o-mini", max_tokens=4, stream=True,
                                        messages=[{"role": "user", "content": "Say hi."}]) as stream:
        assert any(chunk.choices and chunk.choices[0].delta.content for chunk in stream)
    after = scrape(server.base_url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("hearth_real_time_factor_count", task="speech") == 1
    assert moved("hearth_real_time_factor_count", task="transcription") == 1
    assert moved("hearth_time_to_first_token_seconds_count") == 1
    assert moved("hearth_tokens_total", kind="completions", direction="output") >= 1
    assert moved("hearth_tokens_total", kind="audio_speeches", direction="input") >= 1
    assert moved("hearth_audio_seconds_total", kind="audio_speeches") > 0.3
    assert moved("hearth_audio_seconds_total", kind="audio_transcriptions") > 0.3
    rtf = value(after, "hearth_real_time_factor_sum", task="speech")
    assert math.isfinite(rtf) and rtf > 0
    # Every loaded model reports its threads, capacity, queue and places in flight (none now).
    for model in ("kokoro-82m", "whisper-base", "qwen2.5-coder-0.5b"):
        assert value(after, "hearth_model_threads", model=model) >= 1
        assert value(after, "hearth_model_online_capacity", model=model) > value(
            after, "hearth_model_threads", model=model)
        assert value(after, "hearth_model_requests_in_flight", model=model, lane="online") == 0
        assert ("hearth_model_queue_depth", frozenset({("model", model)})) in after
    assert "hearth_jobs" in families(server.base_url)


# -- a server whose readiness fails ------------------------------------------------------------


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str) -> Iterator[tuple[LiveServer, str]]:
    """A server on a PostgreSQL database of its own, missing its start-up model, logging JSON."""
    name = _fresh_pg_database(pg_admin_url)
    data = tmp_path_factory.mktemp("ops")
    live = start_server(data, data / "models", HEARTH_DEFAULT_MODELS='["kokoro-82m"]',
                        HEARTH_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
                        HEARTH_LOG_FORMAT="json", HEARTH_LOG_LEVEL="info")
    try:
        yield live, name
    finally:
        stop_server(live)
        _drop_pg_database(pg_admin_url, name)


def json_lines(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


# What the first start prints for a person to copy, once: not a log line.
KEY_NOTICE = ("Hearth created its first keys", "  project key (", "  admin key (")


def test_json_log_lines_carry_the_request_id_and_project(failing: tuple[LiveServer, str]) -> None:
    live, _ = failing
    response = httpx.get(f"{live.base_url}/v1/models", headers={"Authorization": f"Bearer {live.api_key}"})
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    project = next(line.split("=", 1)[1] for line in (live.data_dir / "initial-keys.txt").read_text().splitlines()
                   if line.startswith("project="))
    deadline = time.monotonic() + 30
    lines: list[dict] = []
    while time.monotonic() < deadline and not lines:
        lines = [entry for entry in json_lines(live.log()) if entry.get("request_id") == request_id]
        time.sleep(0.1)
    assert lines, live.log()
    access = next(entry for entry in lines if entry["logger"] == "uvicorn.access")
    assert access["project_id"] == project
    assert (access["method"], access["path"], access["status"]) == ("GET", "/v1/models", 200)
    assert access["level"] == "info" and access["time"].endswith("+00:00")
    # Everything the process logged is JSON, uvicorn's own lines included.
    others = [line for line in live.log().splitlines()
              if line.strip() and not line.startswith("{") and not line.startswith(KEY_NOTICE)]
    assert not others, others
    assert any(entry["logger"] == "uvicorn.error" for entry in json_lines(live.log()))


def test_ready_is_503_naming_the_models_then_the_database(failing: tuple[LiveServer, str],
                                                          pg_admin_url: str) -> None:
    live, name = failing
    response = httpx.get(f"{live.base_url}/ready", timeout=30)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"]["code"] == "not_ready" and body["error"]["type"] == "server_error"
    assert body["checks"]["models"] == {"ok": False, "reason": "not pulled: kokoro-82m",
                                        "models": {"kokoro-82m": "missing"}}
    assert body["checks"]["database"] == {"ok": True} and body["checks"]["blobs"] == {"ok": True}
    # Liveness is another matter: the process is up.
    assert httpx.get(f"{live.base_url}/health").status_code == 200

    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    response = httpx.get(f"{live.base_url}/ready", timeout=30)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["checks"]["database"]["ok"] is False
    assert "database" in body["error"]["message"] and "models" in body["error"]["message"]
    # The cause is logged for the operator, not shown to whoever asks.
    assert "127.0.0.1" not in response.text
    assert httpx.get(f"{live.base_url}/health").status_code == 200
    # Metrics still render (the job queue's gauge, read from the database, is left empty).
    assert {"hearth_http_requests", "process_cpu_seconds", "hearth_jobs"} <= families(live.base_url)
    assert any(entry.get("logger") == "hearth.ops" and "database" in entry["message"]
               for entry in json_lines(live.log()))
