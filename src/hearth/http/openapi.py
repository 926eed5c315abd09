"""The OpenAPI document at /openapi.json, describing the server as it behaves.

FastAPI's defaults describe a different server: every route answers 422 with
its own validation-error shape (Hearth answers 400 with the OpenAI envelope),
and routes that read their multipart body themselves, as a stream, show no
request body at all, so generated clients and fuzzers cannot call them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message", "type", "param", "code"],
        "properties": {
            "message": {"type": "string"},
            "type": {"type": "string"},
            "param": {"type": ["string", "null"]},
            "code": {"type": ["string", "null"]},
        },
    }},
}
_ERROR_RESPONSE = {"description": "The request was refused; the body says why.",
                   "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_SCHEMAS = "#/components/schemas/{model}"


def multipart_body(form: type[BaseModel] | None, files: dict[str, str]) -> dict[str, Any]:
    """``openapi_extra`` for a route that streams its multipart body: the file parts
    (name -> description) and the text fields ``form`` validates."""
    schema: dict[str, Any] = (form.model_json_schema(ref_template=_SCHEMAS) if form is not None
                              else {"type": "object", "properties": {}})
    schema["properties"] = {
        **{name: {"type": "string", "format": "binary", "description": text}
           for name, text in files.items()},
        **schema.get("properties", {}),
    }
    schema["required"] = [*files, *schema.get("required", [])]
    return {"requestBody": {"required": True,
                            "content": {"multipart/form-data": {"schema": schema}}}}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, summary=app.summary,
                                   routes=app.routes)
            _as_served(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _as_served(document: dict[str, Any]) -> None:
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components["Error"] = _ERROR
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses["400"] = _ERROR_RESPONSE
            responses.setdefault("default", _ERROR_RESPONSE)
            body = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
            if body is not None:
                # A form's nested models, referred to from the body, live with the others.
                components.update(body["schema"].pop("$defs", {}))
