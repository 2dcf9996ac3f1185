"""janus-rt: a low-latency inference runtime for DeepSeek's Janus / Janus-Pro models.

    import janus_rt
    m = janus_rt.load("/path/to/Janus-Pro-1B")
    r = m.generate_images("a red fox in the snow", num_images=2, seed=0)   # r.tokens, r.images
    a = m.chat("What is in this picture?", image="photo.jpg")              # a.text, a.token_ids
"""

from .api import ChatResult, ImageResult, Janus, load
from .errors import CheckpointError, InputError, JanusRTError

__version__ = "0.1.0"

__all__ = ["load", "Janus", "ImageResult", "ChatResult", "JanusRTError", "CheckpointError", "InputError", "__version__"]
