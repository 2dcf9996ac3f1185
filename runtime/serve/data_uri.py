"""Input images of the chat route: `data:` URIs only, decoded with the pixel count capped before decoding.

The server never fetches a URL (an `http(s)://` image is refused): a client sends the bytes inline, as
`data:image/png;base64,...`. The image's header gives its size without decoding the pixels, so a
decompression bomb (a small file that inflates to gigapixels) is refused before any memory is spent on it; the
pixels are decoded only once the request has passed every cheaper check (`janus_rt.requests.chat.prepare_chat`
counts the images against the context first).
"""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image, UnidentifiedImageError

from janus_rt.requests.pixels import HeaderOnlyImage
from janus_rt.serve.errors import APIError, invalid


def decode_data_uri_image(uri: str, max_pixels: int, param: str) -> HeaderOnlyImage:
    """A `data:[<type>];base64,<bytes>` URI -> a PIL image opened from its header (decoded later, when its pixels are
    needed); a 400 naming `param` otherwise."""
    if uri.startswith(("http://", "https://")):
        raise invalid("image URLs are not fetched by this server; send the image inline as a data URI "
                      "(data:image/png;base64,...)", param, code="image_url_not_supported")
    if not uri.startswith("data:"):
        raise invalid("an image_url must be a data URI (data:image/png;base64,...)", param, code="invalid_image")
    header, sep, payload = uri[len("data:"):].partition(",")
    if not sep or not header.endswith(";base64"):
        raise invalid("the image data URI must be base64-encoded: data:image/<type>;base64,<data>", param,
                      code="invalid_image")
    try:
        raw = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise invalid(f"the image data URI is not valid base64 ({e})", param, code="invalid_image") from None
    return HeaderOnlyImage(open_capped(raw, max_pixels, param), param)


def open_capped(raw: bytes, max_pixels: int, param: str) -> Image.Image:
    """Open image bytes whose header says at most `max_pixels` pixels (the pixels are not decoded here)."""
    try:
        image = Image.open(io.BytesIO(raw))  # reads the header only
    except Image.DecompressionBombError as e:
        raise _too_large(str(e), max_pixels, param) from None
    except UnidentifiedImageError:  # its message names an in-memory buffer object: say what was sent instead
        raise invalid(f"the image could not be read: its {len(raw):,} bytes are not a PNG, JPEG, WebP, GIF or other "
                      "image PIL decodes", param, code="invalid_image") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise invalid(f"the image could not be read: not a PNG, JPEG, WebP, GIF or other image PIL decodes ({e})",
                      param, code="invalid_image") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise invalid(f"the image is empty ({width}x{height})", param, code="invalid_image")
    if width * height > max_pixels:
        raise _too_large(f"{width}x{height} = {width * height:,} pixels", max_pixels, param)
    return image


def _too_large(what: str, max_pixels: int, param: str) -> APIError:
    return invalid(f"the image is too large ({what}); at most {max_pixels:,} pixels are accepted: downscale it "
                   "(the model resizes it to its own input size anyway)", param, code="image_too_large")
