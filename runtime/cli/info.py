"""`janus-rt info`: a checkpoint's variant, dimensions, parameter count and bytes, without loading its weights."""

from __future__ import annotations

import argparse
import json

import torch

from janus_rt.checkpoint.hub import resolve_model_path
from janus_rt.checkpoint.info import checkpoint_info, format_bytes, format_count


def add_info_args(i: argparse.ArgumentParser) -> None:
    i.description = "Print a checkpoint's variant, dimensions, parameter count and bytes; the weights are not loaded."
    i.add_argument("--model", required=True, help="checkpoint directory (or a hub id)")
    i.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="report runtime bytes in this dtype (default: as stored)")
    i.add_argument("--json", action="store_true", help="print JSON")


def run_info(args: argparse.Namespace) -> int:
    info = checkpoint_info(resolve_model_path(args.model), getattr(torch, args.dtype) if args.dtype else None)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    llm, v, vq = info["llm"], info["vision"], info["vq"]
    ck = info["checkpoint"]
    print(f"variant      {info['variant']} ({info['layout']} layout, {info['chat_format']} chat format)")
    print(f"language     hidden {llm['hidden']}, {llm['layers']} layers, {llm['heads']} heads "
          f"({llm['kv_heads']} kv) x {llm['head_dim']}, MLP {llm['intermediate']}, vocab {llm['vocab']}, context {llm['context']}")
    print(f"vision       SigLIP {v['image_size']}px / patch {v['patch']}, width {v['width']}, {v['layers']} layers, {v['heads']} heads")
    print(f"image gen    VQ {vq['codes']} codes x {vq['code_dim']}, {vq['image_tokens']} tokens -> {vq['image_size']}px")
    print(f"parameters   {info['parameters']:,} ({format_count(info['parameters'])})")
    print(f"bytes        {format_bytes(info['bytes'])} in {info['dtype']}")
    print(f"checkpoint   {', '.join(ck['files'])} ({ck['stored_dtype']}, {format_bytes(ck['file_bytes'])} on disk)")
    q, step = info.get("quantization"), info["step_bytes"]
    if q is not None:
        group = f", groups of {q['group_size']}{' + zero points' if q.get('zero_point') else ''}" if q["format"] == "int4" else ""
        print(f"quantized    {q['format']}{group}: {q['modules']} linears (transformer + heads); the rest in {q['dtype']}")
    print(f"per step     image {step['image'] / 2**20:,.1f} MiB, text {step['text'] / 2**20:,.1f} MiB of weights read "
          f"({'quantized' if q is not None else info['dtype']})")
    return 0
