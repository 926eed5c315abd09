"""The user catalog merged with the built-in one: models, alias layers, default models, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.catalog.catalog import Catalog, CatalogError, ModelFile, ModelSpec
from hearth.catalog.user import (
    add_user_model,
    catalog_for,
    load_catalog,
    preload_names,
    read_user_catalog,
    remove_user_model,
    user_catalog_path,
)
from hearth.settings import Settings

SHA = "ab" * 32

MY_CHAT = f"""
[aliases]
"gpt-4.1" = "my-chat"

[[models]]
id = "my-chat"
kind = "chat"
engine = "llama"
aliases = ["gpt-4o", "my-alias"]
options = {{ n_ctx = 2048, n_parallel = 2 }}

[[models.files]]
path = "model.gguf"
size = 10
sha256 = "{SHA}"
"""


def write(data_dir: Path, text: str) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = user_catalog_path(data_dir)
    path.write_text(text)
    return path


def test_without_a_user_catalog_the_catalog_is_the_built_in_one(tmp_path: Path) -> None:
    merged = load_catalog(tmp_path)

    assert [(s.id, s.aliases) for s in merged.models] == [(s.id, s.aliases) for s in Catalog.load().models]


def test_user_models_are_added_and_their_aliases_override_the_built_in_ones(tmp_path: Path) -> None:
    """gpt-4o was qwen2.5-coder-0.5b's; the user model takes it (and gpt-4.1 from the alias table)."""
    write(tmp_path, MY_CHAT)
    merged = load_catalog(tmp_path)

    mine = merged.resolve("my-chat")
    assert (mine.kind, mine.engine, mine.options, mine.files[0].sources) == (
        "chat", "llama", {"n_ctx": 2048, "n_parallel": 2}, ())
    assert merged.resolve("gpt-4o").id == merged.resolve("gpt-4.1").id == merged.resolve("my-alias").id == "my-chat"
    qwen = merged.resolve("qwen2.5-coder-0.5b")
    assert "gpt-4o" not in qwen.aliases and "gpt-4o-mini" in qwen.aliases
    assert merged.resolve("gpt-4o-mini") is qwen
    # Every name is listed once.
    names = [name for name, _ in merged.names()]
    assert len(names) == len(set(names))


def test_hearth_aliases_override_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, MY_CHAT)
    monkeypatch.setenv("HEARTH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HEARTH_ALIASES", "gpt-4o=qwen2.5-coder-1.5b, whisper-1=whisper-tiny.en,x=gpt-4o-mini")
    merged = catalog_for(Settings())

    assert merged.resolve("gpt-4o").id == "qwen2.5-coder-1.5b"
    assert merged.resolve("whisper-1").id == "whisper-tiny.en"
    assert merged.resolve("x").id == "qwen2.5-coder-0.5b"  # an alias may name another alias's model
    assert merged.resolve("gpt-4.1").id == "my-chat"


def test_hearth_aliases_accepts_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_ALIASES", '{"gpt-4o": "smollm2-135m"}')
    assert Settings().aliases == {"gpt-4o": "smollm2-135m"}
    monkeypatch.setenv("HEARTH_ALIASES", "gpt-4o")
    with pytest.raises(ValueError, match="name=model"):
        Settings()


def test_default_model_settings_take_their_kinds_openai_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HEARTH_DEFAULT_CHAT_MODEL moves every built-in chat alias to it, and is preloaded instead."""
    monkeypatch.setenv("HEARTH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HEARTH_DEFAULT_CHAT_MODEL", "smollm2-135m")
    monkeypatch.setenv("HEARTH_DEFAULT_TRANSCRIPTION_MODEL", "whisper-tiny.en")
    settings = Settings()
    merged = catalog_for(settings)

    assert merged.resolve("gpt-4o-mini").id == merged.resolve("gpt-3.5-turbo").id == "smollm2-135m"
    assert merged.resolve("whisper-1").id == "whisper-tiny.en"
    assert merged.resolve("qwen2.5-coder-0.5b").aliases == ()
    assert merged.resolve("tts-1").id == "kokoro-82m"
    assert preload_names(settings, merged) == [
        "kokoro-82m", "whisper-tiny.en", "smollm2-135m", "all-minilm-l6-v2", "moderation-local"]


def test_a_default_model_of_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="the default chat model 'whisper-base' is a transcription model"):
        load_catalog(tmp_path, defaults={"chat": "whisper-base"})


@pytest.mark.parametrize(("text", "message"), [
    ("[[models]]\nid = 'x'\n", r"models\[0\] \(x\): `kind` must be a non-empty string"),
    ("[[models]]\nid = 'x'\nkind = 'chat'\nengine = 'llama'\n", "`files` must list at least one file"),
    (MY_CHAT.replace(SHA, "nothex"), "`sha256` must be 64 lowercase hex digits"),
    (MY_CHAT.replace('"model.gguf"', '"../escape.gguf"'), "`path` must be relative"),
    (MY_CHAT.replace("size = 10", "size = 'ten'"), "`size` must be a byte count"),
    ("models = 3\n", "must be an array of tables"),
    ("[[models]\n", "not valid TOML"),
    ("[other]\n", "unknown top-level keys"),
    (MY_CHAT.replace('id = "my-chat"', 'id = "qwen2.5-coder-0.5b"'),
     "defines model 'qwen2.5-coder-0.5b' twice \\(already in the built-in catalog\\)"),
    (MY_CHAT + MY_CHAT.split("[aliases]")[1].split('"gpt-4.1" = "my-chat"')[1],
     "defines model 'my-chat' twice \\(already in the user catalog\\)"),
    (MY_CHAT.replace('"my-alias"', '"whisper-base"'), "alias 'whisper-base' is a model id"),
    (MY_CHAT.replace('"gpt-4.1" = "my-chat"', '"gpt-4.1" = "nothing"'), "names unknown model 'nothing'"),
])
def test_a_malformed_user_catalog_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    """The error names the file and the entry; the server refuses to start with it."""
    path = write(tmp_path, text)

    with pytest.raises(CatalogError, match=message) as refused:
        load_catalog(tmp_path)
    assert str(path) in str(refused.value)


def test_models_are_written_and_removed_round_trip(tmp_path: Path) -> None:
    spec = ModelSpec(id="mine", kind="embedding", engine="embeddings", description='say "hi"',
                     owned_by="me", created=5, aliases=("emb",), options={"memory_mib": 100},
                     files=(ModelFile("model.onnx", 3, SHA, ()), ModelFile("tokenizer.json", 4, SHA, ())))
    add_user_model(tmp_path, spec)
    with pytest.raises(CatalogError, match="already has a model 'mine'"):
        add_user_model(tmp_path, spec)

    models, aliases = read_user_catalog(user_catalog_path(tmp_path))
    assert (models, aliases) == ([spec], {})
    assert load_catalog(tmp_path).resolve("emb") == spec

    assert remove_user_model(tmp_path, "mine") == spec
    assert read_user_catalog(user_catalog_path(tmp_path)) == ([], {})


def test_a_model_clashing_with_the_built_in_catalog_is_never_written(tmp_path: Path) -> None:
    clash = ModelSpec(id="whisper-base", kind="transcription", engine="whisper", description="",
                      owned_by="me", created=0, files=(ModelFile("model.bin", 1, SHA, ()),))
    with pytest.raises(CatalogError, match="twice"):
        add_user_model(tmp_path, clash)
    assert not user_catalog_path(tmp_path).exists()
