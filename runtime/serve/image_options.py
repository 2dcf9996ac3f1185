"""The image route's own fields, checked before any work: `check_image_options(body, ...)` -> `ImageOptions`.

What the library does not see: the size the model makes, the response format, the server's image cap, and how the
answer is sent (OpenAI's stream, partial_images, output_format, output_compression, background). Each refusal is a
400 naming the field and saying what to send instead. The sampling fields, the prompt, the negative prompt and the
partial-image count against the model's rows are the library's checks (`check_generation_args`, `prepare_images`).
"""

from __future__ import annotations

from dataclasses import dataclass

from janus_rt.serve.errors import invalid
from janus_rt.serve.image_formats import LOSSY_FORMATS, OUTPUT_FORMATS
from janus_rt.serve.schemas import MAX_PARTIAL_IMAGES, ImageGenerationRequest


@dataclass(frozen=True)
class ImageOptions:
    """How one image request's answer is made and sent."""

    output_format: str  # "png", "jpeg" or "webp"
    compression: int | None  # Pillow quality of a jpeg / webp file (None: png, or the default)
    stream: bool  # server-sent events (image_stream.py) instead of one JSON body
    partial_images: int  # previews asked per image (0 without stream)
    progress_events: bool  # janus_rt.progress events in the stream


def check_image_options(body: ImageGenerationRequest, image_size: str, max_images: int) -> ImageOptions:
    """The checks of the module docstring (size, response_format and n first, as the route always made them)."""
    given = body.model_fields_set
    if body.size is not None and body.size != image_size:
        raise invalid(f"size {body.size!r} is not available: this model makes {image_size} images only",
                      "size", code="unsupported_size")
    if body.response_format != "b64_json":
        raise invalid(f"response_format {body.response_format!r} is not available: images come back inline as "
                      "b64_json (in output_format); the server stores none to link to", "response_format",
                      code="unsupported_response_format")
    if not 1 <= body.n <= max_images:
        raise invalid(f"n must be an integer in [1, {max_images}], got {body.n}; ask for more images in several "
                      "requests", "n")
    partial_images = body.partial_images or 0
    if not 0 <= partial_images <= MAX_PARTIAL_IMAGES:
        raise invalid(f"partial_images must be an integer in [0, {MAX_PARTIAL_IMAGES}], got {partial_images}",
                      "partial_images")
    if "partial_images" in given and body.partial_images is not None and not body.stream:
        raise invalid("partial_images needs \"stream\": true: as in OpenAI's images API, partial images only come "
                      "as server-sent events; add \"stream\": true or leave partial_images out", "partial_images")
    if body.progress_events and not body.stream:
        raise invalid("progress_events needs \"stream\": true (progress comes as server-sent events); add "
                      "\"stream\": true or leave progress_events out", "progress_events")
    output_format = body.output_format or "png"
    if output_format not in OUTPUT_FORMATS:
        raise invalid(f"output_format {output_format!r} is not available; choose one of: "
                      f"{', '.join(OUTPUT_FORMATS)}", "output_format", code="unsupported_output_format")
    compression = body.output_compression if "output_compression" in given else None
    if compression is not None and not 0 <= compression <= 100:
        raise invalid(f"output_compression must be an integer in [0, 100], got {compression}", "output_compression")
    if compression is not None and output_format not in LOSSY_FORMATS:
        raise invalid(f"output_compression applies to jpeg and webp only, not to {output_format} (lossless); "
                      "leave it out or set output_format to jpeg or webp", "output_compression")
    if body.background == "transparent":
        raise invalid("background \"transparent\" is not available: Janus images are opaque (no alpha channel); "
                      "use \"opaque\" or \"auto\"", "background", code="unsupported_background")
    return ImageOptions(output_format, compression, body.stream, partial_images, body.progress_events)
