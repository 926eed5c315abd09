"""The Usage and Costs APIs, computed from the meter's ``usage_events``.

Each usage endpoint is one kind of event, summed per bucket by
``hearth.accounting.usage_queries`` and shaped as that endpoint's result
object. Costs are the same sums priced by the settings' price table
(``HEARTH_PRICES``): local models cost nothing unless an operator prices
them, so by default every amount is 0. Fine-tuning has no usage endpoint in
the API; the tokens a job trained on are a line item of the costs
(``<model>, training tokens``, priced as ``training_tokens``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from hearth.accounting.meter import UsageKind
from hearth.accounting.usage_queries import InvalidUsageQuery, UsageFilters, UsageResult, usage_buckets
from hearth.caller import OrganizationCaller
from hearth.errors import InvalidRequest
from hearth.organization.protocol import UsageBucket, UsagePage
from hearth.settings import Settings
from hearth.store.db import Database

# Per endpoint: the result's object name, its fields (result field <- summed unit), and what it may be
# grouped and filtered by.
_IDENTITY = ("project_id", "user_id", "api_key_id", "model")
SHAPES: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "completions": ({"input_tokens": "input_tokens", "output_tokens": "output_tokens",
                     "input_cached_tokens": "input_cached_tokens", "input_audio_tokens": "input_audio_tokens",
                     "output_audio_tokens": "output_audio_tokens", "num_model_requests": "num_model_requests"},
                    (*_IDENTITY, "batch")),
    "embeddings": ({"input_tokens": "input_tokens", "num_model_requests": "num_model_requests"}, _IDENTITY),
    "moderations": ({"input_tokens": "input_tokens", "num_model_requests": "num_model_requests"}, _IDENTITY),
    "images": ({"images": "images", "num_model_requests": "num_model_requests"}, (*_IDENTITY, "size", "source")),
    "audio_speeches": ({"characters": "characters", "num_model_requests": "num_model_requests"}, _IDENTITY),
    "audio_transcriptions": ({"seconds": "seconds", "num_model_requests": "num_model_requests"}, _IDENTITY),
    "vector_stores": ({"usage_bytes": "bytes"}, ("project_id",)),
    # `num_sessions` is the newer reference's name, `sessions` the 2024 one's.
    "code_interpreter_sessions": ({"num_sessions": "sessions", "sessions": "sessions"}, ("project_id",)),
}

# How each unit is priced in the price table, and the size of one priced quantity of it.
PRICE_UNITS: dict[str, float] = {
    "input_tokens": 1e6, "input_cached_tokens": 1e6, "output_tokens": 1e6, "input_audio_tokens": 1e6,
    "output_audio_tokens": 1e6, "characters": 1e6, "seconds": 60.0, "images": 1.0, "sessions": 1.0,
    "bytes": float(1 << 30), "training_tokens": 1e6,
}
# The units each kind of usage is billed by.
BILLED: dict[str, tuple[str, ...]] = {
    "completions": ("input_tokens", "input_cached_tokens", "output_tokens", "input_audio_tokens",
                    "output_audio_tokens"),
    "embeddings": ("input_tokens",), "moderations": ("input_tokens",), "images": ("images",),
    "audio_speeches": ("characters",), "audio_transcriptions": ("seconds",), "vector_stores": ("bytes",),
    "code_interpreter_sessions": ("sessions",), "fine_tuning": ("input_tokens",),
}
# A unit priced (and named in line items) differently for one kind: the tokens a fine-tuning job
# trained on are recorded as its input tokens.
PRICED_AS: dict[tuple[str, str], str] = {("fine_tuning", "input_tokens"): "training_tokens"}


@dataclass(frozen=True)
class UsageQuery:
    start_time: int
    end_time: int | None = None
    bucket_width: str = "1d"
    project_ids: Sequence[str] = ()
    user_ids: Sequence[str] = ()
    api_key_ids: Sequence[str] = ()
    models: Sequence[str] = ()
    sizes: Sequence[str] = ()
    sources: Sequence[str] = ()
    batch: bool | None = None
    group_by: Sequence[str] = ()
    limit: int | None = None
    page: str | None = None


def _unit_value(result: UsageResult, unit: str) -> float:
    return float(result.num_model_requests if unit == "num_model_requests" else getattr(result, unit))


class UsageService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    def usage(self, caller: OrganizationCaller, kind: str, query: UsageQuery) -> UsagePage:
        fields, groupable = SHAPES[kind]
        unknown = [name for name in query.group_by if name not in groupable]
        if unknown:
            raise InvalidRequest(f"Usage of {kind} cannot be grouped by {', '.join(unknown)}; it can be grouped by "
                                 f"{', '.join(groupable)}.", param="group_by")
        page = self._buckets(caller, [kind], query, query.group_by)  # type: ignore[list-item]
        buckets = []
        for bucket in page.buckets:
            results = []
            for result in bucket.results:
                body: dict[str, Any] = {"object": f"organization.usage.{kind}.result"}
                for name, unit in fields.items():
                    body[name] = round(_unit_value(result, unit))
                for name in groupable:
                    body[name] = getattr(result, name)
                results.append(body)
            buckets.append(UsageBucket(start_time=bucket.start_time, end_time=bucket.end_time, results=results))
        return UsagePage(data=buckets, has_more=page.has_more, next_page=page.next_page)

    def costs(self, caller: OrganizationCaller, query: UsageQuery) -> UsagePage:
        """Per day: the priced usage, in total or per project and/or line item (model and unit)."""
        if query.bucket_width != "1d":
            raise InvalidRequest("Costs are reported per day: bucket_width must be 1d.", param="bucket_width")
        unknown = [name for name in query.group_by if name not in ("project_id", "line_item")]
        if unknown:
            raise InvalidRequest(f"Costs cannot be grouped by {', '.join(unknown)}; they can be grouped by "
                                 "project_id and line_item.", param="group_by")
        if query.limit is not None and not 1 <= query.limit <= 180:
            raise InvalidRequest("limit must be between 1 and 180.", param="limit")
        # One day bucket holds up to 31 in usage queries; costs allow 180, so page here in runs of 31.
        per_kind = {kind: self._buckets(caller, [kind],  # type: ignore[list-item]
                                        replace(query, limit=min(query.limit or 7, 31)), ("project_id", "model"))
                    for kind in BILLED}
        first = next(iter(per_kind.values()))
        buckets = []
        for index, bucket in enumerate(first.buckets):
            totals: dict[tuple[str | None, str | None], list[float]] = defaultdict(lambda: [0.0, 0.0])
            for kind, page in per_kind.items():
                for result in page.buckets[index].results:
                    for unit in BILLED[kind]:
                        quantity = _unit_value(result, unit)
                        if not quantity:
                            continue
                        priced = PRICED_AS.get((kind, unit), unit)
                        price = self.settings.prices.get(result.model or "", {}).get(priced, 0.0)
                        key = (result.project_id if "project_id" in query.group_by else None,
                               f"{result.model}, {priced.replace('_', ' ')}" if "line_item" in query.group_by else None)
                        totals[key][0] += quantity / PRICE_UNITS[priced] * price
                        totals[key][1] += quantity
            if not totals and not query.group_by:
                totals[(None, None)] = [0.0, 0.0]
            results = [{"object": "organization.costs.result", "amount": {"value": round(amount, 10), "currency": "usd"},
                        "line_item": line_item, "project_id": project_id, "quantity": quantity if line_item else None}
                       for (project_id, line_item), (amount, quantity) in sorted(
                           totals.items(), key=lambda item: (item[0][0] or "", item[0][1] or ""))]
            buckets.append(UsageBucket(start_time=bucket.start_time, end_time=bucket.end_time, results=results))
        return UsagePage(data=buckets, has_more=first.has_more, next_page=first.next_page)

    def _buckets(self, caller: OrganizationCaller, kinds: list[UsageKind], query: UsageQuery,
                 group_by: Sequence[str]) -> Any:
        filters = UsageFilters(project_ids=query.project_ids, user_ids=query.user_ids,
                               api_key_ids=query.api_key_ids, models=query.models, sizes=query.sizes,
                               sources=query.sources, batch=query.batch)
        try:
            return usage_buckets(self.db, organization_id=caller.organization_id, kinds=kinds,
                                 start_time=query.start_time, end_time=query.end_time,
                                 bucket_width=query.bucket_width, group_by=group_by, filters=filters,
                                 limit=query.limit, page=query.page)
        except InvalidUsageQuery as exc:
            raise InvalidRequest(str(exc), param=exc.param) from None
