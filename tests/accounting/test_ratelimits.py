"""The rate limiter alone: exact admission under concurrency, in memory and in Redis, tokens counted
after the fact, the headers' values, and the per-process cache of a project's limits."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hearth.accounting.meter import RecordingMeter, UsageEvent
from hearth.accounting.ratelimits import (
    LimitedMeter,
    ModelLimits,
    ProjectLimits,
    RateLimiter,
    RateLimitScope,
    current_scope,
    format_duration,
    rate_limit_headers,
)
from hearth.caller import Caller
from hearth.errors import RateLimited
from hearth.store.db import Database
from hearth.store.keys import bootstrap
from hearth.store.tables import ProjectRateLimitRow

REDIS_URL = "redis://127.0.0.1:6379/0"


class FixedLimits:
    """Every project has the same limits (stands in for the database-backed ``ProjectLimits``)."""

    def __init__(self, limits: ModelLimits) -> None:
        self.defaults = limits

    def for_model(self, project_id: str, model: str) -> ModelLimits:
        return self.defaults


def _caller() -> Caller:
    # A fresh project per test, so counters shared in Redis never carry over between runs.
    return Caller("org-test", f"proj_{secrets.token_hex(6)}", api_key_id="key_test")


def _limiter(limits: ModelLimits, uri: str = "memory://") -> RateLimiter:
    return RateLimiter(FixedLimits(limits), uri)  # type: ignore[arg-type]


def _admit(limiter: RateLimiter, caller: Caller, model: str = "m") -> RateLimitScope | RateLimited:
    scope = RateLimitScope(caller=caller)
    token = current_scope.set(scope)
    try:
        limiter.admit(model)
        return scope
    except RateLimited as exc:
        return exc
    finally:
        current_scope.reset(token)


def _redis_up() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(params=["memory", "redis"])
def storage_uri(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        if not _redis_up():
            pytest.skip("no Redis on 127.0.0.1:6379 (.ci/run starts one)")
        return REDIS_URL
    return "memory://"


def test_concurrent_requests_get_exactly_the_limit(storage_uri: str) -> None:
    # In Redis, three limiters over the same store stand for three server processes; in memory one
    # process has one.
    shared = _limiter(ModelLimits(max_requests_per_1_minute=25), storage_uri)
    limiters = [shared if storage_uri.startswith("memory") else
                _limiter(ModelLimits(max_requests_per_1_minute=25), storage_uri) for _ in range(3)]
    caller = _caller()
    start = threading.Barrier(12)

    def attempt(index: int) -> bool:
        if index < 12:
            start.wait()
        return isinstance(_admit(limiters[index % 3], caller), RateLimitScope)

    with ThreadPoolExecutor(12) as pool:
        admitted = list(pool.map(attempt, range(60)))
    assert sum(admitted) == 25
    refusal = _admit(limiters[0], caller)
    assert isinstance(refusal, RateLimited)
    assert refusal.status_code == 429 and refusal.code == "rate_limit_exceeded"
    assert 1 <= int(refusal.headers["Retry-After"]) <= 60
    assert "requests per min (RPM)" in refusal.message and "Limit 25" in refusal.message
    # Another project, or another model, has its own window.
    assert isinstance(_admit(limiters[0], _caller()), RateLimitScope)
    assert isinstance(_admit(limiters[0], caller, "other-model"), RateLimitScope)


def test_the_scope_carries_what_the_headers_report() -> None:
    limiter = _limiter(ModelLimits(max_requests_per_1_minute=3, max_tokens_per_1_minute=100))
    caller = _caller()
    scope = _admit(limiter, caller)
    assert isinstance(scope, RateLimitScope)
    headers = dict(rate_limit_headers(scope))
    assert headers["x-ratelimit-limit-requests"] == "3" and headers["x-ratelimit-remaining-requests"] == "2"
    assert headers["x-ratelimit-limit-tokens"] == "100" and headers["x-ratelimit-remaining-tokens"] == "100"
    assert headers["x-ratelimit-reset-requests"].endswith("s")


def test_tokens_are_counted_after_the_fact_and_then_refuse(storage_uri: str) -> None:
    limiter = _limiter(ModelLimits(max_requests_per_1_minute=100, max_tokens_per_1_minute=50), storage_uri)
    meter = LimitedMeter(RecordingMeter(), limiter)
    caller = _caller()
    assert isinstance(_admit(limiter, caller), RateLimitScope)
    meter.record(UsageEvent(caller, kind="completions", endpoint="/v1/chat/completions", model="m",
                            input_tokens=30, output_tokens=10))
    scope = _admit(limiter, caller)
    assert isinstance(scope, RateLimitScope) and scope.tokens and scope.tokens.remaining == 10
    # Batch work has limits of its own: it does not spend the online window.
    meter.record(UsageEvent(caller, kind="completions", endpoint="/v1/chat/completions", model="m",
                            input_tokens=500, batch=True))
    meter.record(UsageEvent(caller, kind="completions", endpoint="/v1/chat/completions", model="m",
                            input_tokens=15))
    refusal = _admit(limiter, caller)
    assert isinstance(refusal, RateLimited) and "tokens per min (TPM)" in refusal.message
    assert len(meter.inner.events) == 3  # type: ignore[attr-defined]


def test_daily_limits_and_no_scope() -> None:
    limiter = _limiter(ModelLimits(max_requests_per_1_minute=100, max_requests_per_1_day=2))
    caller = _caller()
    assert [isinstance(_admit(limiter, caller), RateLimitScope) for _ in range(3)] == [True, True, False]
    limiter.admit("m")  # outside a request's scope (a batch line, a background run): not limited


def test_audio_uploads_count_their_megabytes(storage_uri: str) -> None:
    limiter = _limiter(ModelLimits(max_requests_per_1_minute=100, max_audio_megabytes_per_1_minute=10), storage_uri)
    caller = _caller()

    def upload(size: int | None) -> RateLimitScope | RateLimited:
        scope = RateLimitScope(caller=caller, upload_bytes=size)
        token = current_scope.set(scope)
        try:
            limiter.admit("whisper")
            return scope
        except RateLimited as exc:
            return exc
        finally:
            current_scope.reset(token)

    # 3.5 MB counts as 4: two fit in 10 MB, the third does not; a request with no upload is not counted.
    outcomes = [upload(3_500_000), upload(3_500_000), upload(None), upload(3_500_000)]
    assert [isinstance(o, RateLimitScope) for o in outcomes] == [True, True, True, False]
    assert "audio megabytes per min" in outcomes[-1].message  # type: ignore[union-attr]


def test_a_counter_store_that_is_down_admits_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    limiter = _limiter(ModelLimits(max_requests_per_1_minute=1), "redis://127.0.0.1:1/0")
    assert isinstance(_admit(limiter, _caller()), RateLimitScope)
    assert "admitting the request unchecked" in caplog.text


@pytest.mark.parametrize(("seconds", "text"), [(0.02, "20ms"), (1.5, "1.5s"), (59.0, "59s"), (360, "6m0s"),
                                               (3725, "1h2m5s")])
def test_durations_are_written_as_openai_writes_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'hearth.db'}")
    database.migrate()
    yield database
    database.dispose()


def test_a_projects_limits_are_read_once_per_cache_period(db: Database) -> None:
    with db.session() as session:
        first = bootstrap(session)
        assert first is not None
        project = first.project.id
    limits = ProjectLimits(db, ModelLimits(max_requests_per_1_minute=10, max_tokens_per_1_minute=99),
                           cache_seconds=0.3)
    assert limits.for_model(project, "m").max_requests_per_1_minute == 10
    with db.session() as session:  # another process changes the limit
        session.add(ProjectRateLimitRow(project_id=project, model="m", max_requests_per_1_minute=3))
    assert limits.for_model(project, "m").max_requests_per_1_minute == 10
    time.sleep(0.35)
    assert limits.for_model(project, "m") == ModelLimits(max_requests_per_1_minute=3, max_tokens_per_1_minute=99)
