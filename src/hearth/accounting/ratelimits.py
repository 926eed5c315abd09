"""Per-project, per-model rate limits: requests and tokens per minute, requests per day, images.

Counters are fixed windows of the ``limits`` library, in this process's
memory by default or in Redis (``HEARTH_REDIS_URL``), where every server
process shares them: Redis increments a window atomically, so however many
processes admit requests at once, no more than the limit get through.

What is counted when:

- a request is counted as it is admitted to a model (``RateLimiter.admit``),
  before any work; one over the per-minute or per-day limit is refused with
  429 ``rate_limit_exceeded`` and ``Retry-After``;
- tokens (and images) are known only once the model has answered, so they
  are counted after the fact, from the usage event the service records
  (``LimitedMeter``); a request is refused while the window's tokens are
  spent. A request admitted with tokens to spare may overshoot the limit by
  its own size, as OpenAI's limits also allow.

The project's limits are read from the database at most once per
``cache_seconds`` per process (``ProjectLimits``); a change made through this
process applies at once, one made through another within that time.

Who is asking comes from the request's ``RateLimitScope``, which the HTTP
layer opens per request and fills with the caller; work with no scope (batch
lines, background runs) is not limited here. The outcome of the last check
is left on the scope, for the HTTP layer's ``x-ratelimit-*`` headers.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, fields

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from hearth.accounting.meter import Meter, UsageEvent
from hearth.caller import Caller
from hearth.errors import RateLimited
from hearth.store import organization as repo
from hearth.store.db import Database

log = logging.getLogger("hearth.accounting")


@dataclass(frozen=True)
class ModelLimits:
    """One project's limits for one model, as the API names them; None is no limit."""

    max_requests_per_1_minute: int | None = None
    max_tokens_per_1_minute: int | None = None
    max_images_per_1_minute: int | None = None
    max_audio_megabytes_per_1_minute: int | None = None
    max_requests_per_1_day: int | None = None
    batch_1_day_max_input_tokens: int | None = None

    def merged(self, overrides: object) -> ModelLimits:
        """These limits with every field ``overrides`` sets (not None) replaced."""
        values = {f.name: getattr(overrides, f.name, None) for f in fields(self)}
        return ModelLimits(**{name: value if value is not None else getattr(self, name)
                              for name, value in values.items()})


@dataclass
class LimitState:
    """Where one request left a window: its limit, what remains, and seconds until it resets."""

    limit: int
    remaining: int
    reset: float


@dataclass
class RateLimitScope:
    """One request's view of rate limiting: who asks (set by authentication), and the outcome."""

    caller: Caller | None = None
    # An audio upload's declared size, counted against the audio megabytes a minute.
    upload_bytes: int | None = None
    requests: LimitState | None = None
    tokens: LimitState | None = None


current_scope: ContextVar[RateLimitScope | None] = ContextVar("hearth_rate_limit_scope", default=None)


class ProjectLimits:
    """Each project's limits per model, from the database, cached in process for a few seconds."""

    def __init__(self, db: Database, defaults: ModelLimits, cache_seconds: float = 5.0) -> None:
        self.db = db
        self.defaults = defaults
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, dict[str, ModelLimits]]] = {}
        self._lock = threading.Lock()

    def for_model(self, project_id: str, model: str) -> ModelLimits:
        return self.for_project(project_id).get(model, self.defaults)

    def for_project(self, project_id: str) -> dict[str, ModelLimits]:
        """The project's overridden models (the others have the defaults)."""
        with self._lock:
            cached = self._cache.get(project_id)
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        with self.db.session() as session:
            rows = repo.rate_limit_rows(session, [project_id])
            loaded = {row.model: self.defaults.merged(row) for row in rows}
        with self._lock:
            self._cache[project_id] = (time.monotonic(), loaded)
        return loaded

    def invalidate(self, project_id: str) -> None:
        with self._lock:
            self._cache.pop(project_id, None)


