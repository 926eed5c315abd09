"""Identifiers and clocks shared by every stored object."""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str) -> str:
    """An OpenAI-style id: a prefix and 24 url-safe random characters."""
    return f"{prefix}{secrets.token_hex(12)}"


def now() -> int:
    return int(time.time())
