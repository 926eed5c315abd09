"""The neutral error vocabulary: what a client did wrong, or why it must wait.

Services, the jobs that call them, and the HTTP layer all speak these. Each
error carries the OpenAI error fields (``message``, ``type``, ``param``,
``code``) and the status the OpenAI API gives it, because that status is part
of the contract beyond HTTP too: a batch's error file records it per line.
Only the HTTP layer (``hearth.http.errors``) turns an error into a response.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class APIError(Exception):
    """An error meant for the client."""

    status_code = 400
    type = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}
        if status_code is not None:
            self.status_code = status_code

    def body(self) -> dict[str, Any]:
        """The error envelope, as the API and a batch's error file carry it."""
        return envelope(self.message, self.type, self.param, self.code)


class InvalidRequest(APIError):
    status_code = 400


class AuthenticationError(APIError):
    status_code = 401


class PermissionDenied(APIError):
    status_code = 403


class NotFound(APIError):
    status_code = 404


class Conflict(APIError):
    status_code = 409


class PayloadTooLarge(APIError):
    status_code = 413


class UnsupportedMediaType(APIError):
    status_code = 415


class RateLimited(APIError):
    status_code = 429
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: int = 1, code: str = "rate_limit_exceeded"):
        super().__init__(message, code=code, headers={"Retry-After": str(retry_after)})


class ServiceUnavailable(APIError):
    status_code = 503
    type = "server_error"


def model_not_found(model: str) -> NotFound:
    return NotFound(
        f"The model `{model}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def envelope(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# Validation: pydantic's error list, as the API words it.

BAD_JSON = ("We could not parse the JSON body of your request. (HINT: This likely means you "
             "aren't using your HTTP library correctly. The API expects a JSON payload, but what "
             "was sent was not valid JSON.)")
# Where FastAPI found a value; not part of the field's name as a client knows it.
_SOURCES = ("body", "query", "path", "header", "form")


def validation_param(loc: Sequence[Any]) -> str | None:
    """The field a validation error is about, written as the API writes it (``a.b[0].c``)."""
    parts = [str(p) for p in loc if p not in _SOURCES]
    # Pydantic reports which member of a union failed (e.g. `str`, `list[int]`);
    # the client wants the field, so keep the path up to the first such tag.
    clean: list[str] = []
    for part in parts:
        if any(ch in part for ch in "[]()") or part in {"str", "int", "float", "list", "dict"}:
            break
        clean.append(part)
    # A tagged union adds its tag: tools[0] -> "function" (the tag) -> function (the field).
    clean = [part for i, part in enumerate(clean) if i == 0 or part != clean[i - 1] or part.isdigit()]
    if not clean:
        return None
    out = clean[0]
    for part in clean[1:]:
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


def invalid_request(errors: Sequence[Mapping[str, Any]]) -> InvalidRequest:
    """The 400 for a request that failed validation, naming its first bad field."""
    if not errors:
        return InvalidRequest("Invalid request.")
    first = errors[0]
    param = validation_param(tuple(first.get("loc", ())))
    kind = first.get("type", "")
    if kind == "json_invalid":
        return InvalidRequest(BAD_JSON)
    if kind == "missing" and param is None:
        return InvalidRequest("The request body is empty; it must be a JSON object.")
    if kind == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    if kind == "extra_forbidden":
        return InvalidRequest(f"Unrecognized request argument supplied: {param}", param=param)
    if kind == "model_attributes_type" and param is None:
        return InvalidRequest("The request body must be a JSON object.")
    msg = first.get("msg", "Invalid value")
    value = first.get("input")
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    if len(shown) > 80:
        shown = shown[:77] + "..."
    where = f"'{param}'" if param else "the request body"
    return InvalidRequest(f"Invalid value for {where}: {msg} (got {shown}).", param=param)
