"""The usage meter, and the bucket queries over what it writes, on SQLite and PostgreSQL.

Every test meters an organization of its own, so the tests of a backend share
one database without seeing each other's events. Nothing waits on the clock:
the background flusher is observed by polling for its result, and the
current time is patched where a query depends on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.exc import IntegrityError, OperationalError

from hearth.accounting import usage_queries
from hearth.accounting.meter import DatabaseMeter, Meter, RecordingMeter, UsageEvent
from hearth.accounting.usage_queries import InvalidUsageQuery, UsageFilters, UsageResult, usage_buckets
from hearth.caller import Caller
from hearth.store.db import Database
from hearth.store.ids import new_id
from hearth.store.tables import UsageRecord
from tests.storage_backends import _drop_pg_database, _fresh_pg_database

T0 = 1_700_000_000
HOUR = 3_600


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('usage') / 'hearth.db'}"
    else:
        admin = request.getfixturevalue("pg_admin_url")
        name = _fresh_pg_database(admin)
        request.addfinalizer(lambda: _drop_pg_database(admin, name))
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    database = Database(url)
    database.migrate()
    yield database
    database.dispose()


def new_caller(organization_id: str | None = None) -> Caller:
    return Caller(organization_id=organization_id or new_id("org_"), project_id=new_id("proj_"),
                  api_key_id=new_id("key_"))


@pytest.fixture
def caller() -> Caller:
    return new_caller()


def chat(caller: Caller, **fields: Any) -> UsageEvent:
    return UsageEvent(caller, kind="completions", endpoint="/v1/chat/completions", **{"model": "m", **fields})


def stored(db: Database, caller: Caller) -> list[UsageRecord]:
    with db.session() as session:
        query = select(UsageRecord).where(UsageRecord.organization_id == caller.organization_id)
        return list(session.scalars(query.order_by(UsageRecord.id)))


def write(db: Database, *events: UsageEvent) -> None:
    meter = DatabaseMeter(db)
    for usage in events:
        meter.record(usage)
    assert meter.flush()


def eventually(condition: Callable[[], bool]) -> None:
    """Poll for what the background flusher is expected to do; fails only if it never happens."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the flusher did not write in 10 seconds"
        time.sleep(0.01)


def is_usage_insert(statement: str) -> bool:
    return statement.startswith("INSERT INTO usage_events")


@contextmanager
def counted_inserts(engine: Engine) -> Iterator[list[str]]:
    """The INSERT statements sent while the block runs."""
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if is_usage_insert(statement):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


