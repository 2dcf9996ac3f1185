"""The janus-rt engine: one request loop with continuous batching over thin step backends.

`Engine` (core.py) runs requests; `SamplingParams` (params.py) is every per-request knob; `EngineConfig`
(pool.py) sizes the KV rows; `StepBackend` (primitives.py) is what a backend implements.
"""

from janus_rt.engine.core import Engine, EngineError
from janus_rt.engine.params import SamplingParams
from janus_rt.engine.pool import EngineConfig
from janus_rt.engine.primitives import StepBackend
from janus_rt.engine.request import Group, Request

__all__ = ["Engine", "EngineConfig", "EngineError", "Group", "Request", "SamplingParams", "StepBackend"]
