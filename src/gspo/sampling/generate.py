"""Batched sampling with a KV cache, returning the sampler's own per-token log-probs.

:func:`sample` is a hand-written decoding loop over any Hugging Face causal LM:

- the prompt is run once (prefill) with ``use_cache=True``; each later step feeds one token per row
  plus the cache (``past_key_values``), so the prompt is never recomputed;
- left padding is handled with an explicit attention mask and ``position_ids = cumsum(mask) - 1``,
  so a left-padded row produces exactly what the same prompt would alone;
- ``logp_BT`` is the log-prob of each chosen token under ``log_softmax(logits / temperature)`` over
  the FULL vocabulary (before top-k / top-p truncation): the quantity the trainer recomputes;
- after a row emits an EOS token it is filled with ``pad_token_id`` (mask 0, logp 0), and the loop
  stops as soon as every row has finished (checked every ``stop_check_every`` steps, the only host
  sync of the loop);
- sampling draws from ``generator`` (``torch.multinomial``), so a seeded generator reproduces a
  rollout exactly.

Shape suffixes: B batch, P prompt length, T completion length, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from gspo.models.introspect import accepts_kwarg


@dataclass
class Rollout:
    """The result of :func:`sample`. All tensors are on the model's device.

    - ``prompt_ids_BP`` / ``prompt_mask_BP``: the left-padded prompts as given (int64);
    - ``completion_ids_BT``: sampled tokens, ``pad_token_id`` after a row's EOS (int64);
    - ``completion_mask_BT``: 1 for real tokens, *including* the EOS token, 0 after (int64);
    - ``logp_BT``: sampler log-prob of each token under ``logits / temperature`` (float32, 0 where masked);
    - ``finished_B``: whether the row emitted an EOS token (bool).
    """

    prompt_ids_BP: torch.Tensor
    prompt_mask_BP: torch.Tensor
    completion_ids_BT: torch.Tensor
    completion_mask_BT: torch.Tensor
    logp_BT: torch.Tensor
    finished_B: torch.Tensor

    @property
    def completion_lengths_B(self) -> torch.Tensor:
        return self.completion_mask_BT.sum(-1)

    @property
    def num_completion_tokens(self) -> int:
        return int(self.completion_mask_BT.sum())

    def sequences(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids_BS, mask_BS)``: prompt and completion concatenated, S = P + T (for a training forward)."""
        ids_BS = torch.cat([self.prompt_ids_BP, self.completion_ids_BT], dim=1)
        mask_BS = torch.cat([self.prompt_mask_BP.long(), self.completion_mask_BT.long()], dim=1)
        return ids_BS, mask_BS


