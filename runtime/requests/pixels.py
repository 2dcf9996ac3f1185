"""Image pre-processing for understanding and post-processing of decoded images, exactly as the reference.

Pre: RGB -> bicubic resize of the long side to `image_size` (short side truncated, at least `min_size`)
-> pad to a square with the mean colour, centred -> CHW float (x * 1/255, float64 then float32)
-> (x - mean) / std.
Post: decoded `[-1, 1]` -> clip((x + 1) / 2 * 255, 0, 255) -> uint8 by truncation, NHWC.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from janus_rt.model.config import ImageProcessorConfig
from janus_rt.errors import InputError



@dataclass(frozen=True)
class HeaderOnlyImage:
    """An image opened from its header only (size known, pixels not decoded yet), and the field it came from, so a
    decode failure later names it (a server's upload: decoded only once the request passed every cheaper check)."""

    image: Image.Image
    param: str


ImageLike = Union[str, Path, Image.Image, np.ndarray, HeaderOnlyImage]


def read_image_file(path: Path, label: str = "image file") -> Image.Image:
    """Decode an image file fully (so a bad file fails here, not later); errors start with `label` and the path."""
    if path.is_dir():
        raise InputError(f"{label} {path} is a directory, not an image file; pass the image's path")
    if not path.exists():
        raise InputError(f"{label} {path} does not exist")
    try:
        with Image.open(path) as opened:
            opened.load()
            return opened.copy()
    except PermissionError as e:
        raise InputError(f"{label} {path} cannot be read ({e.strerror}); check its permissions") from None
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise InputError(f"{label} {path} is not a readable image ({e})") from None


def to_rgb_image(image: ImageLike) -> Image.Image:
    """Open a path / PIL image / uint8 HWC array as an RGB PIL image (RGBA, L, P, CMYK, ... converted)."""
    param = "image"
    if isinstance(image, HeaderOnlyImage):
        image, param = image.image, image.param
    if isinstance(image, (str, Path)):
        pil = read_image_file(Path(image))
    elif isinstance(image, Image.Image):
        pil = image
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise InputError(f"image array must be uint8 HWC, got dtype {image.dtype}")
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
            raise InputError(f"image array must be HWC with 1, 3 or 4 channels, got shape {list(image.shape)}")
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[image.shape[2]]
        pil = Image.fromarray(image[:, :, 0] if mode == "L" else image, mode=mode)
    else:
        raise InputError(f"image must be a path, a PIL image or a uint8 HWC numpy array, got {type(image).__name__}")
    if pil.width <= 0 or pil.height <= 0:
        raise InputError(f"image is empty ({pil.width}x{pil.height})")
    try:
        pil.load()  # an image opened from its header only (a server's upload) is decoded here, when needed
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"the image could not be decoded ({e}); send a complete, valid image file",
                         param=param, code="invalid_image") from None
    if pil.mode != "RGB":
        pil = pil.convert("RGB")
    return pil


def resize_and_pad(pil: Image.Image, cfg: ImageProcessorConfig) -> Image.Image:
    width, height = pil.size
    longest = max(width, height)
    new_h = max(int(height / longest * cfg.image_size), cfg.min_size)
    new_w = max(int(width / longest * cfg.image_size), cfg.min_size)
    pil = pil.resize((new_w, new_h), Image.Resampling.BICUBIC)
    if new_w == new_h:
        return pil
    side = max(new_w, new_h)
    canvas = Image.new(pil.mode, (side, side), cfg.background_color)
    canvas.paste(pil, (0, (new_w - new_h) // 2) if new_w > new_h else ((new_h - new_w) // 2, 0))
    return canvas


def preprocess(image: ImageLike, cfg: ImageProcessorConfig) -> torch.Tensor:
    """One image -> pixel values `[3, S, S]` float32."""
    pil = resize_and_pad(to_rgb_image(image), cfg)
    chw = np.asarray(pil, dtype=np.uint8).transpose(2, 0, 1)  # [3, S, S]
    x = (chw.astype(np.float64) * cfg.rescale_factor).astype(np.float32)
    if cfg.do_normalize:
        mean = np.asarray(cfg.image_mean, dtype=np.float32)[:, None, None]
        std = np.asarray(cfg.image_std, dtype=np.float32)[:, None, None]
        x = (x - mean) / std
    return torch.from_numpy(np.ascontiguousarray(x))


def postprocess(decoded: torch.Tensor) -> np.ndarray:
    """Decoded images `[N, 3, H, W]` in [-1, 1] -> uint8 `[N, H, W, 3]` (truncating, as the reference)."""
    nhwc = decoded.float().permute(0, 2, 3, 1).cpu().numpy()  # [N, H, W, 3]
    return np.clip((nhwc + 1) / 2 * 255, 0, 255).astype(np.uint8)
