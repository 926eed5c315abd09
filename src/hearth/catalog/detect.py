"""Which engine serves a set of model files, told from their names alone.

The same rules read a local folder (``hearth models import``) and a hub
repository's file listing (``hearth models pull hf:...``), so both register a
model the same way. Each engine finds its files under fixed names in the
model's directory; ``Detected.files`` maps those names to the files chosen:

- a GGUF file: a chat model on llama.cpp (``model.gguf``); a repository with
  several quantizations needs one chosen (``:Q4_K_M`` or a file name), or has
  Q4_K_M;
- ``model_index.json``: a diffusers pipeline (image), every file kept;
- ``model.bin`` + ``config.json`` + a tokenizer or vocabulary: CTranslate2
  Whisper (transcription);
- an ONNX file + ``voices/*.bin``: Kokoro (speech);
- an ONNX file + ``tokenizer.json``: sentence embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

KOKORO_MODEL = "kokoro-v1.0.int8.onnx"  # the name the Kokoro engine loads
_WEIGHTS = (".bin", ".ckpt", ".msgpack", ".h5", ".onnx", ".onnx_data", ".pt", ".pth")


class DetectionError(ValueError):
    """The files do not make a model Hearth can serve, or the choice among them is ambiguous."""


@dataclass(frozen=True)
class Detected:
    kind: str
    engine: str
    files: dict[str, str]  # name in the model's directory -> path in the folder or repository
    options: dict[str, Any] = field(default_factory=dict)


def _hidden(path: str) -> bool:
    return any(part.startswith(".") for part in PurePosixPath(path).parts)


def detect(paths: Iterable[str], select: str | None = None) -> Detected:
    """The engine for files at ``paths`` (relative, ``/``-separated); ``select`` names a
    quantization or a file when there is a choice."""
    listing = sorted(p for p in paths if not _hidden(p))
    if not listing:
        raise DetectionError("no files")
    ggufs = [p for p in listing if p.lower().endswith(".gguf")
             and not PurePosixPath(p).name.lower().startswith("mmproj")]
    if ggufs:
        return Detected("chat", "llama", {"model.gguf": _choose_gguf(ggufs, select)})
    names = set(listing)
    if "model_index.json" in names:
        return Detected("image", "diffusers", {p: p for p in _diffusers_files(listing)})
    if {"model.bin", "config.json"} <= names and (
            names & {"tokenizer.json", "vocabulary.json", "vocabulary.txt"}):
        chosen = [p for p in ("model.bin", "config.json", "tokenizer.json", "vocabulary.json",
                              "vocabulary.txt", "preprocessor_config.json") if p in names]
        return Detected("transcription", "whisper", {p: p for p in chosen})
    onnx = [p for p in listing if p.lower().endswith(".onnx")]
    voices = [p for p in listing if PurePosixPath(p).parent.name == "voices" and p.endswith(".bin")]
    if onnx and voices:
        model = _choose(onnx, select, prefer=("int8", "quantized"))
        files = {KOKORO_MODEL: model, **{f"voices/{PurePosixPath(v).name}": v for v in voices}}
        return Detected("speech", "kokoro", _with_external_data(files, model, names))
    if onnx and (tokenizers := [p for p in listing if PurePosixPath(p).name == "tokenizer.json"]):
        model = _choose(onnx, select, prefer=("model.onnx",), exact_name=True)
        tokenizer = min(tokenizers, key=lambda p: len(PurePosixPath(p).parts))
        files = {"model.onnx": model, "tokenizer.json": tokenizer}
        return Detected("embedding", "embeddings", _with_external_data(files, model, names))
    raise DetectionError(
        "cannot tell which engine serves these files: expected a .gguf file (chat), a diffusers "
        "folder (model_index.json), a CTranslate2 Whisper folder (model.bin, config.json, "
        "tokenizer), a Kokoro folder (.onnx + voices/*.bin) or an ONNX sentence-embedding folder "
        "(.onnx + tokenizer.json)")


def _choose_gguf(ggufs: list[str], select: str | None) -> str:
    if select:
        exact = [p for p in ggufs if p == select or PurePosixPath(p).name == select]
        if exact:
            return exact[0]
        matching = [p for p in ggufs if select.lower() in PurePosixPath(p).name.lower()]
        if not matching:
            raise DetectionError(f"no GGUF file matches {select!r}; there are: {', '.join(ggufs)}")
        ggufs = matching
    if len(ggufs) == 1:
        return ggufs[0]
    if any("-of-" in PurePosixPath(p).name for p in ggufs):
        raise DetectionError("split GGUF files (-00001-of-0000N) are not supported; "
                             "merge them with llama.cpp's gguf-split first")
    preferred = [p for p in ggufs if "q4_k_m" in p.lower()]
    if len(preferred) == 1 and not select:
        return preferred[0]
    raise DetectionError("several GGUF files; choose one with :QUANT or :FILE, e.g. "
                         f"{PurePosixPath(ggufs[0]).name}. There are: {', '.join(ggufs)}")


def _choose(candidates: list[str], select: str | None, *, prefer: tuple[str, ...],
            exact_name: bool = False) -> str:
    if select:
        matching = [p for p in candidates if p == select or PurePosixPath(p).name == select]
        if not matching:
            raise DetectionError(f"no file {select!r}; there are: {', '.join(candidates)}")
        return matching[0]
    if len(candidates) == 1:
        return candidates[0]
    for hint in prefer:
        hits = [p for p in candidates
                if (PurePosixPath(p).name == hint if exact_name else hint in p.lower())]
        if hits:
            return min(hits, key=lambda p: len(PurePosixPath(p).parts))
    raise DetectionError(f"several ONNX files; choose one with :FILE. There are: {', '.join(candidates)}")


def _with_external_data(files: dict[str, str], model: str, names: set[str]) -> dict[str, str]:
    """ONNX weights kept beside the graph (``<name>.onnx_data``) keep their own name."""
    for extra in (model + "_data", model + ".data"):
        if extra in names:
            files[PurePosixPath(extra).name] = extra
    return files


def _diffusers_files(listing: list[str]) -> list[str]:
    """A pipeline's files; where a folder has safetensors, its other weight formats are left out."""
    with_safetensors = {str(PurePosixPath(p).parent) for p in listing if p.endswith(".safetensors")}
    return [p for p in listing
            if not (p.endswith(_WEIGHTS) and str(PurePosixPath(p).parent) in with_safetensors)]
