"""A loaded JanusModel's weights back in the official layout: the loader's key map run in reverse.

For every key the official layout holds (`official_key_shapes`), the loader knows where it goes (`key_mapper`: a
parameter, maybe a row range of a fused one, maybe a reshape); this takes it from there. So a model built or trained
here (the toy, `janus_rt.toy`) is saved in exactly the files the strict loader reads, and loading them gives back the
same tensors (tested).
"""

from __future__ import annotations

import torch

from janus_rt.checkpoint.official_keys import official_key_shapes
from janus_rt.checkpoint.weights import key_mapper
from janus_rt.model.janus import JanusModel


def official_state_dict(model: JanusModel, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """`{official key: tensor}` of every key the official layout holds, contiguous, on the CPU, in `dtype`."""
    cfg = model.cfg
    if cfg.layout != "official":
        raise ValueError(f"the model was loaded from the {cfg.layout} layout; its config maps official keys only "
                         "when it came from an official checkpoint")
    params = dict(model.named_parameters())
    mapper = key_mapper(cfg)
    out = {}
    for key, shape in official_key_shapes(cfg).items():
        targets = mapper(key)
        if not targets:
            raise KeyError(f"{key}: the loader maps it to no parameter, so it cannot be written back")
        (target,) = targets
        tensor = params[target.param].detach()
        if target.rows is not None:
            tensor = tensor[target.rows[0]:target.rows[1]]
        out[key] = tensor.reshape(shape).to(device="cpu", dtype=dtype).contiguous()
    return out
