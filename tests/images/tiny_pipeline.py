"""A tiny, randomly initialised Stable Diffusion pipeline of the real architecture, built on the fly.

Every part is the class SD-Turbo uses (CLIP text encoder and its BPE
tokenizer, a conditional UNet, the KL autoencoder with its 8x scale, the
trailing-spaced Euler ancestral scheduler), only with a few channels, so the
whole path runs for real at any size in a fraction of a second. Its pictures
are noise; what the tests check is the path, sizes, formats and masks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MODEL_ID = "tiny-sd"


def _byte_chars() -> list[str]:
    """The printable characters byte-level BPE maps each of the 256 bytes to (GPT-2's table)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for byte in range(256):
        if byte in keep:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _write_tokenizer(directory: Path) -> int:
    """A CLIP tokenizer whose vocabulary is every byte, alone and word-final, plus a few merges."""
    directory.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab = {char: index for index, char in enumerate(chars)}
    vocab.update({char + "</w>": 256 + index for index, char in enumerate(chars)})
    merges = [("t", "h"), ("th", "e</w>"), ("a", "t</w>"), ("o", "n</w>")]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": 77, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "tokenizer_class": "CLIPTokenizer"}))
    return len(vocab)


def build_tiny_pipeline(directory: Path, *, seed: int = 0, width: int = 16) -> Path:
    """Save a tiny text-to-image pipeline (diffusers layout) into ``directory``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    vocab_size = _write_tokenizer(directory / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(directory / "tokenizer")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=vocab_size, max_position_embeddings=77, projection_dim=32,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1))
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(width, 2 * width, 2 * width), norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=4,
        block_out_channels=(4, 4, 8, 8), mid_block_add_attention=False, sample_size=512,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        timestep_spacing="trailing", steps_offset=1)
    pipeline = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(directory, safe_serialization=True)
    return directory


def catalog_entry(directory: Path, model_id: str = MODEL_ID, *, aliases: tuple[str, ...] = (),
                  steps: int = 2) -> str:
    """The folder as a user-catalog TOML entry: every file with its size and sha256."""
    lines = ["[[models]]", f'id = "{model_id}"', 'kind = "image"', 'engine = "diffusers"',
             'description = "tiny random Stable Diffusion (tests)"']
    if aliases:
        lines.append("aliases = [" + ", ".join(f'"{a}"' for a in aliases) + "]")
    lines += ["[models.options]", f"steps = {steps}", "guidance_scale = 0.0", ""]
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines += ["[[models.files]]", f'path = "{path.relative_to(directory).as_posix()}"',
                  f"size = {path.stat().st_size}", f'sha256 = "{digest}"', ""]
    return "\n".join(lines)
