"""`APIError`: a refused or failed request, rendered as OpenAI's error body with its HTTP status.

Body: `{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`. `param` names the offending field
(dotted for nested ones, e.g. `messages.0.content`), `code` is a short machine-readable reason that the
metrics count rejections by. Messages say what was wrong and what to do.
"""

from __future__ import annotations

from typing import Mapping

from janus_rt.errors import InputError
from janus_rt.spelling import Spelling

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
         405: "invalid_request_error", 408: "timeout_error", 413: "invalid_request_error",
         415: "invalid_request_error", 429: "rate_limit_error", 500: "server_error", 503: "service_unavailable_error",
         504: "timeout_error"}


class APIError(Exception):
    """An HTTP error with an OpenAI-style body (see module docstring)."""

    def __init__(self, status: int, message: str, *, code: str, param: str | None = None,
                 headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    @property
    def type(self) -> str:
        return TYPES.get(self.status, "invalid_request_error" if self.status < 500 else "server_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str = "invalid_value") -> APIError:
    """A 400 for a bad field."""
    return APIError(400, message, code=code, param=param)


def from_input_error(error: InputError, code: str = "invalid_value", spelling: Spelling | None = None) -> APIError:
    """A library InputError as a 400: its own `code` when it has one (else `code`), its `param` in the request's
    field names (`spelling`: the library's `num_images` is the body's `n`)."""
    param = getattr(error, "param", None)
    if param is not None and spelling is not None:
        param = spelling.name(param)
    return APIError(400, str(error), code=getattr(error, "code", None) or code, param=param)
