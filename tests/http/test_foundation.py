"""Cross-cutting behaviour: the error envelope, headers, authentication, models."""

from __future__ import annotations

import json
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import LiveServer, start_server, stop_server
from tests.spec import assert_matches_schema


def assert_envelope(response: httpx.Response, status: int, *, type_: str = "invalid_request_error",
                    param: str | None = None, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["type"] == type_
    assert error["param"] == param
    assert error["code"] == code
    assert "Traceback" not in error["message"]
    return error


def test_every_response_has_request_id_and_processing_time(http: httpx.Client) -> None:
    for response in (http.get("/v1/models"), http.get("/v1/nowhere")):
        assert response.headers["x-request-id"].startswith("req_")
        assert int(response.headers["openai-processing-ms"]) >= 0
    assert http.get("/v1/models").headers["x-request-id"] != \
        http.get("/v1/models").headers["x-request-id"]


def test_unknown_route_is_404_envelope(http: httpx.Client) -> None:
    error = assert_envelope(http.get("/v1/nowhere"), 404, code="unknown_url")
    assert "/v1/nowhere" in error["message"]


def test_wrong_method_is_405_envelope(http: httpx.Client) -> None:
    assert_envelope(http.delete("/v1/audio/speech"), 405, code="method_not_allowed")


def test_malformed_json_is_400(http: httpx.Client) -> None:
    response = http.post("/v1/audio/speech", content=b'{"model": "tts-1",',
                         headers={"content-type": "application/json"})
    error = assert_envelope(response, 400)
    assert "JSON" in error["message"]


def test_json_that_is_not_an_object_is_400(http: httpx.Client) -> None:
    response = http.post("/v1/audio/speech", json=["tts-1"])
    assert_envelope(response, 400)


def test_body_that_is_not_json_is_415(http: httpx.Client) -> None:
    response = http.post("/v1/audio/speech", content=b"model=tts-1",
                         headers={"content-type": "application/x-www-form-urlencoded"})
    assert_envelope(response, 415, code="unsupported_media_type")


def test_missing_field_names_the_param(http: httpx.Client) -> None:
    error = assert_envelope(http.post("/v1/audio/speech", json={"model": "tts-1", "voice": "alloy"}),
                            400, param="input")
    assert "input" in error["message"]


def test_wrong_type_names_the_param(http: httpx.Client) -> None:
    body = {"model": "tts-1", "voice": "alloy", "input": "hi", "speed": "fast"}
    assert_envelope(http.post("/v1/audio/speech", json=body), 400, param="speed")


def test_unknown_field_is_rejected(http: httpx.Client) -> None:
    body = {"model": "tts-1", "voice": "alloy", "input": "hi", "volume": 11}
    error = assert_envelope(http.post("/v1/audio/speech", json=body), 400, param="volume")
    assert "volume" in error["message"]


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/embeddings", '{"model": "text-embedding-3-small", "input": "a \\ud800 b"}', "input"),
    ("/v1/moderations", '{"input": ["fine", "\\udfff"]}', "input[1]"),
    ("/v1/chat/completions", '{"model": "\\ud800", "messages": []}', "model"),
    ("/v1/chat/completions",
     '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud83d"}]}',
     "messages[0].content"),
])
def test_lone_surrogates_are_400_naming_the_field(http: httpx.Client, path: str, body: str,
                                                  param: str) -> None:
    """Text that is not Unicode is the client's mistake wherever it enters, never a 500."""
    response = http.post(path, content=body, headers={"Content-Type": "application/json"})
    assert_envelope(response, 400, param=param, code="invalid_unicode")


