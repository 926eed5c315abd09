"""The usage meter: every request that reaches a model or storage records one event here.

Recording must cost a request nothing it could notice, and must never fail it:
``record`` appends to an in-memory buffer under a lock and returns. A
background thread writes what has gathered, one INSERT per batch of up to
``max_batch`` events, every ``flush_interval`` seconds, or at once when a full
batch is waiting.

Why a thread and not an asyncio task: events come from the event loop and from
the model threads alike, and the same meter serves processes that run no loop
(a ``hearth worker``). A daemon thread waiting on a ``threading.Event`` needs
neither a loop nor hand-offs to one, and a slow database can never stall the
loop. ``close`` blocks while it writes what is left, so code on a loop calls it
through ``asyncio.to_thread``.

When a write fails:

- for a reason that may pass (the database is down, locked, or out of
  connections), the batch goes back to the front of the buffer and is retried
  at the next interval, so a transient failure loses nothing;
- the buffer is bounded (``max_buffered``): through a long outage the oldest
  events are dropped past that bound, and counted in ``dropped``, rather than
  memory growing without limit;
- a batch the database refuses as invalid would fail forever and hold back
  every later event, so it is dropped and logged.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import KW_ONLY, dataclass, field
from typing import Literal, Protocol

from sqlalchemy import insert
from sqlalchemy.exc import DataError, IntegrityError, NotSupportedError, ProgrammingError

from hearth import metrics
from hearth.caller import Caller
from hearth.store.db import Database
from hearth.store.ids import now
from hearth.store.tables import UsageRecord

log = logging.getLogger("hearth.accounting")

# What was used, named as the Usage API names its endpoints; ``files`` is storage the API does not report.
UsageKind = Literal[
    "completions", "embeddings", "moderations", "images", "audio_speeches", "audio_transcriptions",
    "vector_stores", "code_interpreter_sessions", "files", "fine_tuning",
]

# The quantities of an event that the Usage API sums, each a column of ``usage_events``.
UNITS = (
    "requests", "input_tokens", "output_tokens", "input_cached_tokens", "input_audio_tokens",
    "output_audio_tokens", "characters", "seconds", "images", "sessions", "bytes",
)

# Errors in the data rather than the database: retrying the same batch would fail the same way.
_REFUSED = (DataError, IntegrityError, NotSupportedError, ProgrammingError)


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """What one request used, on whose behalf, at which endpoint.

    ``requests`` counts the request itself (the Usage API's
    ``num_model_requests``); every other unit defaults to zero, so an event
    names only what its kind measures. ``seconds`` is audio duration, ``bytes``
    what the request stored, ``size`` and ``source`` describe generated images.
    """

    caller: Caller
    _: KW_ONLY
    kind: UsageKind
    endpoint: str
    model: str | None = None
    batch: bool = False
    size: str | None = None
    source: str | None = None
    requests: int = 1
    input_tokens: int = 0
    output_tokens: int = 0
    input_cached_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    characters: int = 0
    seconds: float = 0.0
    images: int = 0
    sessions: int = 0
    bytes: int = 0
    created_at: int = field(default_factory=now)


class Meter(Protocol):
    """What services record usage through."""

    def record(self, event: UsageEvent) -> None: ...


class RecordingMeter:
    """Keeps every event in a list, for tests of the services that record them."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def record(self, event: UsageEvent) -> None:
        self.events.append(event)


def _count(event: UsageEvent) -> None:
    """The event's tokens and audio in this process's Prometheus counters."""
    model = event.model or ""
    if event.input_tokens:
        metrics.TOKENS.labels(model, event.kind, "input").inc(event.input_tokens)
    if event.output_tokens:
        metrics.TOKENS.labels(model, event.kind, "output").inc(event.output_tokens)
    if event.seconds:
        metrics.AUDIO_SECONDS.labels(model, event.kind).inc(event.seconds)


class DatabaseMeter:
    """Buffers events and writes them to ``usage_events`` in batches, from a thread of its own."""

    def __init__(self, db: Database, *, flush_interval: float = 1.0, max_batch: int = 256,
                 max_buffered: int = 100_000) -> None:
        self._engine = db.engine
        self._flush_interval = flush_interval
        self._max_batch = max_batch
        self._max_buffered = max_buffered
        self._buffer: deque[UsageEvent] = deque()
        self._lock = threading.Lock()  # guards the buffer and ``dropped``
        self._writing = threading.Lock()  # one writer at a time: the flusher thread or a caller of flush()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def record(self, event: UsageEvent) -> None:
        """Buffer ``event``; returns at once, from any thread."""
        _count(event)
        with self._lock:
            self._buffer.append(event)
            self._trim()
            full = len(self._buffer) >= self._max_batch
        if full:
            self._wake.set()

    def start(self) -> None:
        """Start the thread that flushes in the background."""
        self._thread = threading.Thread(target=self._run, name="usage-meter", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the background thread, then write everything still buffered (blocks while it writes).

        Close after the last request has finished: an event recorded later
        stays buffered until someone calls ``flush``.
        """
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if not self.flush():
            log.error("%d usage events could not be written before shutdown", len(self._buffer))

    def flush(self) -> bool:
        """Write every buffered event now; False if a write failed and what is left stays buffered."""
        with self._writing:
            while batch := self._take():
                if not self._write(batch):
                    return False
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            if not self.flush():
                # The database is unavailable: wait out an interval even if a full batch is waiting.
                self._stop.wait(self._flush_interval)

    def _take(self) -> list[UsageEvent]:
        with self._lock:
            return [self._buffer.popleft() for _ in range(min(len(self._buffer), self._max_batch))]

    def _write(self, batch: list[UsageEvent]) -> bool:
        try:
            with self._engine.begin() as connection:
                connection.execute(insert(UsageRecord), [_row(event) for event in batch])
        except _REFUSED:
            log.exception("the database refused %d usage events; they are dropped", len(batch))
        except Exception as exc:  # noqa: BLE001 - anything else may pass: keep the batch for the next try
            with self._lock:
                self._buffer.extendleft(reversed(batch))
                self._trim()
                buffered, dropped = len(self._buffer), self.dropped
            log.warning("could not write usage events (%s); %d buffered for retry, %d dropped so far",
                        exc, buffered, dropped)
            return False
        return True

    def _trim(self) -> None:
        # Called with the lock held.
        while len(self._buffer) > self._max_buffered:
            self._buffer.popleft()
            self.dropped += 1


def _row(event: UsageEvent) -> dict[str, object]:
    caller = event.caller
    return {
        "created_at": event.created_at,
        "organization_id": caller.organization_id,
        "project_id": caller.project_id,
        "api_key_id": caller.api_key_id,
        "user_id": caller.user_id,
        "service_account_id": caller.service_account_id,
        "kind": event.kind,
        "endpoint": event.endpoint,
        "model": event.model,
        "batch": event.batch,
        "size": event.size,
        "source": event.source,
        **{unit: getattr(event, unit) for unit in UNITS},
    }
