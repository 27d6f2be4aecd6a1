"""Padding-free (packed) scoring forward: every prompt and completion token of a micro-batch in one row.

The straightforward scoring forward runs ``B`` rows of ``P + T`` columns: left padding of prompts,
right padding of completions (rows that finished early), and each group's prompt once per row.
Packing lays the micro-batch out as one sequence of real tokens only::

    [prompt 1][prompt 2]...[completion of row 1][completion of row 2]...

(each distinct prompt once when ``share`` is on, else once per row), with the position ids the rows
would have had and a 4D attention mask that lets a prompt token see its own prompt causally and a
completion token see its prompt and, causally, its own completion. One backbone call computes it
all: the work is proportional to the real tokens, and the matmuls run on one large ``[N, H]``
operand instead of ``B`` padded rows (or the two smaller calls of the KV-cache prompt sharing in
:mod:`gspo.sampling.scoring`). The result equals the padded forward up to float rounding (tests).

Limits (each falls back to the padded paths, which stay exact):

- only model families whose positions come from ``position_ids`` and whose attention takes a custom
  4D mask (``PACKABLE_MODEL_TYPES``, each checked by a test), with the ``sdpa`` attention
  implementation: its kernels (flash attention on CPU, memory-efficient on CUDA) take the mask
  without keeping ``[heads, N, N]`` scores for backward, which ``eager`` would (4.5 GB for SmolLM2
  at 2,048 tokens), and flash-attention-2 takes no dense mask at all;
- at most ``PACK_MAX_TOKENS`` tokens: the mask is dense ``[N, N]`` and the attention computes the
  masked-out part too, which grows quadratically (at 2,048 tokens and SmolLM2's width the attention
  is still well under the linear layers' work);
- sliding-window models only while every position fits in the window;
- prompts left-padded and completions right-padded (what the sampler produces).

Departure from peers: TRL and verl pack only with flash-attention's variable-length kernels (GPU);
this path needs none, so it also serves CPUs and the default ``sdpa`` attention.
"""

from __future__ import annotations

from typing import TypeAlias

import torch
from torch import nn

Tensor: TypeAlias = torch.Tensor

#: Model families (``config.model_type``) whose forward honours ``position_ids`` and a custom 4D
#: additive attention mask in transformers >= 5; tests/sampling/test_packing.py builds each one.
PACKABLE_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gpt2"})

#: Largest packed sequence (prompt + completion tokens of one micro-batch) scored in one row.
PACK_MAX_TOKENS = 2048


def packable(backbone: nn.Module) -> bool:
    """Whether ``backbone`` (a transformers base model) can run a packed sequence correctly."""
    config = getattr(backbone, "config", None)
    return (
        config is not None
        and getattr(config, "model_type", None) in PACKABLE_MODEL_TYPES
        and getattr(config, "_attn_implementation", None) == "sdpa"
    )


def _is_left_padded(mask_BP: Tensor) -> bool:
    return bool((mask_BP[:, 1:] >= mask_BP[:, :-1]).all())


def _is_right_padded(mask_BT: Tensor) -> bool:
    return bool((mask_BT[:, 1:] <= mask_BT[:, :-1]).all())


def distinct_prompts(prompt_ids_BP: Tensor, prompt_mask_BP: Tensor, share: bool):
    """``(ids_UP, mask_UP, inverse_B)``: the distinct prompts (all rows when ``share`` is off)."""
    if not share:
        return prompt_ids_BP, prompt_mask_BP, torch.arange(prompt_ids_BP.shape[0], device=prompt_ids_BP.device)
    P = prompt_ids_BP.shape[1]
    key_BK = torch.cat([prompt_ids_BP, prompt_mask_BP.long()], dim=1)
    unique_UK, inverse_B = torch.unique(key_BK, dim=0, return_inverse=True)
    return unique_UK[:, :P], unique_UK[:, P:], inverse_B


