"""Logging of one process: plain text, or one JSON object a line (``HEARTH_LOG_FORMAT=json``).

Log lines carry what they happened for: the HTTP layer opens a context per
request (its ``request_id``), authentication adds the caller's
``project_id`` (or ``organization_id`` for an admin key), and the job worker
opens one per job (``job_id``, ``job_kind``, ``project_id``). The context is
a mutable mapping in a context variable, so what authentication adds (on a
thread) is seen by every later line of the request, uvicorn's access line
included. Code running on the request's task or in threads started with
``asyncio.to_thread`` carries the context; a model's own threads do not.

Standard library logging only: a formatter and a filter, configured with
``logging.config.dictConfig``, whose dict is also what uvicorn is given.
"""

from __future__ import annotations

import json
import logging
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# What the current request or job is; set per request or job, filled as it is learned.
context: ContextVar[dict[str, str] | None] = ContextVar("hearth_log_context", default=None)

# Attributes every LogRecord has: anything else on a record came from ``extra=`` and is logged too.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime",
                                                                                 "color_message", "context"}
# uvicorn's access line: its arguments, named.
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


def note(**values: str | None) -> None:
    """Add to the current request's or job's context (nothing outside one)."""
    current = context.get()
    if current is not None:
        current.update({key: value for key, value in values.items() if value is not None})


class ContextFilter(logging.Filter):
    """Copies the current context onto each record, in the thread that logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = context.get()
        record.context = dict(current) if current else {}
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the context, and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "context", None) or {})
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) \
                and len(record.args) == len(_ACCESS_FIELDS):
            entry.update(zip(_ACCESS_FIELDS, record.args, strict=True))
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


def level_number(name: str) -> int:
    """A level name as uvicorn takes them (``trace`` included) as a number."""
    if name.lower() == "trace":
        return 5
    return logging.getLevelNamesMapping().get(name.upper(), logging.INFO)


def config(log_format: str, level: str) -> dict[str, Any]:
    """The ``dictConfig`` for this process: every logger (uvicorn's too) to stderr, in one format."""
    if log_format == "json":
        formatters: dict[str, Any] = {"default": {"()": JsonFormatter}, "access": {"()": JsonFormatter}}
    else:
        formatters = {
            "default": {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s"},
            "access": {"()": "uvicorn.logging.AccessFormatter",
                       "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'},
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": formatters,
        "handlers": {
            "default": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                        "formatter": "default", "filters": ["context"]},
            "access": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout",
                       "formatter": "access", "filters": ["context"]},
        },
        "root": {"handlers": ["default"], "level": level_number(level)},
        "loggers": {
            "uvicorn": {"level": level_number(level)},
            "uvicorn.error": {"level": level_number(level)},
            "uvicorn.access": {"handlers": ["access"], "level": level_number(level), "propagate": False},
        },
    }
