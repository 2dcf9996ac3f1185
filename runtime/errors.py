"""Exception types raised by janus-rt: every message says what was wrong and what to do."""


class JanusRTError(Exception):
    """Base class of every error janus-rt raises on purpose."""


class CheckpointError(JanusRTError):
    """A checkpoint directory, config or weight file is missing, corrupt or does not match the model."""


class InputError(JanusRTError, ValueError):
    """A caller passed an invalid prompt, image, token tensor or sampling parameter."""