@contextmanager
def failing_inserts(engine: Engine, error: Exception, times: int) -> Iterator[None]:
    """The next ``times`` usage INSERTs fail with ``error``, as if the database had."""
    left = [times]

    def fail(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if is_usage_insert(statement) and left[0] > 0:
            left[0] -= 1
            raise error

    event.listen(engine, "before_cursor_execute", fail)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", fail)


def database_down() -> OperationalError:
    return OperationalError("INSERT INTO usage_events", None, Exception("connection refused"))


# --- recording -------------------------------------------------------------------------------------------------


def test_an_event_counts_one_request_and_nothing_it_does_not_name(caller: Caller) -> None:
    before = int(time.time())
    usage = UsageEvent(caller, kind="audio_speeches", endpoint="/v1/audio/speech", model="tts-1", characters=42)
    assert usage.requests == 1 and usage.characters == 42
    assert usage.input_tokens == usage.output_tokens == usage.images == usage.bytes == 0
    assert usage.seconds == 0.0 and usage.batch is False
    assert before <= usage.created_at <= int(time.time())


def test_the_recording_meter_keeps_events_in_order(caller: Caller) -> None:
    recording = RecordingMeter()
    meter: Meter = recording  # what services are given
    first, second = chat(caller, input_tokens=1), chat(caller, input_tokens=2)
    meter.record(first)
    meter.record(second)
    assert recording.events == [first, second]


def test_events_recorded_from_many_threads_all_land(db: Database, caller: Caller) -> None:
    meter = DatabaseMeter(db, flush_interval=0.01, max_batch=50)
    meter.start()

    def record_many(model: str) -> None:
        for tokens in range(125):
            meter.record(chat(caller, model=model, input_tokens=tokens))

    threads = [threading.Thread(target=record_many, args=(f"m{index}",)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    meter.close()

    rows = stored(db, caller)
    assert len(rows) == 1_000
    for index in range(8):
        assert sorted(row.input_tokens for row in rows if row.model == f"m{index}") == list(range(125))


def test_a_batch_is_one_insert(db: Database, caller: Caller) -> None:
    meter = DatabaseMeter(db, max_batch=256)
    for tokens in range(600):
        meter.record(chat(caller, input_tokens=tokens))
    with counted_inserts(db.engine) as statements:
        assert meter.flush()
    assert len(statements) == 3  # 256 + 256 + 88
    assert [row.input_tokens for row in stored(db, caller)] == list(range(600))


def test_a_full_batch_wakes_the_flusher(db: Database, caller: Caller) -> None:
    meter = DatabaseMeter(db, flush_interval=3_600, max_batch=10)
    meter.start()
    for _ in range(10):
        meter.record(chat(caller))
    eventually(lambda: len(stored(db, caller)) == 10)
    meter.close()


def test_close_writes_what_is_left(db: Database, caller: Caller) -> None:
    meter = DatabaseMeter(db, flush_interval=3_600)
    meter.start()
    for _ in range(3):
        meter.record(chat(caller))
    meter.close()
    assert len(stored(db, caller)) == 3


def test_a_failed_write_is_kept_and_retried_without_loss(db: Database, caller: Caller) -> None:
    meter = DatabaseMeter(db)
    with failing_inserts(db.engine, database_down(), times=1):
        for tokens in range(3):
            meter.record(chat(caller, input_tokens=tokens))
        assert not meter.flush()
        assert stored(db, caller) == []
        for tokens in range(3, 5):
            meter.record(chat(caller, input_tokens=tokens))
        assert meter.flush()
    assert [row.input_tokens for row in stored(db, caller)] == [0, 1, 2, 3, 4]


def test_the_flusher_retries_after_a_failure(db: Database, caller: Caller) -> None:
    meter = DatabaseMeter(db, flush_interval=0.01)
    with failing_inserts(db.engine, database_down(), times=2):
        meter.start()
        for _ in range(3):
            meter.record(chat(caller))
        eventually(lambda: len(stored(db, caller)) == 3)
    meter.close()


def test_an_outage_drops_the_oldest_events_past_the_bound(db: Database, caller: Caller) -> None:
    meter = DatabaseMeter(db, max_batch=2, max_buffered=5)
    with failing_inserts(db.engine, database_down(), times=1_000):
        for tokens in range(8):
            meter.record(chat(caller, input_tokens=tokens))
        assert not meter.flush()
    assert meter.dropped == 3
    assert meter.flush()
    assert [row.input_tokens for row in stored(db, caller)] == [3, 4, 5, 6, 7]


def test_a_refused_batch_is_dropped_and_later_events_still_land(db: Database, caller: Caller) -> None:
    meter = DatabaseMeter(db, max_batch=2)
    refused = IntegrityError("INSERT INTO usage_events", None, Exception("invalid row"))
    with failing_inserts(db.engine, refused, times=1):
        for tokens in range(4):
            meter.record(chat(caller, input_tokens=tokens))
        assert meter.flush()
    assert [row.input_tokens for row in stored(db, caller)] == [2, 3]


# --- reading back in buckets -----------------------------------------------------------------------------------


def totals(result: UsageResult) -> tuple[int, int, int, int]:
    return result.num_model_requests, result.input_tokens, result.output_tokens, result.input_cached_tokens


def test_minute_buckets_grouped_by_project_and_model(db: Database) -> None:
    first = new_caller()
    second = new_caller(first.organization_id)
    write(db,
          chat(first, model="m1", input_tokens=10, output_tokens=1, created_at=T0 + 5),
          chat(first, model="m1", input_tokens=20, output_tokens=2, input_cached_tokens=5, created_at=T0 + 30),
          chat(second, model="m1", input_tokens=7, created_at=T0 + 70),
          chat(first, model="m2", input_tokens=1, created_at=T0 + 200))

    page = usage_buckets(db, organization_id=first.organization_id, kinds=["completions"], start_time=T0,
                         end_time=T0 + 240, bucket_width="1m", group_by=["project_id", "model"])

    assert [(bucket.start_time, bucket.end_time) for bucket in page.buckets] == [
        (T0, T0 + 60), (T0 + 60, T0 + 120), (T0 + 120, T0 + 180), (T0 + 180, T0 + 240)]
    assert [[(r.project_id, r.model, *totals(r)) for r in bucket.results] for bucket in page.buckets] == [
        [(first.project_id, "m1", 2, 30, 3, 5)],
        [(second.project_id, "m1", 1, 7, 0, 0)],
        [],
        [(first.project_id, "m2", 1, 1, 0, 0)],
    ]
    assert page.buckets[0].results[0].api_key_id is None  # not grouped by
    assert (page.has_more, page.next_page) == (False, None)


def test_hour_and_day_buckets_sum_every_unit(db: Database, caller: Caller) -> None:
    def transcription(seconds: float, created_at: int) -> UsageEvent:
        return UsageEvent(caller, kind="audio_transcriptions", endpoint="/v1/audio/transcriptions",
                          model="whisper-1", seconds=seconds, input_audio_tokens=3, created_at=created_at)

    write(db, transcription(1.5, T0 + 10), transcription(2.25, T0 + HOUR + 10), transcription(4.0, T0 + 3 * HOUR))
    query: dict[str, Any] = {"organization_id": caller.organization_id, "kinds": ["audio_transcriptions"],
                             "start_time": T0}

    hours = usage_buckets(db, **query, end_time=T0 + 4 * HOUR, bucket_width="1h")
    assert [[r.seconds for r in bucket.results] for bucket in hours.buckets] == [[1.5], [2.25], [], [4.0]]

    (day,) = usage_buckets(db, **query, end_time=T0 + 24 * HOUR, bucket_width="1d").buckets
    (result,) = day.results
    assert (day.start_time, day.end_time) == (T0, T0 + 24 * HOUR)
    assert (result.num_model_requests, result.seconds, result.input_audio_tokens) == (3, 7.75, 9)
    assert type(result.num_model_requests) is int and type(result.seconds) is float
    assert result.model is None and result.project_id is None


def test_kinds_and_filters_narrow_what_is_summed(db: Database) -> None:
    first = new_caller()
    second = new_caller(first.organization_id)
    write(db,
          chat(first, model="m1", input_tokens=1, created_at=T0),
          chat(second, model="m2", input_tokens=10, batch=True, created_at=T0),
          UsageEvent(first, kind="embeddings", endpoint="/v1/embeddings", model="e1", input_tokens=100,
                     created_at=T0),
          chat(new_caller(), input_tokens=1_000, created_at=T0))  # another organization

    def input_tokens(kinds: list[Any] | None = None, **filters: Any) -> int:
        page = usage_buckets(db, organization_id=first.organization_id, kinds=kinds or ["completions"],
                             start_time=T0, end_time=T0 + 60, bucket_width="1m", filters=UsageFilters(**filters))
        return sum(result.input_tokens for bucket in page.buckets for result in bucket.results)

    assert input_tokens() == 11
    assert input_tokens(["completions", "embeddings"]) == 111
    assert input_tokens(project_ids=[first.project_id]) == 1
    assert input_tokens(api_key_ids=[second.api_key_id]) == 10
    assert input_tokens(models=["m2", "e1"]) == 10
    assert input_tokens(batch=True) == 10
    assert input_tokens(batch=False) == 1
    assert input_tokens(user_ids=["user_nobody"]) == 0


def test_grouping_by_batch_gives_booleans(db: Database, caller: Caller) -> None:
    write(db, chat(caller, created_at=T0), chat(caller, batch=True, created_at=T0), chat(caller, created_at=T0))
    (bucket,) = usage_buckets(db, organization_id=caller.organization_id, kinds=["completions"], start_time=T0,
                              end_time=T0 + 60, bucket_width="1m", group_by=["batch"]).buckets
    assert [(result.batch, result.num_model_requests) for result in bucket.results] == [(False, 2), (True, 1)]
    assert all(type(result.batch) is bool for result in bucket.results)


def test_end_time_is_exclusive_and_ends_the_last_bucket(db: Database, caller: Caller) -> None:
    write(db, chat(caller, created_at=T0 - 1), chat(caller, created_at=T0), chat(caller, created_at=T0 + 89),
          chat(caller, created_at=T0 + 90))
    page = usage_buckets(db, organization_id=caller.organization_id, kinds=["completions"], start_time=T0,
                         end_time=T0 + 90, bucket_width="1m")
    assert [(b.start_time, b.end_time, [r.num_model_requests for r in b.results]) for b in page.buckets] == [
        (T0, T0 + 60, [1]), (T0 + 60, T0 + 90, [1])]


def test_a_long_range_comes_in_pages_of_buckets(db: Database, caller: Caller) -> None:
    write(db, chat(caller, created_at=T0 + 3 * HOUR + 1))
    query: dict[str, Any] = {"organization_id": caller.organization_id, "kinds": ["completions"], "start_time": T0,
                             "end_time": T0 + 5 * HOUR, "bucket_width": "1h", "limit": 2}
    pages = [usage_buckets(db, **query)]
    while pages[-1].has_more:
        pages.append(usage_buckets(db, **query, page=pages[-1].next_page))

    assert [[bucket.start_time for bucket in page.buckets] for page in pages] == [
        [T0, T0 + HOUR], [T0 + 2 * HOUR, T0 + 3 * HOUR], [T0 + 4 * HOUR]]
    assert [len(bucket.results) for bucket in pages[1].buckets] == [0, 1]
    assert pages[-1].next_page is None


def test_without_end_time_the_range_ends_with_the_current_bucket(db: Database, caller: Caller,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(usage_queries, "now", lambda: T0 + 150)
    page = usage_buckets(db, organization_id=caller.organization_id, kinds=["completions"], start_time=T0,
                         bucket_width="1m")
    assert [(bucket.start_time, bucket.end_time) for bucket in page.buckets] == [
        (T0, T0 + 60), (T0 + 60, T0 + 120), (T0 + 120, T0 + 180)]
    assert not page.has_more


@pytest.mark.parametrize(("arguments", "param"), [
    ({"bucket_width": "1w"}, "bucket_width"),
    ({"group_by": ["kind"]}, "group_by"),
    ({"limit": 0}, "limit"),
    ({"limit": 32}, "limit"),
    ({"end_time": T0}, "end_time"),
    ({"page": "not a cursor"}, "page"),
])
def test_invalid_arguments_name_their_parameter(db: Database, arguments: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidUsageQuery) as raised:
        usage_buckets(db, **{"organization_id": "org_x", "kinds": ["completions"], "start_time": T0, **arguments})
    assert raised.value.param == param


def test_a_cursor_belongs_to_its_query(db: Database) -> None:
    query: dict[str, Any] = {"organization_id": "org_x", "kinds": ["completions"], "end_time": T0 + HOUR,
                             "bucket_width": "1m", "limit": 1}
    cursor = usage_buckets(db, **query, start_time=T0).next_page
    assert cursor is not None
    with pytest.raises(InvalidUsageQuery) as raised:
        usage_buckets(db, **query, start_time=T0 + 30, page=cursor)  # not on a bucket boundary of this query
    assert raised.value.param == "page"
