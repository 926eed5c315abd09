"""Pulls by hub reference through the real client, against a loopback stand-in of the hub's file API."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from hearth.catalog.catalog import Source
from hearth.catalog.hub import parse_reference, pull_from_hub
from hearth.catalog.provision import ModelStore, PullError
from hearth.catalog.user import load_catalog, read_user_catalog, user_catalog_path
from hearth.cli import app
from tests.catalog.hub_standin import Hub, serve

Q4 = b"GGUF" + os.urandom(3000)
Q8 = b"GGUF" + os.urandom(5000)
ONNX = os.urandom(4000)
TOKENIZER = b'{"version": "1.0"}'  # small: kept outside LFS, checked by its git blob id


@pytest.fixture
def hub() -> Iterator[Hub]:
    with serve(Hub(repos={
        "acme/Tiny-GGUF": {"tiny-q4_k_m.gguf": Q4, "tiny-q8_0.gguf": Q8, "README.md": b"# tiny",
                           ".gitattributes": b"*.gguf filter=lfs"},
        "acme/tiny-embed": {"onnx/model.onnx": ONNX, "tokenizer.json": TOKENIZER, "config.json": b"{}"},
    })) as running:
        yield running


def pull(hub: Hub, tmp_path: Path, reference: str, **kwargs: object):
    return pull_from_hub(reference, data_dir=tmp_path / "data", store=ModelStore(tmp_path / "models"),
                         endpoint=hub.url, console=Console(quiet=True), token="", **kwargs)


def test_references_name_a_repository_and_optionally_a_quantization_or_file() -> None:
    assert parse_reference("hf:Qwen/Qwen2.5-7B-Instruct-GGUF:Q4_K_M") == ("Qwen/Qwen2.5-7B-Instruct-GGUF", "Q4_K_M")
    assert parse_reference("hf:acme/x") == ("acme/x", None)
    assert parse_reference("hf:acme/x/sub/file.gguf") == ("acme/x", "sub/file.gguf")
    with pytest.raises(PullError, match="not a hub reference"):
        parse_reference("hf:nothing")


def test_a_gguf_quantization_is_pulled_verified_and_registered(hub: Hub, tmp_path: Path) -> None:
    spec = pull(hub, tmp_path, "hf:acme/Tiny-GGUF:Q8_0")

    assert (spec.id, spec.kind, spec.engine, spec.owned_by) == ("tiny-q8_0", "chat", "llama", "acme")
    assert [(f.path, f.size, f.sha256) for f in spec.files] == [
        ("model.gguf", len(Q8), hashlib.sha256(Q8).hexdigest())]
    assert spec.files[0].sources == (Source("hub", ("acme/Tiny-GGUF",), "tiny-q8_0.gguf"),)
    assert (tmp_path / "models" / "tiny-q8_0" / "model.gguf").read_bytes() == Q8
    assert hub.downloads == [("tiny-q8_0.gguf", None)]  # only the file chosen
    assert ModelStore(tmp_path / "models").is_present(spec)
    assert load_catalog(tmp_path / "data").resolve("tiny-q8_0") == spec


def test_small_files_are_checked_by_their_git_blob_id_and_listing_pages_are_followed(hub: Hub, tmp_path: Path) -> None:
    spec = pull(hub, tmp_path, "hf:acme/tiny-embed", name="embed")

    assert (spec.kind, spec.engine) == ("embedding", "embeddings")
    directory = tmp_path / "models" / "embed"
    assert (directory / "model.onnx").read_bytes() == ONNX
    assert (directory / "tokenizer.json").read_bytes() == TOKENIZER


@pytest.mark.parametrize("path", ["tiny-q4_k_m.gguf", "tokenizer.json"])
def test_a_file_whose_bytes_differ_from_the_published_checksum_is_rejected(hub: Hub, tmp_path: Path,
                                                                           path: str) -> None:
    repo = "acme/Tiny-GGUF" if path.endswith(".gguf") else "acme/tiny-embed"
    good = hub.repos[repo][path]
    hub.corrupt[(repo, path)] = bytes([good[0] ^ 1]) + good[1:]

    with pytest.raises(PullError, match=f"{path}: checksum mismatch"):
        pull(hub, tmp_path, f"hf:{repo}")

    leftovers = [p.name for p in (tmp_path / "models").rglob("*") if p.is_file()]
    assert path not in leftovers and f"{path}.partial" not in leftovers
    assert not user_catalog_path(tmp_path / "data").exists()


def test_an_interrupted_download_resumes_with_a_range_request(hub: Hub, tmp_path: Path) -> None:
    hub.cut_once.add(("acme/Tiny-GGUF", "tiny-q4_k_m.gguf"))

    spec = pull(hub, tmp_path, "hf:acme/Tiny-GGUF")

    (first, no_range), (again, asked) = hub.downloads
    assert (first, again, no_range) == ("tiny-q4_k_m.gguf", "tiny-q4_k_m.gguf", None)
    assert asked == f"bytes={len(Q4) // 2}-"
    assert spec.id == "tiny-q4_k_m"
    assert (tmp_path / "models" / "tiny-q4_k_m" / "model.gguf").read_bytes() == Q4


def test_a_partial_file_left_by_an_earlier_pull_is_resumed(hub: Hub, tmp_path: Path) -> None:
    partial = tmp_path / "models" / "tiny-q4_k_m" / "model.gguf.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(Q4[:1000])

    pull(hub, tmp_path, "hf:acme/Tiny-GGUF:tiny-q4_k_m.gguf")

    assert hub.downloads == [("tiny-q4_k_m.gguf", "bytes=1000-")]
    assert (tmp_path / "models" / "tiny-q4_k_m" / "model.gguf").read_bytes() == Q4


def test_hub_refusals_are_clear(hub: Hub, tmp_path: Path) -> None:
    with pytest.raises(PullError, match="the hub has no repository acme/missing"):
        pull(hub, tmp_path, "hf:acme/missing")
    with pytest.raises(PullError, match="no GGUF file matches 'IQ1'"):
        pull(hub, tmp_path, "hf:acme/Tiny-GGUF:IQ1")
    hub.gated.add("acme/Tiny-GGUF")
    with pytest.raises(PullError, match="needs HF_TOKEN"):
        pull(hub, tmp_path, "hf:acme/Tiny-GGUF")


def test_a_built_in_name_is_refused_before_downloading(hub: Hub, tmp_path: Path) -> None:
    with pytest.raises(PullError, match="built-in model name"):
        pull(hub, tmp_path, "hf:acme/Tiny-GGUF", name="smollm2-135m")
    assert hub.downloads == []


def test_the_cli_pulls_lists_and_removes_a_hub_model(hub: Hub, tmp_path: Path) -> None:
    env = {"HEARTH_HUB_URL": hub.url, "HEARTH_DATA_DIR": str(tmp_path / "data"),
           "HEARTH_MODELS_DIR": str(tmp_path / "models"), "HF_TOKEN": "", "COLUMNS": "200"}
    runner = CliRunner()

    pulled = runner.invoke(app, ["models", "pull", "hf:acme/Tiny-GGUF:Q4_K_M", "--name", "tiny"], env=env)
    assert pulled.exit_code == 0, pulled.output
    listed = runner.invoke(app, ["models", "list"], env=env)
    row = next(line for line in listed.output.splitlines() if line.startswith("│ tiny "))
    assert "chat" in row and "llama" in row and "yes" in row and "user" in row

    removed = runner.invoke(app, ["models", "rm", "tiny"], env=env)
    assert removed.exit_code == 0, removed.output
    assert read_user_catalog(user_catalog_path(tmp_path / "data")) == ([], {})
    assert not (tmp_path / "models" / "tiny").exists()
    refused = runner.invoke(app, ["models", "rm", "smollm2-135m"], env=env)
    assert refused.exit_code == 2 and "not a model of the user catalog" in refused.output
