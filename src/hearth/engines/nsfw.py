"""Yahoo's open_nsfw (a ResNet-50, as ONNX): how likely an image is sexually explicit.

Images are decoded by PyAV (FFmpeg reads PNG, JPEG, WebP, GIF, BMP and more)
and prepared as the model was trained: resized to 256x256, the centre
224x224 cropped, channels in BGR order less the training set's mean. The
model answers two probabilities, safe and not safe for work; the second is
the score.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import onnxruntime as ort

MODEL_FILE = "open-nsfw.onnx"
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
RESIZE, CROP = 256, 224
# A decoded image may hold at most this many pixels (a 64-megapixel photo).
MAX_PIXELS = 64_000_000


class ImageDecodeError(ValueError):
    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


class NsfwClassifier:
    def __init__(self, model_path: Path, *, threads: int | None = None) -> None:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(model_path), options,
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def scores(self, images: Sequence[bytes]) -> list[float]:
        """The probability that each image is sexually explicit; raises ImageDecodeError."""
        if not images:
            return []
        batch = np.stack([_pixels(index, image) for index, image in enumerate(images)])
        probabilities = self._session.run(None, {self._input: batch})[0]
        return [float(p) for p in probabilities[:, 1]]


def _pixels(index: int, image: bytes) -> np.ndarray:
    try:
        with av.open(io.BytesIO(image), mode="r") as container:
            if not container.streams.video:
                raise ImageDecodeError(index, "the data is not an image")
            stream = container.streams.video[0]
            # Refused from the header where it tells, before a small file inflates to gigabytes.
            _check_size(index, stream.codec_context.width, stream.codec_context.height)
            frame = next(container.decode(stream), None)
    except av.FFmpegError:
        raise ImageDecodeError(index, "FFmpeg could not decode it") from None
    if frame is None:
        raise ImageDecodeError(index, "it holds no picture")
    _check_size(index, frame.width, frame.height)
    rgb = frame.reformat(width=RESIZE, height=RESIZE, format="rgb24",
                         interpolation="BILINEAR").to_ndarray()
    offset = (RESIZE - CROP) // 2
    crop = rgb[offset:offset + CROP, offset:offset + CROP].astype(np.float32)
    return np.ascontiguousarray(crop[:, :, ::-1] - MEAN_BGR)


def _check_size(index: int, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(index, f"it is larger than {MAX_PIXELS:,} pixels")
