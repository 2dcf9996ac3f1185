"""The janus-rt engine: one request loop with continuous batching over thin step backends.

`Engine` (core.py) runs requests; `SamplingParams` (params.py) is every per-request knob; `EngineConfig`
(pool.py) sizes the KV rows; `StepBackend` (primitives.py) is what a backend implements.
"""

from .core import Engine, EngineError
from .params import SamplingParams
from .pool import EngineConfig
from .primitives import StepBackend
from .request import Group, Request

__all__ = ["Engine", "EngineConfig", "EngineError", "Group", "Request", "SamplingParams", "StepBackend"]
