"""The official checkpoint layout's keys: every key janus-rt reads from a `multi_modality` checkpoint, with its shape.

One home for the layout's key list: the weights loader names the keys a parameter is missing from
(`checkpoint/weights.py`), and the tiny demo checkpoints write exactly these keys (`checkpoint/tiny.py`).
"""

from __future__ import annotations

from janus_rt.model.config import JanusConfig


def official_key_shapes(cfg: JanusConfig) -> dict[str, tuple[int, ...]]:
    """Every official-layout key janus-rt reads, with its shape (unused encoder / attn_pool keys excluded)."""
    shapes: dict[str, tuple[int, ...]] = {}
    c = cfg.llm
    q, kv = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
    lm = "language_model.model."
    shapes[lm + "embed_tokens.weight"] = (c.vocab_size, c.hidden_size)
    for i in range(c.num_layers):
        p = f"{lm}layers.{i}."
        shapes[p + "self_attn.q_proj.weight"] = (q, c.hidden_size)
        shapes[p + "self_attn.k_proj.weight"] = (kv, c.hidden_size)
        shapes[p + "self_attn.v_proj.weight"] = (kv, c.hidden_size)
        shapes[p + "self_attn.o_proj.weight"] = (c.hidden_size, q)
        shapes[p + "mlp.gate_proj.weight"] = (c.intermediate_size, c.hidden_size)
        shapes[p + "mlp.up_proj.weight"] = (c.intermediate_size, c.hidden_size)
        shapes[p + "mlp.down_proj.weight"] = (c.hidden_size, c.intermediate_size)
        shapes[p + "input_layernorm.weight"] = (c.hidden_size,)
        shapes[p + "post_attention_layernorm.weight"] = (c.hidden_size,)
    shapes[lm + "norm.weight"] = (c.hidden_size,)
    shapes["language_model.lm_head.weight"] = (c.vocab_size, c.hidden_size)

    v, vt = cfg.vision, "vision_model.vision_tower."
    shapes[vt + "patch_embed.proj.weight"] = (v.width, 3, v.patch_size, v.patch_size)
    shapes[vt + "patch_embed.proj.bias"] = (v.width,)
    shapes[vt + "pos_embed"] = (1, v.num_patches, v.width)
    for i in range(v.layers):
        p = f"{vt}blocks.{i}."
        for norm in ("norm1", "norm2"):
            shapes[p + norm + ".weight"] = shapes[p + norm + ".bias"] = (v.width,)
        shapes[p + "attn.qkv.weight"], shapes[p + "attn.qkv.bias"] = (3 * v.width, v.width), (3 * v.width,)
        shapes[p + "attn.proj.weight"], shapes[p + "attn.proj.bias"] = (v.width, v.width), (v.width,)
        shapes[p + "mlp.fc1.weight"], shapes[p + "mlp.fc1.bias"] = (v.mlp_dim, v.width), (v.mlp_dim,)
        shapes[p + "mlp.fc2.weight"], shapes[p + "mlp.fc2.bias"] = (v.width, v.mlp_dim), (v.width,)
    shapes[vt + "norm.weight"] = shapes[vt + "norm.bias"] = (v.width,)

    for name, mlp in (("aligner", cfg.aligner), ("gen_aligner", cfg.gen_aligner)):
        dims = [mlp.input_dim] + [mlp.output_dim] * mlp.depth
        for j in range(mlp.depth):
            shapes[f"{name}.layers.{2 * j}.weight"] = (dims[j + 1], dims[j])
            shapes[f"{name}.layers.{2 * j}.bias"] = (dims[j + 1],)
    shapes["gen_embed.weight"] = (cfg.gen_embed_rows, cfg.gen_embed_dim)
    g = cfg.gen_head
    shapes["gen_head.output_mlp_projector.weight"] = (g.hidden_dim, g.input_dim)
    shapes["gen_head.output_mlp_projector.bias"] = (g.hidden_dim,)
    shapes["gen_head.vision_head.weight"] = (g.vocab_size, g.hidden_dim)
    shapes["gen_head.vision_head.bias"] = (g.vocab_size,)

    vq = cfg.vq
    shapes["gen_vision_model.quantize.embedding.weight"] = (vq.codebook_size, vq.codebook_embed_dim)
    shapes["gen_vision_model.post_quant_conv.weight"] = (vq.z_channels, vq.codebook_embed_dim, 1, 1)
    shapes["gen_vision_model.post_quant_conv.bias"] = (vq.z_channels,)
    d = "gen_vision_model.decoder."

    def conv(name: str, cin: int, cout: int, k: int) -> None:
        shapes[name + ".weight"], shapes[name + ".bias"] = (cout, cin, k, k), (cout,)

    def norm(name: str, ch: int) -> None:
        shapes[name + ".weight"] = shapes[name + ".bias"] = (ch,)

    def res(name: str, cin: int, cout: int) -> None:
        norm(name + ".norm1", cin)
        conv(name + ".conv1", cin, cout, 3)
        norm(name + ".norm2", cout)
        conv(name + ".conv2", cout, cout, 3)
        if cin != cout:
            conv(name + ".nin_shortcut", cin, cout, 1)

    def attn(name: str, ch: int) -> None:
        norm(name + ".norm", ch)
        for part in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{part}", ch, ch, 1)

    top = vq.base_channels * vq.channel_multipliers[-1]
    conv(d + "conv_in", vq.z_channels, top, 3)
    res(d + "mid.0", top, top)
    attn(d + "mid.1", top)
    res(d + "mid.2", top, top)
    ch = top
    for i, level in enumerate(reversed(range(len(vq.channel_multipliers)))):
        out = vq.base_channels * vq.channel_multipliers[level]
        for j in range(vq.num_res_blocks + 1):
            res(f"{d}conv_blocks.{i}.res.{j}", ch if j == 0 else out, out)
            if i == 0:
                attn(f"{d}conv_blocks.{i}.attn.{j}", out)
        if level != 0:
            conv(f"{d}conv_blocks.{i}.upsample.conv", out, out, 3)
        ch = out
    norm(d + "norm_out", ch)
    conv(d + "conv_out", ch, 3, 3)
    return shapes
