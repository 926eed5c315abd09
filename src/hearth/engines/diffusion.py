"""Text-to-image, image-to-image and inpainting on a diffusers Stable Diffusion pipeline.

One engine per model folder in the diffusers layout (``model_index.json``,
``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``):
SD-Turbo, any Stable Diffusion 1.x/2.x checkpoint, or its inpainting
variant (a UNet that reads 9 channels: latents, mask and masked image). The
three pipelines share one set of weights (``from_pipe``), so a model is held
in memory once whatever it is asked to do.

The engine is synchronous: the model runner calls it from a worker thread,
one picture at a time. Each call takes a ``cancelled`` callable that is
polled after every denoising step; when it answers True the call stops there
with ``Cancelled`` (a client that disconnected stops costing anything).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

# A model's default denoising steps and guidance when its catalog entry names none: SD-Turbo's.
DEFAULT_STEPS = 2
DEFAULT_GUIDANCE = 0.0


class Cancelled(Exception):
    """The caller asked to stop (its client left); raised between denoising steps."""


@dataclass(frozen=True)
class Picture:
    image: Image.Image  # RGB, the requested size
    prompt_used: str  # the prompt as the text encoder read it (its tokenizer's window)


def _never() -> bool:
    return False


class DiffusionEngine:
    """A Stable Diffusion pipeline that paints, repaints and varies pictures of any size."""

    def __init__(self, model_dir: Path, *, steps: int = DEFAULT_STEPS,
                 guidance_scale: float = DEFAULT_GUIDANCE, threads: int | None = None,
                 cuda: bool = False) -> None:
        from transformers.utils import logging as transformers_logging

        # Their progress bars and notices would fill the server's log on every load.
        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
        # torch is imported with the first image model, not with the server (~1 s, and memory).
        import torch
        from diffusers import (
            AutoPipelineForImage2Image,
            AutoPipelineForInpainting,
            DiffusionPipeline,
        )
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.set_verbosity_error()
        diffusers_logging.disable_progress_bar()
        self.threads = threads
        if threads:
            torch.set_num_threads(threads)
        # On an NVIDIA GPU (HEARTH_DEVICE, and a CUDA build of torch) in half precision; else the CPU.
        self.device = "cuda" if cuda and torch.cuda.is_available() else "cpu"
        base = DiffusionPipeline.from_pretrained(
            model_dir, dtype=torch.float16 if self.device == "cuda" else torch.float32).to(self.device)
        self.inpainting = int(base.unet.config.in_channels) == 9
        self._inpaint = AutoPipelineForInpainting.from_pipe(base)
        if self.inpainting:
            self._text: Any = None
            self._image: Any = None
        else:
            self._text = base
            self._image = AutoPipelineForImage2Image.from_pipe(base)
        for pipeline in (self._text, self._image, self._inpaint):
            if pipeline is not None:
                pipeline.set_progress_bar_config(disable=True)
        self.tokenizer = base.tokenizer
        self.scale = int(base.vae_scale_factor)
        self.steps = steps
        self.guidance_scale = guidance_scale
        # Requests that may wait for this model beyond the one it is painting (set by its loader).
        self.queue_depth: int | None = None
        # A pipeline is not safe to run twice at once (its scheduler holds the run's timesteps).
        self._busy = threading.Lock()

    # -- what the service asks --------------------------------------------------------

    def count_tokens(self, prompt: str) -> int:
        """Tokens of ``prompt`` in the text encoder's vocabulary (all of them, read or not)."""
        return len(self.tokenizer(prompt, truncation=False, add_special_tokens=False).input_ids)

    def prompt_used(self, prompt: str) -> str:
        """The part of ``prompt`` the text encoder reads (its window is 77 tokens for CLIP)."""
        limit = int(self.tokenizer.model_max_length) - 2
        ids = self.tokenizer(prompt, truncation=False, add_special_tokens=False).input_ids
        if len(ids) <= limit:
            return prompt
        return str(self.tokenizer.decode(ids[:limit], skip_special_tokens=True)).strip()

    def generate(self, prompt: str, *, width: int, height: int, steps: int | None = None,
                 seed: int | None = None, cancelled: Callable[[], bool] = _never,
                 partials: Partials | None = None) -> Picture:
        """A new picture of ``prompt`` at ``width`` x ``height``."""
        self._check_size(width, height)
        if self.inpainting:
            # An inpainting model paints a new picture as an edit of a blank one, all of it masked.
            blank = Image.new("RGB", (width, height), (127, 127, 127))
            everything = Image.new("L", (width, height), 255)
            return self.inpaint(prompt, blank, everything, steps=steps, seed=seed, cancelled=cancelled,
                                partials=partials)
        image = self._run(self._text, prompt, steps or self.steps, seed, cancelled, partials,
                          width=width, height=height)
        return Picture(image, self.prompt_used(prompt))

    def vary(self, prompt: str, image: Image.Image, *, strength: float, steps: int | None = None,
             seed: int | None = None, cancelled: Callable[[], bool] = _never,
             partials: Partials | None = None) -> Picture:
        """A picture made from ``image``: noised by ``strength`` (0-1), then denoised toward ``prompt``."""
        width, height = image.size
        self._check_size(width, height)
        if self.inpainting:
            everything = Image.new("L", (width, height), 255)
            return self.inpaint(prompt, image, everything, steps=steps, seed=seed,
                                cancelled=cancelled, strength=strength, partials=partials)
        total = _steps_for_strength(steps or self.steps, strength)
        out = self._run(self._image, prompt, total, seed, cancelled, partials,
                        image=image.convert("RGB"), strength=strength)
        return Picture(out, self.prompt_used(prompt))

    def inpaint(self, prompt: str, image: Image.Image, mask: Image.Image, *, steps: int | None = None,
                seed: int | None = None, cancelled: Callable[[], bool] = _never,
                strength: float = 1.0, partials: Partials | None = None) -> Picture:
        """``image`` repainted where ``mask`` (L mode, same size) is white, toward ``prompt``.

        The pipeline works in latent space, so it also touches pixels near the
        mask's edge; callers that promise the rest unchanged paste it back.
        """
        width, height = image.size
        self._check_size(width, height)
        total = _steps_for_strength(steps or self.steps, strength)
        out = self._run(self._inpaint, prompt, total, seed, cancelled, partials,
                        image=image.convert("RGB"), mask_image=mask.convert("L"), width=width,
                        height=height, strength=strength)
        return Picture(out, self.prompt_used(prompt))

    # -- the pipelines ----------------------------------------------------------------

    @staticmethod
    def _preview(pipe: Any, latents: torch.Tensor) -> Image.Image:
        """The latents so far, decoded by the VAE (a partial picture)."""
        import torch

        with torch.inference_mode():
            decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
        image: Image.Image = pipe.image_processor.postprocess(decoded, output_type="pil")[0]
        return image.convert("RGB")

    def _check_size(self, width: int, height: int) -> None:
        if width % self.scale or height % self.scale:
            raise ValueError(f"width and height must be multiples of {self.scale}")

    def _run(self, pipeline: Any, prompt: str, steps: int, seed: int | None,
             cancelled: Callable[[], bool], partials: Partials | None, **kwargs: Any) -> Image.Image:
        import torch

        if cancelled():
            raise Cancelled
        generator = torch.Generator(self.device).manual_seed(
            seed if seed is not None else int(np.random.default_rng().integers(2**63)))
        # Image-to-image runs only the last part of its schedule: count the steps that run.
        running = steps if "strength" not in kwargs else min(steps, int(steps * kwargs["strength"]))
        wanted = partials.after_steps(running) if partials is not None else set()

        def step_end(pipe: Any, step: int, _timestep: Any, values: dict[str, Any]) -> dict[str, Any]:
            if cancelled():
                raise Cancelled
            if partials is not None and step in wanted:
                partials.emit(self._preview(pipe, values["latents"]))
            return values

        if self.threads:
            # OpenMP keeps its thread count per calling thread: set it on the thread that paints.
            torch.set_num_threads(self.threads)
        with self._busy, torch.inference_mode():
            result = pipeline(prompt=prompt, num_inference_steps=steps,
                              guidance_scale=self.guidance_scale, generator=generator,
                              callback_on_step_end=step_end, output_type="pil", **kwargs)
        image: Image.Image = result.images[0]
        return image.convert("RGB")


@dataclass
class Partials:
    """Asks for up to ``count`` pictures of the work in progress, handed to ``emit`` as they come.

    They are taken after evenly spaced denoising steps, never the last (that
    one is the picture itself), so a one-step model sends none.
    """

    count: int
    emit: Callable[[Image.Image], None]

    def after_steps(self, steps: int) -> set[int]:
        if self.count <= 0 or steps <= 1:
            return set()
        return {min(steps - 2, round((k + 1) * steps / (self.count + 1)) - 1)
                for k in range(min(self.count, steps - 1))}


def _steps_for_strength(steps: int, strength: float) -> int:
    """Image-to-image runs only the last ``strength`` of its schedule: ask for enough steps
    that ``steps`` of them actually run (a one-step model at strength 0.5 needs 2)."""
    return max(steps, math.ceil(steps / max(strength, 1e-3)))
