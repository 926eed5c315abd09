"""Pictures in and out: uploads checked and decoded, masks read, results encoded.

Everything here is plain Pillow and numpy work with no HTTP and no model: the
service runs it in a worker thread. Refusals are ``InvalidRequest`` errors
naming the field (``image``, ``mask``) the way the API does.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, UnidentifiedImageError

from hearth.errors import InvalidRequest

MB = 1024 * 1024
# Pillow refuses to decode pictures past this many pixels (a decompression bomb is a 400, not a crash).
MAX_INPUT_PIXELS = 4096 * 4096
Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS

_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_PIL_FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}


def media_type(output_format: str) -> str:
    return _MEDIA_TYPES[output_format]


@dataclass(frozen=True)
class Upload:
    """One uploaded picture: its field name, file name and bytes."""

    param: str  # "image", "image[1]", "mask"
    filename: str
    data: bytes


@dataclass(frozen=True)
class Decoded:
    image: Image.Image  # RGBA
    has_alpha: bool
    format: str  # png | jpeg | webp


def decode(upload: Upload, *, formats: tuple[str, ...], max_bytes: int, square: bool) -> Decoded:
    """The upload as an RGBA picture, or a 400 saying what is wrong with it."""
    param = upload.param
    if not upload.data:
        raise InvalidRequest(f"The file '{upload.filename}' is empty.", param=param,
                             code="invalid_image")
    if len(upload.data) >= max_bytes:
        raise InvalidRequest(
            f"The file '{upload.filename}' is {len(upload.data) / MB:.1f} MB; images must be less "
            f"than {max_bytes // MB} MB.", param=param, code="image_too_large")
    try:
        with Image.open(io.BytesIO(upload.data)) as opened:
            kind = _PIL_FORMATS.get(str(opened.format))
            if kind not in formats:
                shown = " or ".join(f.upper() for f in formats)
                raise InvalidRequest(
                    f"Invalid input image: '{upload.filename}' must be a {shown} file "
                    f"(got {opened.format or 'an unknown format'}).", param=param,
                    code="invalid_image_format")
            opened.load()
            has_alpha = opened.mode in ("RGBA", "LA", "PA") or (
                opened.mode == "P" and "transparency" in opened.info)
            image = opened.convert("RGBA")
    except InvalidRequest:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise InvalidRequest(f"The file '{upload.filename}' is not a valid image (it could not be "
                             "decoded).", param=param, code="invalid_image") from None
    if square and image.width != image.height:
        raise InvalidRequest(f"Invalid input image: '{upload.filename}' must be square "
                             f"(got {image.width}x{image.height}).", param=param,
                             code="invalid_image_dimensions")
    return Decoded(image, has_alpha, kind)


def transparent_region(decoded: Decoded) -> np.ndarray | None:
    """Where the picture is fully transparent (alpha 0), or None if it is nowhere."""
    if not decoded.has_alpha:
        return None
    region = np.asarray(decoded.image.getchannel("A")) == 0
    return region if region.any() else None


def mask_region(mask: Decoded, image: Decoded, filename: str) -> np.ndarray:
    """The area a mask marks for editing (its fully transparent pixels), checked against the image."""
    if mask.image.size != image.image.size:
        raise InvalidRequest(
            f"Invalid mask: '{filename}' is {mask.image.width}x{mask.image.height} but the image is "
            f"{image.image.width}x{image.image.height}; they must be the same size.",
            param="mask", code="invalid_mask")
    if not mask.has_alpha:
        raise InvalidRequest(f"Invalid mask: '{filename}' has no alpha channel; its fully "
                             "transparent pixels mark the area to edit.", param="mask",
                             code="invalid_mask")
    region = transparent_region(mask)
    if region is None:
        raise InvalidRequest(f"Invalid mask: '{filename}' has no fully transparent pixels, so "
                             "there is nothing to edit.", param="mask", code="invalid_mask")
    return region


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """``image`` scaled to exactly ``width`` x ``height`` (RGB)."""
    rgb = image.convert("RGB")
    return rgb if rgb.size == (width, height) else rgb.resize((width, height), Image.Resampling.LANCZOS)


def fit_region(region: np.ndarray, width: int, height: int) -> np.ndarray:
    if region.shape == (height, width):
        return region
    scaled = Image.fromarray(region.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(scaled) > 127


def collage(images: list[Image.Image], width: int, height: int) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """Several pictures side by side in a grid on one canvas; also the first one's box.

    How several reference images become one starting picture for a model
    that reads only one: each keeps its aspect ratio inside its cell.
    """
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    cell_w, cell_h = width // columns, height // rows
    canvas = Image.new("RGB", (width, height), (127, 127, 127))
    first_box = (0, 0, cell_w, cell_h)
    for index, picture in enumerate(images):
        scale = min(cell_w / picture.width, cell_h / picture.height)
        w, h = max(1, round(picture.width * scale)), max(1, round(picture.height * scale))
        left = (index % columns) * cell_w + (cell_w - w) // 2
        top = (index // columns) * cell_h + (cell_h - h) // 2
        canvas.paste(picture.convert("RGB").resize((w, h), Image.Resampling.LANCZOS), (left, top))
        if index == 0:
            first_box = (left, top, left + w, top + h)
    return canvas, first_box


def composite(generated: Image.Image, original: Image.Image, region: np.ndarray) -> Image.Image:
    """``generated`` inside ``region``, ``original`` everywhere else, pixel for pixel."""
    out = np.where(region[..., None], np.asarray(generated.convert("RGB")),
                   np.asarray(original.convert("RGB")))
    return Image.fromarray(out.astype(np.uint8), "RGB")


# A plain backdrop is asked for when a transparent background is wanted, then keyed out.
TRANSPARENT_HINT = ", isolated on a plain white background"
_KEY_SIDE = 256  # the backdrop is found on a copy at most this big, then scaled back
_KEY_TOLERANCE = 48


def key_out_background(image: Image.Image) -> Image.Image:
    """RGBA: the backdrop (the border's colour, where it reaches from the edges) made transparent.

    The border's median colour is taken as the backdrop; pixels near it that
    connect to the picture's edge become transparent, with a softened edge.
    """
    rgb = np.asarray(image.convert("RGB")).astype(np.int16)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    backdrop = np.median(border, axis=0)
    near = (np.abs(rgb - backdrop).max(axis=2) <= _KEY_TOLERANCE)
    small = Image.fromarray(near.astype(np.uint8) * 255)
    scale = min(1.0, _KEY_SIDE / max(small.size))
    small = small.resize((max(1, round(small.width * scale)), max(1, round(small.height * scale))),
                         Image.Resampling.NEAREST)
    # One flood fill from a corner of a frame of backdrop reaches every edge-connected region.
    framed = Image.new("L", (small.width + 2, small.height + 2), 255)
    framed.paste(small, (1, 1))
    ImageDraw.floodfill(framed, (0, 0), 128, thresh=0)
    reached = framed.crop((1, 1, small.width + 1, small.height + 1)).point(lambda v: 255 if v == 128 else 0)
    alpha_mask = reached.resize(image.size, Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(1))
    alpha = 255 - np.asarray(alpha_mask)
    out = image.convert("RGBA")
    out.putalpha(Image.fromarray(alpha.astype(np.uint8), "L"))
    return out


def encode(image: Image.Image, output_format: str, compression: int | None, *, transparent: bool) -> bytes:
    """The picture as PNG, JPEG or WebP; ``compression`` is the quality (0-100) of the lossy two."""
    buffer = io.BytesIO()
    picture = image if transparent else image.convert("RGB")
    quality = 100 if compression is None else compression
    if output_format == "png":
        picture.save(buffer, format="PNG", compress_level=6)
    elif output_format == "jpeg":
        picture.convert("RGB").save(buffer, format="JPEG", quality=quality)
    else:
        picture.save(buffer, format="WEBP", quality=quality, lossless=quality == 100)
    return buffer.getvalue()