def position_ids_from_mask(mask_BS: torch.Tensor) -> torch.Tensor:
    """Position ids under left padding: ``cumsum(mask) - 1``, 0 on pads (what :func:`sample` uses).

    A training forward over ``Rollout.sequences()`` should pass these too, so that models with
    absolute position embeddings (GPT-2) see the same positions the sampler did.
    """
    return (mask_BS.long().cumsum(-1) - 1).clamp_min(0)


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _filter_logits(scaled_BV: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set logits outside the top-k / nucleus (top-p) set to -inf. At least one token always survives."""
    if 0 < top_k < scaled_BV.shape[-1]:
        kth_B1 = torch.topk(scaled_BV, top_k, dim=-1).values[:, -1:]
        scaled_BV = scaled_BV.masked_fill(scaled_BV < kth_B1, float("-inf"))
    if top_p < 1.0:
        sorted_BV, order_BV = torch.sort(scaled_BV, dim=-1, descending=True)
        probs_BV = sorted_BV.softmax(-1)
        # drop a token when the mass strictly before it already reaches top_p (keeps the first token)
        drop_sorted_BV = (probs_BV.cumsum(-1) - probs_BV) >= top_p
        drop_BV = torch.zeros_like(drop_sorted_BV).scatter(-1, order_BV, drop_sorted_BV)
        scaled_BV = scaled_BV.masked_fill(drop_BV, float("-inf"))
    return scaled_BV


def _choose(
    logits_BV: torch.Tensor,
    *,
    temperature: float,
    top_k: int,
    top_p: float,
    greedy: bool,
    generator: torch.Generator | None,
    rows: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row; return ``(token_B, logp_B)`` with logp under the full scaled softmax.

    ``rows=(row_offset, global_rows)`` switches to layout-independent sampling (see :func:`sample`).
    """
    scaled_BV = logits_BV.float() / temperature
    logp_full_BV = torch.log_softmax(scaled_BV, dim=-1)
    if greedy:
        token_B = scaled_BV.argmax(-1)
    else:
        if 0 < top_k < scaled_BV.shape[-1] or top_p < 1.0:
            probs_BV = F.softmax(_filter_logits(scaled_BV, top_k, top_p), dim=-1)
        else:
            probs_BV = logp_full_BV.exp()
        if rows is None:
            token_B = torch.multinomial(probs_BV, 1, generator=generator).squeeze(-1)
        else:  # inverse-CDF sampling with one uniform per *global* row from the shared stream
            offset, global_rows = rows
            u_B = torch.rand(global_rows, generator=generator, device=probs_BV.device)[offset : offset + probs_BV.shape[0]]
            cdf_BV = probs_BV.cumsum(-1)
            token_B = torch.searchsorted(cdf_BV, (u_B * cdf_BV[:, -1])[:, None], right=True).squeeze(-1)
            token_B = token_B.clamp_max(probs_BV.shape[-1] - 1)
    logp_B = logp_full_BV.gather(-1, token_B[:, None]).squeeze(-1)
    return token_B, logp_B


def sample(
    model,
    prompt_ids_BP: torch.Tensor,
    prompt_mask_BP: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    generator: torch.Generator | None = None,
    greedy: bool = False,
    stop_check_every: int | None = None,
    row_offset: int = 0,
    global_rows: int | None = None,
) -> Rollout:
    """Sample up to ``max_new_tokens`` tokens for every left-padded prompt row.

    ``temperature`` scales the logits (it must be > 0; with ``greedy=True`` it only affects
    ``logp_BT``). ``top_k=0`` and ``top_p=1.0`` disable truncation. ``generator`` must live on the
    model's device. ``stop_check_every`` is how often (in steps) the loop checks whether all rows
    have finished: every step on CPU, every 8 steps elsewhere by default (each check is a host sync).

    Layout-independent sampling (data parallelism): with ``global_rows`` set, this call samples rows
    ``[row_offset, row_offset + B)`` of a global batch of ``global_rows`` rows. Each token step draws
    ``global_rows`` uniforms from ``generator`` and row r uses the r-th, by inverse-CDF sampling, so
    a row's tokens do not depend on how the global batch is split across processes (every process
    must seed ``generator`` identically). Same distribution as the default ``torch.multinomial`` path.
    The model is put in eval mode and restored afterwards; the whole loop runs under
    ``torch.inference_mode()``. T of the result is the longest completion in the batch.
    """
    if prompt_ids_BP.ndim != 2 or prompt_ids_BP.shape != prompt_mask_BP.shape:
        raise ValueError(
            f"prompt_ids_BP and prompt_mask_BP must be 2-D with the same shape, got "
            f"{tuple(prompt_ids_BP.shape)} and {tuple(prompt_mask_BP.shape)}"
        )
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use greedy=True for argmax decoding), got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 disables it), got {top_k}")
    if len(eos_token_ids) == 0:
        raise ValueError("eos_token_ids must name at least one token")

    device = _model_device(model)
    if stop_check_every is None:
        stop_check_every = 1 if device.type == "cpu" else 8
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            rollout = _sample_loop(
                model,
                prompt_ids_BP.to(device),
                prompt_mask_BP.to(device).long(),
                max_new_tokens=max_new_tokens,
                temperature=float(temperature),
                top_p=float(top_p),
                top_k=int(top_k),
                eos_B=torch.tensor(list(eos_token_ids), dtype=torch.long, device=device),
                pad_token_id=int(pad_token_id),
                generator=generator,
                greedy=greedy,
                stop_check_every=max(1, int(stop_check_every)),
                rows=None if global_rows is None else (int(row_offset), int(global_rows)),
            )
    finally:
        model.train(was_training)
    # Cloned outside inference mode, so the trainer may use them in autograd graphs (as indices,
    # masks, old log-probs). Called from inside inference mode, they stay inference tensors.
    return Rollout(**{k: v.clone() for k, v in vars(rollout).items()})


