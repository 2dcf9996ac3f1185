"""What preparing a request needs from a loaded model: its tokenizer, chat format, sizes and row capacity."""

from __future__ import annotations

import math
from dataclasses import dataclass

from janus_rt.checkpoint.tokenizer import JanusTokenizer
from janus_rt.engine.capacity import RowCapacity
from janus_rt.model.config import ImageProcessorConfig
from janus_rt.requests.prompts import ChatFormat


@dataclass(frozen=True)
class RequestContext:
    """The loaded model as request preparation sees it (`Janus.request_context` builds one)."""

    tokenizer: JanusTokenizer
    chat_format: ChatFormat
    capacity: RowCapacity  # the engine's one capacity check
    image_tokens: int  # tokens one generated image samples (the VQ grid, 576)
    tokens_per_input_image: int  # prompt positions of one understood image (SigLIP patches, 576)
    image_processor: ImageProcessorConfig  # resize / normalize of understood images

    @property
    def image_grid(self) -> int:
        """Token rows (and columns) of a generated image (24)."""
        return math.isqrt(self.image_tokens)
