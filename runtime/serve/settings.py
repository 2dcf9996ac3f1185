"""`ServeSettings`: every knob of the HTTP server in one frozen, validated dataclass (the CLI fills it)."""

from __future__ import annotations

from dataclasses import dataclass

from janus_rt.errors import InputError
from janus_rt.engine.params import CHAT_DEFAULTS

API_KEY_ENV = "JANUS_RT_API_KEY"  # read by the CLI when --api-key is not given
MiB = 1 << 20


@dataclass(frozen=True)
class ServeSettings:
    """How the server listens, admits, bounds and authenticates requests."""

    host: str = "127.0.0.1"  # interface to bind (127.0.0.1: this machine only)
    port: int = 8000  # TCP port (0: any free port)
    model_name: str = "janus"  # the id /v1/models lists and requests may name in `model`
    max_queue: int = 64  # requests waiting for KV rows; one more is answered 429 with Retry-After
    retry_after_s: int = 1  # the Retry-After a 429 carries
    request_timeout_s: float | None = 600.0  # a request still running after this is cancelled (504); None = never
    api_key: str | None = None  # when set, /v1/* require `Authorization: Bearer <api_key>`
    max_body_bytes: int = 32 * MiB  # a larger request body is refused (413) before it is parsed
    max_image_pixels: int = 4096 * 4096  # width x height of one input image, read from its header before decoding
    max_images_per_request: int = 16  # `n` of one /v1/images/generations request
    default_max_tokens: int = CHAT_DEFAULTS.max_new_tokens  # answer length when a chat request names none (cut to what the context holds)
    grace_period_s: float = 30.0  # on SIGTERM: how long in-flight requests may take to finish
    allow_origins: tuple[str, ...] = ()  # browser origins (scheme://host[:port]) allowed to call; others get 403
    read_timeout_s: float = 30.0  # a request's headers, and each piece of its body, must arrive within this
    ui: bool = True  # serve the web playground at GET / (`janus-rt serve --no-ui`: no page, a 404)

    def __post_init__(self) -> None:
        positive_ints = ("max_queue", "max_body_bytes", "max_image_pixels", "max_images_per_request",
                         "default_max_tokens")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}", param=name)
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 0 <= self.port <= 65535:
            raise InputError(f"port must be an integer in [0, 65535] (0: any free port), got {self.port!r}", param="port")
        if not isinstance(self.retry_after_s, int) or self.retry_after_s < 0:
            raise InputError(f"retry_after_s must be an integer >= 0, got {self.retry_after_s!r}", param="retry_after_s")
        if self.request_timeout_s is not None and not self.request_timeout_s > 0:
            raise InputError(f"request_timeout_s must be > 0 seconds or None (no limit), got {self.request_timeout_s!r}",
                             param="request_timeout_s")
        if not self.grace_period_s >= 0:
            raise InputError(f"grace_period_s must be >= 0 seconds, got {self.grace_period_s!r}", param="grace_period_s")
        if not self.read_timeout_s > 0:
            raise InputError(f"read_timeout_s must be > 0 seconds, got {self.read_timeout_s!r}", param="read_timeout_s")
        if not isinstance(self.allow_origins, tuple) or not all(_is_origin(o) for o in self.allow_origins):
            raise InputError("allow_origins must be a tuple of origins like 'https://app.example.com' or "
                             "'http://localhost:3000' (scheme://host[:port], no path) or '*', got "
                             f"{self.allow_origins!r}", param="allow_origins")
        if not isinstance(self.ui, bool):
            raise InputError(f"ui must be True or False, got {self.ui!r}", param="ui")
        if self.api_key is not None and not self.api_key.strip():
            raise InputError("api_key is empty; give a non-empty key or none (no authentication)", param="api_key")
        if not self.model_name.strip():
            raise InputError("model_name is empty; name the model clients will ask for", param="model_name")


def _is_origin(origin: object) -> bool:
    """`*`, or scheme://host[:port] with no path (how a browser spells the Origin header)."""
    if origin == "*":
        return True
    if not isinstance(origin, str):
        return False
    scheme, sep, rest = origin.partition("://")
    return bool(sep) and scheme in ("http", "https") and bool(rest) and "/" not in rest