def test_paired_surrogates_are_ordinary_text(http: httpx.Client) -> None:
    """An escaped pair is one character (here an emoji), and is embedded like any other."""
    body = '{"model": "text-embedding-3-small", "input": "smile \\ud83d\\ude00"}'
    response = http.post("/v1/embeddings", content=body,
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text


def test_empty_and_undecodable_bodies_are_400_in_plain_words(http: httpx.Client) -> None:
    headers = {"Content-Type": "application/json"}
    empty = assert_envelope(http.post("/v1/embeddings", content=b"", headers=headers), 400)
    assert empty["message"] == "The request body is empty; it must be a JSON object."
    latin1 = http.post("/v1/embeddings", content=b'{"input": "caf\xe9"}', headers=headers)
    assert "could not parse the JSON body" in assert_envelope(latin1, 400)["message"]


@pytest.mark.parametrize("request_bytes", [
    b"GET /v1/models HTTP/1.1\r\nHost: h\r\nX-Bad: a\x00b\r\n\r\n",
    b"GET /v1/models?" + b"a" * (1024 * 1024) + b" HTTP/1.1\r\nHost: h\r\n\r\n",
])
def test_unreadable_http_is_400_in_the_envelope(server: LiveServer, request_bytes: bytes) -> None:
    """Requests too malformed to reach the app still get the API's error body."""
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(request_bytes)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


def test_openapi_document_describes_the_server_as_it_behaves(http: httpx.Client) -> None:
    """Errors are 400s in the envelope (never FastAPI's 422), and routes that stream their
    multipart body still document it, so generated clients can call them."""
    document = http.get("/openapi.json").json()
    operations = [op for ops in document["paths"].values() for op in ops.values()]
    assert operations and all("422" not in op["responses"] for op in operations)
    assert all(op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
               == "#/components/schemas/Error" for op in operations)
    for path, file_field in [("/v1/files", "file"), ("/v1/uploads/{upload_id}/parts", "data"),
                             ("/v1/audio/transcriptions", "file"), ("/v1/audio/translations", "file")]:
        form = document["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert form["schema"]["properties"][file_field]["format"] == "binary"
        assert file_field in form["schema"]["required"]
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document))
    assert set(refs) <= set(document["components"]["schemas"])


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("cors")
    live = start_server(data, data / "models", HEARTH_DEFAULT_MODELS="[]",
                        HEARTH_CORS_ORIGINS='["http://app.example"]')
    yield live
    stop_server(live)


