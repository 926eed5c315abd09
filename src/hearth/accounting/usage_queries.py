"""Usage summed per time bucket: what the Usage API endpoints report.

A query covers ``[start_time, end_time)`` in buckets of one minute, hour or
day, aligned to ``start_time``. The database does the summing: an event's
bucket is ``(created_at - first) // width``, integer arithmetic that SQLite and
PostgreSQL evaluate alike, so each bucket and group comes back as one row.
Buckets without usage are filled in here, because the API lists them too.

A page is a run of at most ``limit`` consecutive buckets; its cursor is the
start of the next bucket, so paging needs no server-side state. Nothing here
knows HTTP: a bad argument raises ``InvalidUsageQuery`` naming the parameter,
for the HTTP layer to report.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Row, func, select

from hearth.accounting.meter import UNITS, UsageKind
from hearth.store.db import Database
from hearth.store.ids import now
from hearth.store.tables import UsageRecord

BUCKET_SECONDS: dict[str, int] = {"1m": 60, "1h": 3_600, "1d": 86_400}
# Buckets per page when the caller names no limit, and the most a page may hold.
DEFAULT_LIMITS: dict[str, int] = {"1m": 60, "1h": 24, "1d": 7}
MAX_LIMITS: dict[str, int] = {"1m": 1_440, "1h": 168, "1d": 31}
GROUP_FIELDS = ("project_id", "user_id", "api_key_id", "model", "batch", "size", "source")


class InvalidUsageQuery(ValueError):
    """A query argument out of range; ``param`` names it as the API does."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class UsageFilters:
    """Restrict a query to these values; an empty collection (or ``batch=None``) restricts nothing."""

    project_ids: Collection[str] = ()
    user_ids: Collection[str] = ()
    api_key_ids: Collection[str] = ()
    models: Collection[str] = ()
    sizes: Collection[str] = ()
    sources: Collection[str] = ()
    batch: bool | None = None


@dataclass(frozen=True)
class UsageResult:
    """One group's totals within a bucket; the fields the query did not group by are None."""

    num_model_requests: int
    input_tokens: int
    output_tokens: int
    input_cached_tokens: int
    input_audio_tokens: int
    output_audio_tokens: int
    characters: int
    seconds: float
    images: int
    sessions: int
    bytes: int
    project_id: str | None = None
    user_id: str | None = None
    api_key_id: str | None = None
    model: str | None = None
    batch: bool | None = None
    size: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class UsageBucket:
    start_time: int
    end_time: int
    results: list[UsageResult]


@dataclass(frozen=True)
class UsagePage:
    buckets: list[UsageBucket]
    has_more: bool
    # The ``page`` argument that continues after these buckets; None on the last page.
    next_page: str | None


def usage_buckets(db: Database, *, organization_id: str, kinds: Collection[UsageKind], start_time: int,
                  end_time: int | None = None, bucket_width: str = "1d", group_by: Sequence[str] = (),
                  filters: UsageFilters = UsageFilters(), limit: int | None = None,
                  page: str | None = None) -> UsagePage:
    """One page of ``organization_id``'s usage of ``kinds``, summed per bucket and group.

    Without ``end_time`` the range runs to the end of the bucket that holds
    the present moment; with one, the last bucket ends at ``end_time``.
    """
    width = _bucket_seconds(bucket_width)
    groups = _group_fields(group_by)
    count = _page_size(limit, bucket_width)
    end = end_time if end_time is not None else _end_of_current_bucket(start_time, width)
    if end <= start_time:
        raise InvalidUsageQuery("end_time", "end_time must be after start_time.")
    first = start_time if page is None else _decode_cursor(page, start_time, end, width)
    last = min(first + count * width, end)

    rows = _summed_rows(db, organization_id, kinds, first, last, width, groups, filters)
    buckets = [UsageBucket(start, min(start + width, last), []) for start in range(first, last, width)]
    for row in rows:
        buckets[row.bucket].results.append(_result(row, groups))
    has_more = last < end
    return UsagePage(buckets, has_more, _encode_cursor(last) if has_more else None)


