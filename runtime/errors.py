"""Exception types raised by janus-rt: every message says what was wrong and what to do."""


class JanusRTError(Exception):
    """Base class of every error janus-rt raises on purpose."""


class CheckpointError(JanusRTError):
    """A checkpoint directory, config or weight file is missing, corrupt or does not match the model."""


class InputError(JanusRTError, ValueError):
    """A caller passed an invalid prompt, image, token tensor or sampling parameter.

    `param` names the offending argument when there is one (servers report it as the error's `param`); `code`
    is a short machine-readable reason where one applies (e.g. "context_length_exceeded"; servers report it).
    """

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code
