"""Raw HTTP against a live server, for what the SDK hides: exact bodies checked against the spec's
schemas, and headers the SDK would set (``OpenAI-Beta``)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import LiveServer
from tests.spec import assert_matches_schema


class Raw:
    """Calls that assert the status and return the JSON body, checked against ``schema`` if named."""

    def __init__(self, server: LiveServer, *, beta: str | None = None, api_key: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key or server.api_key}"}
        if beta:
            headers["OpenAI-Beta"] = beta
        self.http = httpx.Client(base_url=f"{server.base_url}/v1", headers=headers, timeout=120)

    def __call__(self, method: str, path: str, schema: str | None = None, status: int = 200,
                 **kwargs: Any) -> dict[str, Any]:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == status, response.text
        body = response.json()
        if schema:
            assert_matches_schema(body, schema)
        return body
