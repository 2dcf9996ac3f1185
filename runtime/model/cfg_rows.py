"""The CFG row layout: how an image's two rows of the doubled batch sit, in one place.

The reference runs classifier-free guidance as a doubled batch, and so does every path of janus-rt (the engine's
KV rows, both backends, the exported graphs, the fused sampler, the quantization check): image i of a group owns
rows 2i (conditional: the prompt) and 2i+1 (unconditional: BOS, the pad id at every position in between, and the
final `<begin_of_image>`). No attention mask: the unconditional row attends to its pad embeddings, exactly as the
reference. With a negative prompt (janus-rt's addition), the unconditional row holds the negative prompt's ids
instead, formatted like the prompt; its length may differ, so each row keeps its own cache length and positions
(`negative_prompt_tokens`; the engine's `Group.row_sets` splits a group's rows by length). Both rows are fed the same sampled token each step; the sampler mixes their logits as
`uncond + w * (cond - uncond)` and writes the token to the conditional row's record. The kernels spell the same
layout in their own docstrings (`janus_rt.kernels.cfg_sample`, `reference_sampling`: they import nothing above them).
"""

from __future__ import annotations

import torch

ROWS_PER_IMAGE = 2  # conditional, unconditional


def rows_for_images(images: int) -> int:
    """KV rows that `images` images of one prompt take."""
    return ROWS_PER_IMAGE * images


def images_in_rows(rows: int) -> int:
    """Most images whose CFG rows fit in `rows` rows."""
    return rows // ROWS_PER_IMAGE


def conditional_rows(first_row: int, images: int) -> list[int]:
    """Pool rows of each image's conditional row (where its sampled tokens are recorded)."""
    return [first_row + ROWS_PER_IMAGE * i for i in range(images)]


def cfg_prompt_tokens(prompt_ids: list[int], pad_id: int, num_images: int, device: torch.device) -> torch.Tensor:
    """`[2P, L]` token ids: even rows the prompt, odd rows the prompt with positions 1..L-2 set to pad."""
    ids = torch.tensor(prompt_ids, dtype=torch.long, device=device)
    tokens = ids.repeat(ROWS_PER_IMAGE * num_images, 1)  # [2P, L]
    tokens[1::ROWS_PER_IMAGE, 1:-1] = pad_id
    return tokens


def negative_prompt_tokens(prompt_ids: list[int], negative_ids: list[int], num_images: int,
                           device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`([P, Lc], [P, Lu])`: each image's conditional rows' ids (the prompt) and unconditional rows' ids (the
    negative prompt); they go to rows 0::2 and 1::2 of the group."""
    cond = torch.tensor(prompt_ids, dtype=torch.long, device=device).repeat(num_images, 1)  # [P, Lc]
    uncond = torch.tensor(negative_ids, dtype=torch.long, device=device).repeat(num_images, 1)  # [P, Lu]
    return cond, uncond


def pair_rows(x: torch.Tensor) -> torch.Tensor:
    """`[P, ...]` one entry per image -> `[2P, ...]` the same entry for its conditional and unconditional rows."""
    return x[:, None].expand(x.shape[0], ROWS_PER_IMAGE, *x.shape[1:]).reshape(-1, *x.shape[1:])  # [2P, ...]
