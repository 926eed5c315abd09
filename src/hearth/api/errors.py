"""The OpenAI error envelope, and the handlers that put every error into it.

Every error Hearth returns, from a validation failure to an unknown route to
an unexpected crash, has the body ``{"error": {"message", "type", "param",
"code"}}`` with the status the official SDKs map to their exception classes.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("hearth.errors")


class APIError(Exception):
    """An error meant for the client: raised anywhere, rendered as the envelope."""

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


def error_response(
    status: int,
    message: str,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(envelope(message, type_, param, code), status_code=status, headers=headers)


# Starlette raises plain HTTP exceptions for routing and body problems.
_HTTP_STATUS_ERRORS: dict[int, tuple[str, str | None]] = {
    404: ("invalid_request_error", "unknown_url"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
}


def _validation_param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    # Pydantic reports which member of a union failed (e.g. `str`, `list[int]`);
    # the client wants the field, so keep the path up to the first such tag.
    clean: list[str] = []
    for part in parts:
        if any(ch in part for ch in "[]()") or part in {"str", "int", "float", "list", "dict"}:
            break
        clean.append(part)
    if not clean:
        return None
    out = clean[0]
    for part in clean[1:]:
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "Invalid request.", None
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    param = _validation_param(loc)
    kind = first.get("type", "")
    if kind == "json_invalid":
        return (
            ("We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The API expects a JSON payload, but what "
            "was sent was not valid JSON.)"),
            None,
        )
    if kind == "missing":
        return f"Missing required parameter: '{param}'.", param
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param
    if kind == "model_attributes_type" and param is None:
        return "The request body must be a JSON object.", None
    msg = first.get("msg", "Invalid value")
    value = first.get("input")
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    if len(shown) > 80:
        shown = shown[:77] + "..."
    where = f"'{param}'" if param else "the request body"
    return f"Invalid value for {where}: {msg} (got {shown}).", param


async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    return error_response(exc.status_code, exc.message, exc.type, exc.param, exc.code, exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    message, param = _validation_message(exc)
    return error_response(400, message, "invalid_request_error", param, None)


async def http_exception_response(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    type_, code = _HTTP_STATUS_ERRORS.get(exc.status_code, ("invalid_request_error", None))
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}."
    else:
        message = str(exc.detail)
    if exc.status_code >= 500:
        type_ = "server_error"
    return error_response(exc.status_code, message, type_, None, code, getattr(exc, "headers", None))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Runs outside the other middleware, so it sets the request-id header itself.
    request_id = getattr(request.state, "request_id", "")
    log.exception("unhandled error in %s %s [%s]", request.method, request.url.path, request_id)
    message = (
        "The server had an error while processing your request. Sorry about that! "
        f"You can retry your request. (Please include the request ID {request_id} "
        "when reporting it.)"
    )
    return error_response(500, message, "server_error", None, None, {"x-request-id": request_id})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_exception_response)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
