"""Pictures made for the tests, encoded by PyAV: nothing is carried as a binary file."""

from __future__ import annotations

import base64
import io

import av
import numpy as np


def png_data_url(pixels: np.ndarray) -> str:
    """An RGB array as a PNG in a base64 data URL, encoded by PyAV."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="image2pipe") as out:
        stream = out.add_stream("png", rate=1)
        stream.height, stream.width = pixels.shape[:2]
        stream.pix_fmt = "rgb24"
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")),
                       *stream.encode(None)]:
            out.mux(packet)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def landscape() -> np.ndarray:
    pixels = np.zeros((300, 400, 3), np.uint8)
    pixels[:200] = (90, 160, 230)  # sky
    pixels[200:] = (40, 140, 60)  # grass
    return pixels


def flat(colour: tuple[int, int, int]) -> np.ndarray:
    pixels = np.zeros((240, 320, 3), np.uint8)
    pixels[:] = colour
    return pixels
