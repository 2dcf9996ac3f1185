"""janus-rt: a low-latency inference runtime for DeepSeek's Janus / Janus-Pro models.

    import janus_rt
    m = janus_rt.load("/path/to/Janus-Pro-1B")
    r = m.generate_images("a red fox in the snow", num_images=2, seed=0)   # r.tokens, r.images
    a = m.chat("What is in this picture?", image="photo.jpg")              # a.text, a.token_ids
"""

import torch as _torch

from janus_rt.kernels.interpret import enable_interpreter_if_no_gpu as _enable_interpreter_if_no_gpu

# Triton kernels can only run in its interpreter without a GPU, and that must be chosen before triton is imported.
_enable_interpreter_if_no_gpu(_torch.cuda.is_available())

from janus_rt.api import ChatResult, ImageResult, Janus, load  # noqa: E402
from janus_rt.previews import Preview  # noqa: E402
from janus_rt.errors import CheckpointError, InputError, JanusRTError  # noqa: E402
from janus_rt.version import __version__  # noqa: E402

__all__ = ["load", "Janus", "ImageResult", "ChatResult", "Preview", "JanusRTError", "CheckpointError", "InputError", "__version__"]
