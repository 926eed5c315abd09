"""Engine detection from file names: the same rules for a local folder and a hub listing."""

from __future__ import annotations

import pytest

from hearth.catalog.detect import KOKORO_MODEL, DetectionError, detect


def test_a_gguf_is_a_llama_chat_model() -> None:
    found = detect(["README.md", "SmolLM2-135M.Q4_1.gguf"])
    assert (found.kind, found.engine, found.files) == ("chat", "llama", {"model.gguf": "SmolLM2-135M.Q4_1.gguf"})


def test_a_quantization_or_a_file_chooses_among_ggufs() -> None:
    listing = ["m-q8_0.gguf", "m-q4_k_m.gguf", "m-Q2_K.gguf", "mmproj-m-f16.gguf"]
    assert detect(listing).files == {"model.gguf": "m-q4_k_m.gguf"}  # Q4_K_M when none is named
    assert detect(listing, "Q8_0").files == {"model.gguf": "m-q8_0.gguf"}
    assert detect(listing, "m-Q2_K.gguf").files == {"model.gguf": "m-Q2_K.gguf"}
    with pytest.raises(DetectionError, match="no GGUF file matches 'IQ1'"):
        detect(listing, "IQ1")
    with pytest.raises(DetectionError, match="several GGUF files"):
        detect(["a-q8_0.gguf", "a-f16.gguf"])
    with pytest.raises(DetectionError, match="split GGUF"):
        detect(["a-q4_k_m-00001-of-00002.gguf", "a-q4_k_m-00002-of-00002.gguf"])


def test_a_ctranslate2_whisper_folder_is_a_transcription_model() -> None:
    found = detect(["model.bin", "config.json", "tokenizer.json", "vocabulary.txt", "README.md", ".gitattributes"])
    assert (found.kind, found.engine) == ("transcription", "whisper")
    assert sorted(found.files) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]


def test_onnx_with_voices_is_kokoro_and_with_a_tokenizer_is_embeddings() -> None:
    kokoro = detect(["kokoro-v1.0.onnx", "kokoro-v1.0.int8.onnx", "voices/af_heart.bin", "voices/am_adam.bin",
                     "tokenizer.json"])
    assert (kokoro.kind, kokoro.engine) == ("speech", "kokoro")
    assert kokoro.files == {KOKORO_MODEL: "kokoro-v1.0.int8.onnx", "voices/af_heart.bin": "voices/af_heart.bin",
                            "voices/am_adam.bin": "voices/am_adam.bin"}
    embeddings = detect(["onnx/model.onnx", "onnx/model_qint8_avx512.onnx", "tokenizer.json",
                         "onnx/tokenizer.json", "config.json"])
    assert (embeddings.kind, embeddings.engine) == ("embedding", "embeddings")
    assert embeddings.files == {"model.onnx": "onnx/model.onnx", "tokenizer.json": "tokenizer.json"}
    assert detect(["model.onnx", "model.onnx_data", "tokenizer.json"]).files == {
        "model.onnx": "model.onnx", "model.onnx_data": "model.onnx_data", "tokenizer.json": "tokenizer.json"}


def test_a_diffusers_folder_is_an_image_model_with_its_safetensors() -> None:
    found = detect(["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                    "unet/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.bin"])
    assert (found.kind, found.engine) == ("image", "diffusers")
    assert sorted(found.files) == ["model_index.json", "unet/config.json",
                                   "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.bin"]


def test_anything_else_is_refused_saying_what_is_expected() -> None:
    with pytest.raises(DetectionError, match="cannot tell which engine"):
        detect(["pytorch_model.bin", "config.json"])
    with pytest.raises(DetectionError, match="no files"):
        detect([".git/config"])