def pack_layout(prompt_mask_UP: Tensor, completion_mask_BT: Tensor, inverse_B: Tensor):
    """Where every real token goes in the packed row, and which earlier tokens it may attend to.

    Returns ``(positions_N, allowed_NN, gather_BT)``: the position id of each packed token (prompt
    tokens first, prompt by prompt, then completions row by row); whether token i may attend to
    token j; and for every completion column of every row, the packed index of the hidden state that
    predicts it (its prompt's last token for column 0, the previous completion token after that;
    padding columns point at the prompt's last token: finite, and masked by the caller's loss).
    """
    device = completion_mask_BT.device
    p_len_U = prompt_mask_UP.long().sum(1)
    c_len_B = completion_mask_BT.long().sum(1)
    U, B, T = p_len_U.shape[0], c_len_B.shape[0], completion_mask_BT.shape[1]
    n_prompt = int(p_len_U.sum())
    # prompt tokens: owner prompt, position within it; completion tokens: owner row, position after the prompt
    prompt_owner = torch.repeat_interleave(torch.arange(U, device=device), p_len_U)
    prompt_start_U = torch.cumsum(p_len_U, 0) - p_len_U
    prompt_pos = torch.arange(n_prompt, device=device) - prompt_start_U[prompt_owner]
    row_owner = torch.repeat_interleave(torch.arange(B, device=device), c_len_B)
    comp_start_B = torch.cumsum(c_len_B, 0) - c_len_B
    comp_offset = torch.arange(row_owner.numel(), device=device) - comp_start_B[row_owner]
    comp_pos = p_len_U[inverse_B][row_owner] + comp_offset
    positions_N = torch.cat([prompt_pos, comp_pos])
    prompt_of_N = torch.cat([prompt_owner, inverse_B[row_owner]])
    row_of_N = torch.cat([torch.full_like(prompt_owner, -1), row_owner])
    allowed_NN = (
        (prompt_of_N[:, None] == prompt_of_N[None, :])
        & ((row_of_N[None, :] == -1) | (row_of_N[None, :] == row_of_N[:, None]))
        & (positions_N[None, :] <= positions_N[:, None])
    )
    last_prompt_B = (prompt_start_U + p_len_U - 1)[inverse_B]
    t_T = torch.arange(T, device=device)
    previous_BT = n_prompt + comp_start_B[:, None] + t_T[None, :] - 1
    real_BT = (t_T[None, :] >= 1) & (t_T[None, :] < c_len_B[:, None])
    gather_BT = torch.where(real_BT, previous_BT, last_prompt_B[:, None])
    return positions_N, allowed_NN, gather_BT


def packed_hidden(
    backbone: nn.Module,
    prompt_ids_BP: Tensor,
    prompt_mask_BP: Tensor,
    completion_ids_BT: Tensor,
    completion_mask_BT: Tensor,
    *,
    share: bool,
    min_saved_tokens: float = 0.0,
) -> Tensor | None:
    """``[B, T, H]`` final hidden states predicting each completion token, from one packed forward.

    None when packing does not apply (see the module docstring) or would skip fewer than
    ``min_saved_tokens`` padding and repeated-prompt tokens; the caller then takes a padded path.
    """
    if not packable(backbone) or not _is_left_padded(prompt_mask_BP) or not _is_right_padded(completion_mask_BT):
        return None
    ids_UP, mask_UP, inverse_B = distinct_prompts(prompt_ids_BP, prompt_mask_BP, share)
    keep_UP, keep_BT = mask_UP.bool(), completion_mask_BT.bool()
    ids_N = torch.cat([ids_UP[keep_UP], completion_ids_BT[keep_BT]])
    n_tokens = ids_N.numel()
    padded_tokens = prompt_ids_BP.numel() + completion_ids_BT.numel()
    if n_tokens > PACK_MAX_TOKENS or padded_tokens - n_tokens < min_saved_tokens:
        return None
    window = getattr(backbone.config, "sliding_window", None)
    if window and int((keep_UP.sum(1)[inverse_B] + keep_BT.sum(1)).max()) > window:
        return None  # the longest row's last position is its length - 1: decided before building the layout
    positions_N, allowed_NN, gather_BT = pack_layout(mask_UP, completion_mask_BT, inverse_B)
    dtype = backbone.get_input_embeddings().weight.dtype
    mask_11NN = torch.zeros(allowed_NN.shape, dtype=dtype, device=ids_N.device)
    mask_11NN = mask_11NN.masked_fill_(~allowed_NN, torch.finfo(dtype).min)[None, None]
    out = backbone(input_ids=ids_N[None], attention_mask=mask_11NN, position_ids=positions_N[None], use_cache=False)
    return out.last_hidden_state[0][gather_BT]