def _summed_rows(db: Database, organization_id: str, kinds: Collection[str], first: int, last: int,
                 width: int, groups: Sequence[str], filters: UsageFilters) -> Sequence[Row]:
    bucket = ((UsageRecord.created_at - first) // width).label("bucket")
    columns = [getattr(UsageRecord, name) for name in groups]
    query = (
        select(bucket, *columns, *(func.sum(getattr(UsageRecord, unit)).label(unit) for unit in UNITS))
        .where(UsageRecord.organization_id == organization_id, UsageRecord.kind.in_(kinds),
               UsageRecord.created_at >= first, UsageRecord.created_at < last, *_conditions(filters))
        .group_by(bucket, *columns)
        .order_by(bucket, *(column.nulls_last() for column in columns))
    )
    with db.engine.connect() as connection:
        return connection.execute(query).all()


def _conditions(filters: UsageFilters) -> list[ColumnElement[bool]]:
    restricted = [
        (UsageRecord.project_id, filters.project_ids), (UsageRecord.user_id, filters.user_ids),
        (UsageRecord.api_key_id, filters.api_key_ids), (UsageRecord.model, filters.models),
        (UsageRecord.size, filters.sizes), (UsageRecord.source, filters.sources),
    ]
    conditions: list[ColumnElement[bool]] = [column.in_(values) for column, values in restricted if values]
    if filters.batch is not None:
        conditions.append(UsageRecord.batch == filters.batch)
    return conditions


def _result(row: Row, groups: Sequence[str]) -> UsageResult:
    values = row._mapping
    # PostgreSQL sums integers as NUMERIC, which arrives as Decimal.
    return UsageResult(
        num_model_requests=int(values["requests"]),
        input_tokens=int(values["input_tokens"]),
        output_tokens=int(values["output_tokens"]),
        input_cached_tokens=int(values["input_cached_tokens"]),
        input_audio_tokens=int(values["input_audio_tokens"]),
        output_audio_tokens=int(values["output_audio_tokens"]),
        characters=int(values["characters"]),
        seconds=float(values["seconds"]),
        images=int(values["images"]),
        sessions=int(values["sessions"]),
        bytes=int(values["bytes"]),
        **{name: values[name] for name in groups},
    )


def _bucket_seconds(bucket_width: str) -> int:
    if bucket_width not in BUCKET_SECONDS:
        raise InvalidUsageQuery("bucket_width", f"bucket_width must be one of {', '.join(BUCKET_SECONDS)}.")
    return BUCKET_SECONDS[bucket_width]


def _group_fields(group_by: Sequence[str]) -> list[str]:
    unknown = [name for name in group_by if name not in GROUP_FIELDS]
    if unknown:
        raise InvalidUsageQuery("group_by", f"Cannot group by {', '.join(unknown)}.")
    return [name for name in GROUP_FIELDS if name in group_by]


def _page_size(limit: int | None, bucket_width: str) -> int:
    if limit is None:
        return DEFAULT_LIMITS[bucket_width]
    if not 1 <= limit <= MAX_LIMITS[bucket_width]:
        raise InvalidUsageQuery("limit", f"limit must be between 1 and {MAX_LIMITS[bucket_width]} "
                                         f"for bucket_width {bucket_width}.")
    return limit


def _end_of_current_bucket(start_time: int, width: int) -> int:
    elapsed = max(now() - start_time, 0)
    return start_time + (elapsed // width + 1) * width


def _encode_cursor(bucket_start: int) -> str:
    return base64.urlsafe_b64encode(str(bucket_start).encode()).decode()


def _decode_cursor(page: str, start_time: int, end: int, width: int) -> int:
    try:
        bucket_start = int(base64.urlsafe_b64decode(page.encode()))
    except ValueError:
        bucket_start = None
    if bucket_start is None or not start_time <= bucket_start < end or (bucket_start - start_time) % width:
        raise InvalidUsageQuery("page", "page is not a cursor of this query.")
    return bucket_start
