"""Rendering errors as the OpenAI envelope: the one place errors become responses.

Every error Hearth returns, from a validation failure to an unknown route to
an unexpected crash, has the body ``{"error": {"message", "type", "param",
"code"}}`` with the status the official SDKs map to their exception classes.
The vocabulary itself lives in ``hearth.errors``, free of any web framework.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hearth.errors import BAD_JSON, APIError, envelope, invalid_request

log = logging.getLogger("hearth.errors")


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


async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return await _api_error(request, invalid_request(exc.errors()))


async def http_exception_response(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    type_, code = _HTTP_STATUS_ERRORS.get(exc.status_code, ("invalid_request_error", None))
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        message = BAD_JSON  # FastAPI's words for a body that is not even text
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