def _sample_loop(
    model,
    prompt_ids_BP: torch.Tensor,
    prompt_mask_BP: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int,
    eos_B: torch.Tensor,
    pad_token_id: int,
    generator: torch.Generator | None,
    greedy: bool,
    stop_check_every: int,
    rows: tuple[int, int] | None = None,
) -> Rollout:
    B, P = prompt_ids_BP.shape
    device = prompt_ids_BP.device
    if bool((prompt_mask_BP.sum(-1) == 0).any()):
        raise ValueError("every prompt row needs at least one real token (prompt_mask_BP has an all-zero row)")
    if not bool(prompt_mask_BP[:, -1].all()):
        raise ValueError("prompts must be left padded: the last column of prompt_mask_BP must be all ones")

    use_positions = accepts_kwarg(model, "position_ids")
    extra = {"logits_to_keep": 1} if accepts_kwarg(model, "logits_to_keep") else {}

    # The attention mask for the whole run, sliced per step: prompt mask, then ones for new tokens
    # (a finished row keeps attending to its pads; its outputs are discarded anyway).
    mask_BS = torch.cat([prompt_mask_BP, prompt_mask_BP.new_ones(B, max_new_tokens)], dim=1)
    kwargs = {}
    if use_positions:
        kwargs["position_ids"] = position_ids_from_mask(prompt_mask_BP)
    out = model(input_ids=prompt_ids_BP, attention_mask=prompt_mask_BP, use_cache=True, **kwargs, **extra)
    logits_BV = out.logits[:, -1, :]
    past = out.past_key_values
    if past is None:
        raise ValueError(f"{type(model).__name__} returned no past_key_values with use_cache=True; sample needs a KV cache")
    next_pos_B1 = prompt_mask_BP.sum(-1, keepdim=True)  # position of the first new token

    ids_BT = torch.full((B, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    logp_BT = torch.zeros((B, max_new_tokens), dtype=torch.float32, device=device)
    alive_BT = torch.zeros((B, max_new_tokens), dtype=torch.bool, device=device)
    done_B = torch.zeros(B, dtype=torch.bool, device=device)

    steps = 0
    for t in range(max_new_tokens):
        token_B, logp_B = _choose(
            logits_BV, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, generator=generator, rows=rows
        )
        alive_B = ~done_B
        token_B = torch.where(alive_B, token_B, pad_token_id)
        ids_BT[:, t] = token_B
        logp_BT[:, t] = logp_B.masked_fill(done_B, 0.0)
        alive_BT[:, t] = alive_B
        done_B = done_B | torch.isin(token_B, eos_B)
        steps = t + 1
        if steps == max_new_tokens or (steps % stop_check_every == 0 and bool(done_B.all())):
            break
        if use_positions:
            kwargs["position_ids"] = next_pos_B1 + t
        out = model(
            input_ids=token_B[:, None],
            attention_mask=mask_BS[:, : P + steps],
            past_key_values=past,
            use_cache=True,
            **kwargs,
        )
        logits_BV = out.logits[:, -1, :]
        past = out.past_key_values
    del past, out

    completion_mask_BT = alive_BT[:, :steps].long()
    T = max(int(completion_mask_BT.sum(-1).max()), 1)
    return Rollout(
        prompt_ids_BP=prompt_ids_BP,
        prompt_mask_BP=prompt_mask_BP,
        completion_ids_BT=ids_BT[:, :T],
        completion_mask_BT=completion_mask_BT[:, :T],
        logp_BT=logp_BT[:, :T],
        finished_B=done_B,
    )


__all__ = ["Rollout", "position_ids_from_mask", "sample"]
