"""One decode step of the triton backend over a mixed batch: image rows then text rows, one transformer pass.

Batch layout of a step (host-built when the set of running groups changes, then advanced on the device):
    rows   [0, Bi)       image rows, interleaved (conditional, unconditional) per image, Bi a bucket size
    rows   [Bi, Bi + Bt) text rows, Bt a bucket size
Padding rows (to reach the bucket) point at the pool's scratch row and never advance.
Buffers (device tensors of fixed shape, so the body captures into a CUDA graph once per (Bi, Bt)):
    cache_rows [B] int32, positions [B] int64 (RoPE position = cache slot of this step's input, per row: a
    negative prompt's unconditional rows have their own), row_live [B]
    per sampled output row (Pi = Bi / 2 images, Pt = Bt answers): out_row int32 (its token record),
    step int64 (index of the token sampled now), live, seed int64 (request seed + image index),
    temperature, top_k, top_p, cfg_weight (images)
Body: gather each output row's last token from the token record -> embeddings (gen_embed + gen_aligner for
images, embed_tokens for text) -> transformer over the KV pool -> gen_head + CFG sampler on the image
rows, lm_head + sampler on the text rows (each writes its token into the record) -> advance counters.

Buckets: a section of r rows is padded to `bucket(r)`; `reachable_buckets(rows)` lists every (Bi, Bt) the
engine can reach with a pool of `rows` KV rows, which warm-up builds ahead of serving (`StepGraph.build`).
Captures go through `capture_graph` (graph_capture.py), under the process-wide `CAPTURE_LOCK`, on the stream the
backend passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from janus_rt.backends.graph_capture import capture_graph
from janus_rt.backends.kv_rows import KVRows
from janus_rt.backends.triton_transformer import StepOps, gen_head, mlp_projector, transformer_step
from janus_rt.engine.request import Group
from janus_rt.kernels.cfg_sample import cfg_sample
from janus_rt.model.cfg_rows import pair_rows
from janus_rt.model.janus import JanusModel

BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # row counts a step is padded to: one graph each, never re-captured


def bucket(rows: int) -> int:
    """The smallest bucket holding `rows` (0 stays 0: that section is absent)."""
    if rows == 0:
        return 0
    for b in BUCKETS:
        if b >= rows:
            return b
    raise ValueError(f"{rows} rows exceed the largest bucket {BUCKETS[-1]}")


def reachable_buckets(rows: int) -> list[tuple[int, int]]:
    """Every (image bucket, text bucket) a step takes when at most `rows` KV rows run at once; largest first.

    The engine's groups (engine/request.py) give the image section 2 rows per image and the text section 1 row
    per answer, and admit groups while their rows fit the pool. Image rows can thus be any even count up to
    `rows` (one single-image request per 2 rows reaches each), text rows any count that fits beside them, and
    a step has at least one row; each section is padded to its `bucket`. Largest first, so that graphs sharing
    one memory pool are captured as nano-vllm does (the smaller ones reuse the largest one's blocks).
    """
    keys = {(bucket(image_rows), bucket(text_rows))
            for image_rows in range(0, rows + 1, 2) for text_rows in range(rows - image_rows + 1)
            if image_rows + text_rows > 0}
    return sorted(keys, key=lambda key: (key[0] + key[1], key), reverse=True)


@dataclass
class Section:
    """Per-output-row buffers of one section (images or text) of a step."""

    out_row: torch.Tensor  # [P] int32
    step: torch.Tensor  # [P] int64
    live: torch.Tensor  # [P] int64, 1 = a real row (advances), 0 = padding
    seed: torch.Tensor  # [P] int64
    temperature: torch.Tensor  # [P] fp32
    top_k: torch.Tensor  # [P] int32, 0 = off
    top_p: torch.Tensor  # [P] fp32, 1 = off
    cfg_weight: torch.Tensor | None  # [P] fp32 (images)

    @classmethod
    def empty(cls, n: int, cfg: bool, device: torch.device) -> "Section":
        def z(dtype: torch.dtype) -> torch.Tensor:
            return torch.zeros(n, dtype=dtype, device=device)

        return cls(z(torch.int32), z(torch.long), z(torch.long), z(torch.long), z(torch.float32), z(torch.int32),
                   torch.ones(n, dtype=torch.float32, device=device), z(torch.float32) if cfg else None)

    def fill(self, groups: list[Group], scratch_row: int) -> None:
        """Host values of these groups' output rows (padding after them), copied in one go per buffer."""
        n = self.step.shape[0]
        out_row, step, live, seed, temp, top_k, top_p, cfg = [], [], [], [], [], [], [], []
        for g in groups:
            row = g.params.kernel_row()  # (temperature, top_k, top_p, cfg_weight) as the sampler spells them
            out_row += g.out_rows()
            seed += g.seeds()
            for _ in range(g.images):
                step.append(g.steps_done)
                live.append(1)
                for values, value in zip((temp, top_k, top_p, cfg), row):
                    values.append(value)
        pad = n - len(out_row)
        out_row += [scratch_row] * pad
        step += [1] * pad  # reads record column 0 and writes column 1 of the scratch row, forever
        for lst, value in ((live, 0), (seed, 0), (temp, 0.0), (top_k, 0), (top_p, 1.0), (cfg, 0.0)):
            lst += [value] * pad
        for buf, values in ((self.out_row, out_row), (self.step, step), (self.live, live), (self.seed, seed),
                            (self.temperature, temp), (self.top_k, top_k), (self.top_p, top_p)):
            buf.copy_(torch.tensor(values, dtype=buf.dtype))
        if self.cfg_weight is not None:
            self.cfg_weight.copy_(torch.tensor(cfg, dtype=torch.float32))


class StepGraph:
    """The step body of one (Bi, Bt) bucket over its buffers; captured into a CUDA graph after one eager run."""

    def __init__(self, model: JanusModel, kv: KVRows, inv_freq: torch.Tensor, ops: StepOps, image_rows: int,
                 text_rows: int, use_graph: bool, pool: object | None, stream: "torch.cuda.Stream | None" = None):
        dev = kv.tokens.device
        self.model, self.kv, self.inv_freq, self.ops = model, kv, inv_freq, ops
        self.bi, self.bt = image_rows, text_rows
        rows = image_rows + text_rows
        self.cache_rows = torch.full((rows,), kv.scratch_row, dtype=torch.int32, device=dev)
        self.positions = torch.zeros(rows, dtype=torch.long, device=dev)
        self.row_live = torch.zeros(rows, dtype=torch.long, device=dev)
        self.images = Section.empty(image_rows // 2, True, dev)
        self.text = Section.empty(text_rows, False, dev)
        self.use_graph = use_graph
        self.pool = pool  # the backend's graph memory pool, shared by its buckets
        self.stream = stream  # the backend's capture stream (one per backend and device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warm = False

    def fill(self, image_groups: list[Group], text_groups: list[Group]) -> None:
        """Rewrite every buffer from the host's view of these groups (call when the batch changed)."""
        scratch = self.kv.scratch_row
        cache_rows, positions, live = [], [], []
        for groups, width in ((image_groups, self.bi), (text_groups, self.bt)):
            n = 0
            for g in groups:
                cache_rows += range(g.first_row, g.first_row + g.rows)
                positions += g.positions()
                live += [1] * g.rows
                n += g.rows
            cache_rows += [scratch] * (width - n)
            positions += [0] * (width - n)
            live += [0] * (width - n)
        self.cache_rows.copy_(torch.tensor(cache_rows, dtype=torch.int32))
        self.positions.copy_(torch.tensor(positions, dtype=torch.long))
        self.row_live.copy_(torch.tensor(live, dtype=torch.long))
        self.images.fill(image_groups, scratch)
        self.text.fill(text_groups, scratch)

    def body(self) -> None:
        model, kv, ops = self.model, self.kv, self.ops
        tokens = kv.tokens
        parts = []
        if self.bi:
            s = self.images
            last = tokens[s.out_row.long(), s.step - 1]  # [Pi] each image's last token
            x = mlp_projector(model.gen_aligner, model.gen_embed.weight[last], ops)  # [Pi, D]
            parts.append(pair_rows(x))  # [Bi, D] the same input for cond / uncond
        if self.bt:
            s = self.text
            last = tokens[s.out_row.long(), s.step - 1]  # [Pt]
            parts.append(model.llm.embed_tokens.weight[last])  # [Bt, D]
        x = (torch.cat(parts) if len(parts) > 1 else parts[0].contiguous())[:, None]  # [B, 1, D]
        hidden = transformer_step(model.llm, x, self.positions[:, None], self.cache_rows, kv.cache, self.inv_freq,
                                  ops)[:, -1]  # [B, D]
        for s, logits in self._logits(hidden):
            cfg_sample(logits=logits, cfg_weight=s.cfg_weight, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                       seed=s.seed, step=s.step, tokens_out=tokens, out_rows=s.out_row)
        self.positions += self.row_live
        self.images.step += self.images.live
        self.text.step += self.text.live

    def _logits(self, hidden: torch.Tensor) -> list[tuple[Section, torch.Tensor]]:
        out = []
        if self.bi:
            out.append((self.images, gen_head(self.model.gen_head, hidden[:self.bi], self.ops)))  # [Bi, V]
        if self.bt:
            out.append((self.text, self.ops(hidden[self.bi:], self.model.lm_head)))  # [Bt, V]
        return out

    def step(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        elif not self.use_graph or not self.warm:
            self.body()  # eager: interpreter mode, or the first (warm-up) run that compiles and autotunes
            self.warm = True
        else:
            self.graph = capture_graph(self.body, pool=self.pool, stream=self.stream)
            self.graph.replay()

    def build(self) -> None:
        """Make the bucket ready before serving: its steps on padding rows only (they read and write the scratch
        row, nothing else), as many as `step` needs to reach replay: one eager run (compiles, tunes the tiles of
        every GEMM it uses, gen head and lm_head included), then on CUDA the capture and one replay. The next
        `fill` puts real rows in."""
        self.fill([], [])
        self.step()
        if self.use_graph:
            self.step()