class RateLimiter:
    """Counts requests, tokens and images per project and model, and refuses what is over."""

    def __init__(self, limits: ProjectLimits, storage_uri: str = "memory://",
                 canonical: Callable[[str], str | None] = lambda name: name) -> None:
        self.limits = limits
        storage = storage_from_string(storage_uri)
        if not isinstance(storage, Storage):
            raise TypeError(f"{storage_uri} names an asynchronous storage; use memory:// or redis://")
        self.storage = storage
        self.windows = FixedWindowRateLimiter(self.storage)
        # A check that waits on the network (Redis: a few round trips, ~0.35 ms measured on loopback)
        # is run off the event loop; one in memory (~30 us) is cheaper run in place.
        self.remote = not storage_uri.startswith("memory://")
        # The catalog id a model name (or alias) means, so that every name of a model shares its limits.
        self.canonical = canonical

    def admit(self, model: str) -> None:
        """Count one request to ``model`` for the current scope's caller, or raise ``RateLimited``."""
        scope = current_scope.get()
        if scope is None or scope.caller is None:
            return
        project = scope.caller.project_id
        limits = self.limits.for_model(project, model)
        try:
            self._admit(scope, project, model, limits)
        except RateLimited:
            raise
        except Exception:
            log.exception("rate limit counters are unavailable; admitting the request unchecked")

    def _admit(self, scope: RateLimitScope, project: str, model: str, limits: ModelLimits) -> None:
        if limits.max_tokens_per_1_minute is not None:
            scope.tokens = self._state(RateLimitItemPerMinute(limits.max_tokens_per_1_minute), project, model, "tokens")
            if scope.tokens.remaining <= 0:
                raise self._refusal(scope, "tokens per min (TPM)", model, scope.tokens)
        if limits.max_images_per_1_minute is not None:
            images = self._state(RateLimitItemPerMinute(limits.max_images_per_1_minute), project, model, "images")
            if images.remaining <= 0:
                raise self._refusal(scope, "images per min (IPM)", model, images)
        if limits.max_requests_per_1_minute is not None:
            scope.requests = self._hit(RateLimitItemPerMinute(limits.max_requests_per_1_minute), project, model,
                                       "requests")
            if scope.requests.remaining < 0:
                scope.requests.remaining = 0
                raise self._refusal(scope, "requests per min (RPM)", model, scope.requests)
        if limits.max_requests_per_1_day is not None:
            daily = self._hit(RateLimitItemPerDay(limits.max_requests_per_1_day), project, model, "requests")
            if daily.remaining < 0:
                daily.remaining = 0
                raise self._refusal(scope, "requests per day (RPD)", model, daily)
        if limits.max_audio_megabytes_per_1_minute is not None and scope.upload_bytes:
            megabytes = math.ceil(scope.upload_bytes / 1_000_000)
            audio = self._hit(RateLimitItemPerMinute(limits.max_audio_megabytes_per_1_minute), project, model,
                              "audio_megabytes", cost=megabytes)
            if audio.remaining < 0:
                audio.remaining = 0
                raise self._refusal(scope, "audio megabytes per min", model, audio)

    def consume(self, event: UsageEvent) -> None:
        """Count what a request used, once it is known (tokens, images); batch work is not counted."""
        if event.batch or event.model is None:
            return
        model = self.canonical(event.model) or event.model
        project = event.caller.project_id
        tokens = event.input_tokens + event.output_tokens
        if not tokens and not event.images:
            return
        try:
            limits = self.limits.for_model(project, model)
            if tokens and limits.max_tokens_per_1_minute is not None:
                self.windows.hit(RateLimitItemPerMinute(limits.max_tokens_per_1_minute), project, model, "tokens",
                                 cost=tokens)
            if event.images and limits.max_images_per_1_minute is not None:
                self.windows.hit(RateLimitItemPerMinute(limits.max_images_per_1_minute), project, model, "images",
                                 cost=event.images)
        except Exception:
            log.exception("could not count usage against rate limits")

    def _hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> LimitState:
        """Count ``cost``; ``remaining`` is negative when that went over the limit.

        The count is the one the store's atomic increment returned (what the fixed-window
        strategy's ``hit`` compares), not a later read that other processes' hits may have raised.
        """
        used = self.storage.incr(item.key_for(*identifiers), item.get_expiry(), amount=cost)
        return LimitState(item.amount, item.amount - used, self._reset(item, *identifiers))

    def _state(self, item: RateLimitItem, *identifiers: str) -> LimitState:
        stats = self.windows.get_window_stats(item, *identifiers)
        return LimitState(item.amount, stats.remaining, max(stats.reset_time - time.time(), 0.0))

    def _reset(self, item: RateLimitItem, *identifiers: str) -> float:
        return max(self.storage.get_expiry(item.key_for(*identifiers)) - time.time(), 0.0)

    @staticmethod
    def _refusal(scope: RateLimitScope, what: str, model: str, state: LimitState) -> RateLimited:
        caller = scope.caller
        project = caller.project_id if caller else "?"
        return RateLimited(
            f"Rate limit reached for {model} in project {project} on {what}: Limit {state.limit}, "
            f"Used {state.limit - state.remaining}. Please try again in {format_duration(state.reset)}.",
            retry_after=max(1, math.ceil(state.reset)))


@dataclass
class LimitedMeter:
    """A meter that also counts each event's tokens and images against the rate limits."""

    inner: Meter
    limiter: RateLimiter

    def record(self, event: UsageEvent) -> None:
        self.inner.record(event)
        self.limiter.consume(event)


def format_duration(seconds: float) -> str:
    """A reset time as OpenAI writes it: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(int(seconds * 1000), 0)}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{rest}s"


def rate_limit_headers(scope: RateLimitScope) -> list[tuple[str, str]]:
    """The ``x-ratelimit-*`` headers for what the request's checks found."""
    headers: list[tuple[str, str]] = []
    for name, state in (("requests", scope.requests), ("tokens", scope.tokens)):
        if state is not None:
            headers += [(f"x-ratelimit-limit-{name}", str(state.limit)),
                        (f"x-ratelimit-remaining-{name}", str(max(state.remaining, 0))),
                        (f"x-ratelimit-reset-{name}", format_duration(state.reset))]
    return headers