def test_cors_preflight_and_request_from_an_allowed_origin(cors_server: LiveServer) -> None:
    """What a browser running the SDK (dangerouslyAllowBrowser) sends: a preflight, then the
    request, whose response it may read only with the CORS headers."""
    origin = {"Origin": "http://app.example"}
    preflight = httpx.options(f"{cors_server.base_url}/v1/models", headers={
        **origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization,x-stainless-os"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://app.example"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    listed = httpx.get(f"{cors_server.base_url}/v1/models",
                       headers={**origin, "Authorization": f"Bearer {cors_server.api_key}"})
    assert listed.status_code == 200
    assert listed.headers["access-control-allow-origin"] == "http://app.example"
    assert "x-request-id" in listed.headers["access-control-expose-headers"].lower()


def test_cors_is_off_by_default_and_for_other_origins(server: LiveServer,
                                                     cors_server: LiveServer) -> None:
    ask = {"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "GET"}
    assert "access-control-allow-origin" not in httpx.options(
        f"{server.base_url}/v1/models", headers=ask).headers
    assert "access-control-allow-origin" not in httpx.options(
        f"{cors_server.base_url}/v1/models", headers=ask).headers


def test_a_json_body_without_content_type_is_read_as_json(http: httpx.Client) -> None:
    body = b'{"filename": "a.txt", "purpose": "assistants", "bytes": 3, "mime_type": "text/plain"}'
    request = http.build_request("POST", "/v1/uploads", content=body)
    assert "content-type" not in request.headers
    response = http.send(request)
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "upload"


def test_an_empty_cursor_is_no_cursor(http: httpx.Client) -> None:
    response = http.get("/v1/files", params={"after": ""})
    assert response.status_code == 200, response.text


def test_deleting_a_model(server: LiveServer, client: openai.OpenAI) -> None:
    """Unauthenticated is 401; a base model is the caller's to use, not to delete (403);
    an unknown one is not found."""
    anonymous = httpx.delete(f"{server.base_url}/v1/models/gpt-4o-mini")
    assert_envelope(anonymous, 401)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.models.delete("gpt-4o-mini")
    assert refused.value.code == "insufficient_permissions"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.delete("ft:nothing:here")
    assert missing.value.code == "model_not_found"


def test_oversize_body_is_413_without_reading_it(http: httpx.Client) -> None:
    huge = b'{"input": "' + b"a" * (9 * 1024 * 1024) + b'"}'
    response = http.post("/v1/audio/speech", content=huge,
                         headers={"content-type": "application/json"})
    assert_envelope(response, 413, code="request_too_large")


def test_oversize_chunked_body_is_413(http: httpx.Client) -> None:
    def chunks():
        yield b'{"input": "'
        for _ in range(10):
            yield b"a" * (1024 * 1024)
        yield b'"}'

    response = http.post("/v1/audio/speech", content=chunks(),
                         headers={"content-type": "application/json"})
    assert_envelope(response, 413, code="request_too_large")


# Authentication ---------------------------------------------------------------

def test_missing_key_is_401(server: LiveServer) -> None:
    response = httpx.get(f"{server.base_url}/v1/models")
    assert_envelope(response, 401)


def test_wrong_key_is_401_and_masked(server: LiveServer) -> None:
    bad = "sk-proj-" + "x" * 40 + "WXYZ"
    with pytest.raises(openai.AuthenticationError) as caught:
        server.client(api_key=bad).models.list()
    body = caught.value.body
    assert body["code"] == "invalid_api_key"
    assert bad not in body["message"] and "WXYZ" in body["message"]


def test_admin_key_cannot_call_project_endpoints(server: LiveServer) -> None:
    with pytest.raises(openai.PermissionDeniedError):
        server.client(api_key=server.admin_key).models.list()


def test_project_header_must_match_the_key(server: LiveServer) -> None:
    client = server.client(project="proj_someoneelse")
    with pytest.raises(openai.AuthenticationError) as caught:
        client.models.list()
    assert caught.value.body["code"] == "mismatched_project"


def test_first_run_key_file_is_private(server: LiveServer) -> None:
    mode = (server.data_dir / "initial-keys.txt").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_the_data_directory_is_owner_only(server: LiveServer, client: openai.OpenAI) -> None:
    """Keys, the database (and its WAL) and every stored file are the owner's alone."""
    client.files.create(file=("private.txt", b"secret notes"), purpose="assistants")
    paths = [server.data_dir, *server.data_dir.rglob("*")]
    stored = [p for p in paths if p.name.startswith("hearth.db") or "blobs" in p.parts]
    assert any(p.name == "hearth.db-wal" for p in stored) and any(p.is_file() and "blobs" in p.parts
                                                                  for p in stored)
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
    for path in stored:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_listing_keys_in_an_empty_data_directory_writes_nothing(tmp_path) -> None:
    env = {"HEARTH_DATA_DIR": str(tmp_path / "fresh"), "PATH": "/usr/bin:/bin"}
    listed = subprocess.run([sys.executable, "-m", "hearth", "keys", "list"], env=env,
                            capture_output=True, text=True, check=True)
    assert "no keys" in listed.stderr
    assert not (tmp_path / "fresh").exists()


def _cli(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"HEARTH_DATA_DIR": str(server.data_dir), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "hearth", "keys", *args], env=env,
                          capture_output=True, text=True, check=True)


def test_cli_keys_create_and_revoke(server: LiveServer) -> None:
    created = _cli(server, "create", "--name", "test")
    secret = created.stdout.strip()
    key_id = created.stderr.split()[1]
    assert secret.startswith("sk-proj-") and key_id.startswith("key_")
    client = server.client(api_key=secret)
    assert client.models.list().data
    assert secret not in _cli(server, "list").stdout
    _cli(server, "revoke", key_id)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


# Models ------------------------------------------------------------------------

def test_models_list_includes_ids_and_aliases(client: openai.OpenAI) -> None:
    page = client.models.list()
    ids = {model.id for model in page.data}
    assert {"kokoro-82m", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= ids
    for model in page.data:
        assert_matches_schema(model.model_dump(), "Model")


def test_models_retrieve_alias_and_unknown(client: openai.OpenAI) -> None:
    model = client.models.retrieve("tts-1")
    assert model.id == "tts-1" and model.object == "model"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-9-ultra")
    assert caught.value.body["code"] == "model_not_found"
