"""Bring your own model, live: models imported from folders (a GGUF linked, an ONNX copied),
OpenAI names remapped to them by HEARTH_ALIASES, loaded on first use and listed as such,
and two chat families (Qwen2 and Llama architectures) answering with tools and json_schema
through the official SDK."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from openai import OpenAI
from typer.testing import CliRunner

from hearth.catalog.gguf import gguf_metadata
from hearth.catalog.importing import import_model
from hearth.catalog.provision import ModelStore
from hearth.cli import app
from tests.conftest import LiveServer, pulled_model_dir, start_server, stop_server
from tests.spec import assert_matches_schema

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["c", "f"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string", "maxLength": 12},
                         "age": {"type": "integer", "minimum": 0, "maximum": 120}}}
FAMILIES = ["qwen2.5-coder-0.5b", "my-smol"]


@pytest.fixture(scope="module")
def byom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("byom")
    models, data = root / "models", root / "data"
    models.mkdir()
    # The built-in default chat model, shared read-only with the other servers.
    (models / "qwen2.5-coder-0.5b").symlink_to(pulled_model_dir("qwen2.5-coder-0.5b"))
    # Folders as a user would have them: a GGUF under its own name, an ONNX sentence embedder.
    gguf_folder, onnx_folder = root / "downloads" / "smol", root / "downloads" / "minilm"
    gguf_folder.mkdir(parents=True)
    onnx_folder.mkdir(parents=True)
    shutil.copyfile(pulled_model_dir("smollm2-135m") / "model.gguf", gguf_folder / "SmolLM2-135M-Instruct.Q4_1.gguf")
    for name in ("model.onnx", "tokenizer.json"):
        shutil.copyfile(pulled_model_dir("all-minilm-l6-v2") / name, onnx_folder / name)
    store = ModelStore(models)
    smol = import_model(gguf_folder, data_dir=data, store=store, name="my-smol", link=True)
    minilm = import_model(onnx_folder, data_dir=data, store=store, name="my-minilm")
    assert (smol.kind, smol.engine, minilm.kind, minilm.engine) == ("chat", "llama", "embedding", "embeddings")
    assert (models / "my-smol" / "model.gguf").is_symlink() and not (models / "my-minilm" / "model.onnx").is_symlink()

    live = start_server(data, models,
                        HEARTH_DEFAULT_MODELS='["qwen2.5-coder-0.5b"]',
                        HEARTH_ALIASES="gpt-4o=my-smol,text-embedding-3-large=my-minilm",
                        HEARTH_MODEL_OPTIONS='{"my-smol": {"n_ctx": 2048, "n_parallel": 2}}')
    yield live
    stop_server(live)
    assert "Traceback" not in live.log(), live.log()


@pytest.fixture(scope="module")
def sdk(byom: LiveServer) -> OpenAI:
    return byom.client()


def listed(sdk: OpenAI) -> dict[str, dict]:
    raw = sdk.models.with_raw_response.list()
    body = raw.http_response.json()
    for model in body["data"]:
        assert_matches_schema(model, "Model")
    return {model["id"]: model for model in body["data"]}


def test_imported_models_are_listed_and_load_on_first_use(sdk: OpenAI) -> None:
    """Only the preloaded default is in memory at first; an imported model loads when first asked for."""
    before = listed(sdk)
    assert {"my-smol", "my-minilm", "gpt-4o", "text-embedding-3-large", "gpt-4o-mini"} <= set(before)
    assert (before["qwen2.5-coder-0.5b"]["loaded"], before["qwen2.5-coder-0.5b"]["device"]) == (True, "cpu")
    assert before["my-smol"]["loaded"] is False and before["gpt-4o"]["loaded"] is False
    assert before["my-smol"]["owned_by"] == "user"

    answer = sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi!"}],
                                         max_tokens=8)
    assert answer.choices[0].message.content

    after = listed(sdk)
    assert after["my-smol"]["loaded"] is True and after["gpt-4o"]["loaded"] is True
    assert after["my-minilm"]["loaded"] is False


def test_aliases_remap_openai_names_to_the_users_models(sdk: OpenAI) -> None:
    """text-embedding-3-large means the imported embedder; gpt-4o-mini keeps its built-in meaning."""
    large = sdk.embeddings.create(model="text-embedding-3-large", input=["a small red fox"])
    mine = sdk.embeddings.create(model="my-minilm", input=["a small red fox"])
    assert large.data[0].embedding == mine.data[0].embedding and len(mine.data[0].embedding) == 384
    assert sdk.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    assert listed(sdk)["my-minilm"]["loaded"] is True


def test_the_two_families_bring_their_own_chat_templates() -> None:
    """Qwen2 and Llama architectures, each with the chat template its GGUF carries (llama.cpp applies it)."""
    headers = {name: gguf_metadata(pulled_model_dir(model) / "model.gguf", ("chat_template",))
               for name, model in [("qwen", "qwen2.5-coder-0.5b"), ("smol", "smollm2-135m")]}
    assert headers["qwen"]["general.architecture"] == "qwen2"
    assert headers["smol"]["general.architecture"] == "llama"
    assert headers["qwen"]["tokenizer.chat_template"] != headers["smol"]["tokenizer.chat_template"]


@pytest.mark.parametrize("model", FAMILIES)
def test_both_families_call_tools(sdk: OpenAI, model: str) -> None:
    completion = sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What is the weather in Oslo, in celsius?"}],
        tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=64, temperature=0)

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])


@pytest.mark.parametrize("model", FAMILIES)
def test_both_families_follow_a_json_schema(sdk: OpenAI, model: str) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Invent a person."}], max_tokens=48, seed=3,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": PERSON}})

    assert_matches_schema(raw.http_response.json(), "CreateChatCompletionResponse")
    jsonschema.validate(json.loads(raw.parse().choices[0].message.content), PERSON)


def test_a_malformed_user_catalog_stops_the_server_with_its_reason(tmp_path: Path) -> None:
    """`hearth serve` refuses to start, naming the file, the entry and what is wrong."""
    (tmp_path / "catalog.toml").write_text('[[models]]\nid = "broken"\nkind = "chat"\n')

    refused = CliRunner().invoke(app, ["serve"], env={"HEARTH_DATA_DIR": str(tmp_path), "COLUMNS": "300"})

    assert refused.exit_code == 2
    assert "catalog.toml: models[0] (broken): `engine` must be a non-empty string" in " ".join(refused.output.split())
