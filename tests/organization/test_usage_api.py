"""The Usage and Costs APIs against the live server: the buckets add up to what the responses reported.

A scripted mix of cheap requests (embeddings, moderations, short chats) runs
under a fresh project's service-account key, so that project's usage is
exactly this test's.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from openai import OpenAI

from tests.conftest import LiveServer
from tests.http.test_foundation import assert_envelope
from tests.spec import assert_matches_schema

KINDS = ("completions", "embeddings", "moderations", "images", "audio_speeches", "audio_transcriptions",
         "vector_stores", "code_interpreter_sessions")


def _totals(page: Any, *fields: str) -> dict[str, int]:
    return {name: sum(getattr(result, name) or 0 for bucket in page.data for result in bucket.results)
            for name in fields}


def test_usage_buckets_equal_what_the_responses_reported(server: LiveServer) -> None:
    admin = server.client(admin_api_key=server.admin_key)
    org = admin.admin.organization
    started = int(time.time()) - 5
    project = org.projects.create(name="Metered").id
    account = org.projects.service_accounts.create(project, name="script")
    assert account.api_key is not None
    client: OpenAI = server.client(api_key=account.api_key.value)

    embedded = [client.embeddings.create(model="text-embedding-3-small", input=text).usage.prompt_tokens
                for text in ("one short line", ["two", "inputs here"], "a third, somewhat longer, line of text")]
    for text in ("hello there", "have a nice day"):
        client.moderations.create(model="omni-moderation-latest", input=text)
    chats = [client.chat.completions.create(model="gpt-4o-mini", max_tokens=4,
                                            messages=[{"role": "user", "content": said}]).usage
             for said in ("Say hi.", "Count to three.")]
    expected = {
        "completions": {"num_model_requests": 2, "input_tokens": sum(u.prompt_tokens for u in chats),
                        "output_tokens": sum(u.completion_tokens for u in chats)},
        "embeddings": {"num_model_requests": 3, "input_tokens": sum(embedded)},
        "moderations": {"num_model_requests": 2},
    }

    def observed() -> dict[str, dict[str, int]]:
        out = {}
        for kind, fields in expected.items():
            page = getattr(org.usage, kind)(start_time=started, project_ids=[project], bucket_width="1m", limit=60)
            out[kind] = _totals(page, *fields)
        return out

    deadline = time.monotonic() + 30
    while (seen := observed()) != expected and time.monotonic() < deadline:
        time.sleep(0.5)  # the meter writes its events about once a second
    assert seen == expected

    # The same totals grouped by model and key, and per day.
    page = org.usage.completions(start_time=started, project_ids=[project], group_by=["model", "api_key_id"])
    [result] = [r for bucket in page.data for r in bucket.results]
    assert (result.model, result.api_key_id, result.input_tokens) == (
        "gpt-4o-mini", account.api_key.id, expected["completions"]["input_tokens"])
    costs = org.usage.costs(start_time=started, project_ids=[project], group_by=["line_item"])
    items = {r.line_item: r.amount.value for bucket in costs.data for r in bucket.results}
    assert items and set(items.values()) == {0} and "gpt-4o-mini, output tokens" in items


def test_every_usage_endpoint_answers_in_its_spec_shape(server: LiveServer) -> None:
    with httpx.Client(base_url=f"{server.base_url}/v1/organization", timeout=60,
                      headers={"Authorization": f"Bearer {server.admin_key}"}) as raw:
        start = int(time.time()) - 3600
        for kind in KINDS:
            body = raw.get(f"/usage/{kind}", params={"start_time": start, "bucket_width": "1h"}).json()
            assert_matches_schema(body, "UsageResponse")
            assert body["object"] == "page" and len(body["data"]) == 2
        grouped = raw.get("/usage/completions", params=[("start_time", start), ("group_by[]", "project_id"),
                                                        ("group_by[]", "model"), ("batch", "false")])
        assert_matches_schema(grouped.json(), "UsageResponse")
        costs = raw.get("/costs", params={"start_time": start, "group_by": "project_id,line_item"}).json()
        assert_matches_schema(costs, "UsageResponse")
        page = raw.get("/usage/embeddings", params={"start_time": start - 3 * 86_400, "limit": 2}).json()
        assert page["has_more"] and page["next_page"]
        rest = raw.get("/usage/embeddings", params={"start_time": start - 3 * 86_400, "page": page["next_page"]})
        assert rest.json()["data"][0]["start_time"] == page["data"][-1]["end_time"]
        assert_envelope(raw.get("/usage/completions"), 400, param="start_time")
        assert_envelope(raw.get("/usage/completions", params={"start_time": "soon"}), 400, param="start_time")
        assert_envelope(raw.get("/usage/completions", params={"start_time": start, "bucket_width": "2d"}), 400,
                        param="bucket_width")
        assert_envelope(raw.get("/usage/vector_stores", params={"start_time": start, "group_by": "model"}), 400,
                        param="group_by")
        assert_envelope(raw.get("/usage/completions", params={"start_time": start, "limit": 1000}), 400,
                        param="limit")
        assert_envelope(raw.get("/usage/completions", params={"start_time": start, "page": "garbage"}), 400,
                        param="page")
        assert_envelope(raw.get("/costs", params={"start_time": start, "bucket_width": "1h"}), 400,
                        param="bucket_width")
