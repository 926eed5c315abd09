"""Attribute filters of a search: comparison (``eq`` ... ``nin``) and compound (``and``, ``or``) filters.

They read the files' ``attributes`` (held in SQL, changeable without
re-indexing), so a filter picks the files a search may read before the
vector index is asked; a file without the key matches no comparison but ``ne``
and ``nin``.
"""

from __future__ import annotations

from typing import Any

from hearth.errors import InvalidRequest

COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")
COMPOUNDS = ("and", "or")
_SCALARS = (str, int, float, bool)


def check(node: Any, param: str = "filters") -> None:
    """A 400 naming the first thing wrong in the filter."""
    if not isinstance(node, dict):
        raise InvalidRequest(f"Invalid type for '{param}': expected an object.", param=param)
    kind = node.get("type")
    if kind in COMPOUNDS:
        unknown = set(node) - {"type", "filters"}
        children = node.get("filters")
        if unknown or not isinstance(children, list):
            raise InvalidRequest(f"Invalid '{param}': a compound filter has 'type' and a list 'filters'.",
                                 param=param)
        for index, child in enumerate(children):
            check(child, f"{param}.filters[{index}]")
        return
    if kind not in COMPARISONS:
        raise InvalidRequest(f"Invalid value for '{param}.type': {kind!r}; expected one of "
                             f"{', '.join(COMPARISONS + COMPOUNDS)}.", param=f"{param}.type")
    if set(node) - {"type", "key", "value"} or not isinstance(node.get("key"), str) or "value" not in node:
        raise InvalidRequest(f"Invalid '{param}': a comparison filter has 'type', 'key' and 'value'.", param=param)
    value = node["value"]
    if kind in ("in", "nin"):
        if not isinstance(value, list) or not all(isinstance(item, (str, int, float)) for item in value):
            raise InvalidRequest(f"Invalid '{param}.value': '{kind}' compares with a list of strings or numbers.",
                                 param=f"{param}.value")
    elif not isinstance(value, _SCALARS):
        raise InvalidRequest(f"Invalid '{param}.value': expected a string, number or boolean.",
                             param=f"{param}.value")


def matches(node: dict[str, Any] | None, attributes: dict[str, Any] | None) -> bool:
    if node is None:
        return True
    attributes = attributes or {}
    kind = node["type"]
    if kind == "and":
        return all(matches(child, attributes) for child in node["filters"])
    if kind == "or":
        return any(matches(child, attributes) for child in node["filters"])
    key, value = node["key"], node["value"]
    if key not in attributes:
        return kind in ("ne", "nin")
    have = attributes[key]
    if kind == "eq":
        return bool(have == value)
    if kind == "ne":
        return bool(have != value)
    if kind == "in":
        return have in value
    if kind == "nin":
        return have not in value
    numeric = isinstance(have, (int, float)) and isinstance(value, (int, float))
    if not numeric and not (isinstance(have, str) and isinstance(value, str)):
        return False
    return {"gt": have > value, "gte": have >= value, "lt": have < value, "lte": have <= value}[kind]
