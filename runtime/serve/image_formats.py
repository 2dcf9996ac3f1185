"""Image files of the images API: uint8 pixels -> PNG, JPEG or WebP, as base64 (OpenAI's `output_format`).

PNG is lossless and takes no setting (the same bytes the server always sent); JPEG and WebP are lossy and take
OpenAI's `output_compression` (0..100) as Pillow's `quality`: 100 keeps the most detail, lower values give
smaller files.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

OUTPUT_FORMATS = ("png", "jpeg", "webp")  # OpenAI's names; "png" by default
LOSSY_FORMATS = ("jpeg", "webp")  # the formats `output_compression` applies to
DEFAULT_COMPRESSION = 100  # OpenAI's default `output_compression`
PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def encode_image(image: np.ndarray, output_format: str = "png", compression: int | None = None) -> bytes:
    """uint8 HWC pixels -> the bytes of one image file in `output_format` (`compression`: quality of a lossy one)."""
    buffer = io.BytesIO()
    if output_format == "png":
        Image.fromarray(image).save(buffer, format="PNG")
    else:
        quality = DEFAULT_COMPRESSION if compression is None else compression
        Image.fromarray(image).save(buffer, format=PILLOW_FORMATS[output_format], quality=quality)
    return buffer.getvalue()


def image_b64(image: np.ndarray, output_format: str = "png", compression: int | None = None) -> str:
    """`encode_image` as base64 text (a response's `b64_json`)."""
    return base64.b64encode(encode_image(image, output_format, compression)).decode("ascii")
