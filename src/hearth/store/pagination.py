"""Cursor pagination over any table with ``id`` and ``created_at`` columns.

Listings are ordered by (created_at, id), so a cursor is stable even when
objects share a timestamp; ``after``/``before`` name the object to page from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

Order = Literal["asc", "desc"]


@dataclass(frozen=True)
class PageRequest:
    limit: int
    order: Order = "desc"
    after: str | None = None
    before: str | None = None


class UnknownCursor(LookupError):
    """``after`` or ``before`` names no object the listing could contain."""

    def __init__(self, param: str, object_id: str) -> None:
        super().__init__(object_id)
        self.param = param
        self.object_id = object_id


def keyset_page(session: Session, stmt: Select, entity: Any,
                page: PageRequest) -> tuple[list[Any], bool]:
    """One page of ``stmt``'s rows and whether more follow in the listing order."""
    created, ident = entity.created_at, entity.id
    # Paging back from `before` walks the listing in reverse, then flips the page.
    backwards = page.before is not None and page.after is None
    ascending = (page.order == "asc") != backwards
    for param, cursor in (("after", page.after), ("before", page.before)):
        if cursor is None:
            continue
        at = session.scalar(stmt.where(ident == cursor).with_only_columns(created))
        if at is None:
            raise UnknownCursor(param, cursor)
        later = (param == "after") == (page.order == "asc")
        if later:
            stmt = stmt.where(or_(created > at, and_(created == at, ident > cursor)))
        else:
            stmt = stmt.where(or_(created < at, and_(created == at, ident < cursor)))
    keys = (created.asc(), ident.asc()) if ascending else (created.desc(), ident.desc())
    rows = list(session.scalars(stmt.order_by(*keys).limit(page.limit + 1)))
    has_more = len(rows) > page.limit
    rows = rows[:page.limit]
    return (rows[::-1] if backwards else rows), has_more
