"""Batched sampling with a KV cache, returning the sampler's own per-token log-probs.

:func:`sample` is a hand-written decoding loop over any Hugging Face causal LM:

- the prompt is run once (prefill) with ``use_cache=True``; each later step feeds one token per row
  plus the cache (``cache``; ``past_key_values`` before transformers 5.24, see ``cache_argument``),
  so the prompt is never recomputed. With ``repeats=G`` (the
  trainer's groups) each distinct prompt is prefilled once and its cache repeated G times;
- the cache is :mod:`gspo.sampling.kv_cache`'s preallocated one (Hugging Face's ``DynamicCache``
  re-concatenates the whole cache every step: 38 % of a SmolLM2 decode step);
- finished rows leave the batch (and the cache) once an eighth of the batch has finished, so the
  remaining rows no longer pay for them (evaluation: completion lengths vary from 10 to 512 tokens);
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

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gspo.models.device import model_device
from gspo.models.introspect import accepts_kwarg, cache_argument, returned_cache
from gspo.sampling.kv_cache import preallocated_cache


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
    rows: tuple[int, int, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row; return ``(token_B, logp_B)`` with logp under the full scaled softmax.

    ``rows=(row_offset, global_rows, batch_rows_B)`` switches to layout-independent sampling (see
    :func:`sample`); ``batch_rows_B`` are the rows' indices in this call's batch (the loop drops
    finished rows, so they need not be ``arange(B)``). ``logits_BV`` may be overwritten.
    """
    # At temperature 1 the float32 logits are used as they are: no full-size copy (R3).
    scaled_BV = logits_BV.float()
    if temperature != 1.0:
        scaled_BV = scaled_BV / temperature
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
            offset, global_rows, batch_rows_B = rows
            u_B = torch.rand(global_rows, generator=generator, device=probs_BV.device)[offset + batch_rows_B]
            cdf_BV = probs_BV.cumsum_(-1)  # in place: probs_BV is a private buffer here
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
    repeats: int = 1,
    compact: bool = True,
) -> Rollout:
    """Sample up to ``max_new_tokens`` tokens for every left-padded prompt row.

    ``repeats=G`` samples G completions per prompt row: the prompts are prefilled once and their KV
    cache repeated, and the result has ``B * G`` rows, row ``i * G + j`` being prompt i's j-th
    completion (``Rollout.prompt_ids_BP`` is repeated to match). ``compact`` (default) drops
    finished rows from the batch and the cache once at least an eighth of the rows have finished,
    so long stragglers do not pay for finished rows; tokens and log-probs are unchanged for greedy
    and layout-independent sampling, and for ``torch.multinomial`` sampling they are a different
    (equally distributed, still seeded and reproducible) draw than without compaction.

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
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")

    device = model_device(model)
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
                repeats=int(repeats),
                compact=bool(compact),
            )
    finally:
        model.train(was_training)
    # Cloned outside inference mode, so the trainer may use them in autograd graphs (as indices,
    # masks, old log-probs). Called from inside inference mode, they stay inference tensors.
    return Rollout(**{k: v.clone() for k, v in vars(rollout).items()})


def _sample_loop(
    model,
    prompt_ids_bP: torch.Tensor,
    prompt_mask_bP: torch.Tensor,
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
    repeats: int = 1,
    compact: bool = True,
) -> Rollout:
    # b: distinct prompt rows; B = b * repeats: output rows; A: rows still in the decoding batch.
    b, P = prompt_ids_bP.shape
    device = prompt_ids_bP.device
    if bool((prompt_mask_bP.sum(-1) == 0).any()):
        raise ValueError("every prompt row needs at least one real token (prompt_mask_BP has an all-zero row)")
    if not bool(prompt_mask_bP[:, -1].all()):
        raise ValueError("prompts must be left padded: the last column of prompt_mask_BP must be all ones")

    use_positions = accepts_kwarg(model, "position_ids")
    extra = {"logits_to_keep": 1} if accepts_kwarg(model, "logits_to_keep") else {}
    cache_arg = cache_argument(model) or "past_key_values"  # a forward(**kwargs) model: the long-standing name
    cache = preallocated_cache(model, P + max_new_tokens)
    if cache is not None:
        extra[cache_arg] = cache

    kwargs = {}
    if use_positions:
        kwargs["position_ids"] = position_ids_from_mask(prompt_mask_bP)
    # Prefill each distinct prompt once (R5), then repeat its cache and last logits `repeats` times.
    out = model(input_ids=prompt_ids_bP, attention_mask=prompt_mask_bP, use_cache=True, **kwargs, **extra)
    logits_AV = out.logits[:, -1, :]
    past = returned_cache(out, cache_arg)
    if past is None:
        raise ValueError(f"{type(model).__name__} returned no KV cache with use_cache=True; sample needs one")
    prompt_ids_BP, prompt_mask_BP = prompt_ids_bP, prompt_mask_bP
    if repeats > 1:
        if not hasattr(past, "batch_repeat_interleave"):
            raise ValueError(f"{type(model).__name__}'s cache cannot be repeated; call sample with repeats=1")
        past.batch_repeat_interleave(repeats)
        logits_AV = logits_AV.repeat_interleave(repeats, dim=0)
        prompt_ids_BP = prompt_ids_bP.repeat_interleave(repeats, dim=0)
        prompt_mask_BP = prompt_mask_bP.repeat_interleave(repeats, dim=0)
    B = prompt_ids_BP.shape[0]
    compact = compact and hasattr(past, "batch_select_indices")

    # The attention mask for the whole run, sliced per step: prompt mask, then ones for new tokens
    # (a finished row keeps attending to its pads; its outputs are discarded anyway).
    mask_AS = torch.cat([prompt_mask_BP, prompt_mask_BP.new_ones(B, max_new_tokens)], dim=1)
    next_pos_A1 = prompt_mask_BP.sum(-1, keepdim=True)  # position of the first new token
    batch_rows_A = torch.arange(B, device=device)  # each decoding row's index in the output

    ids_BT = torch.full((B, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    logp_BT = torch.zeros((B, max_new_tokens), dtype=torch.float32, device=device)
    alive_BT = torch.zeros((B, max_new_tokens), dtype=torch.bool, device=device)
    done_A = torch.zeros(B, dtype=torch.bool, device=device)
    finished_B = torch.zeros(B, dtype=torch.bool, device=device)

    steps = 0
    for t in range(max_new_tokens):
        token_A, logp_A = _choose(
            logits_AV,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            greedy=greedy,
            generator=generator,
            rows=None if rows is None else (*rows, batch_rows_A),
        )
        alive_A = ~done_A
        token_A = torch.where(alive_A, token_A, pad_token_id)
        ids_BT[batch_rows_A, t] = token_A
        logp_BT[batch_rows_A, t] = logp_A.masked_fill(done_A, 0.0)
        alive_BT[batch_rows_A, t] = alive_A
        done_A = done_A | torch.isin(token_A, eos_B)
        steps = t + 1
        if steps == max_new_tokens:
            break
        if steps % stop_check_every == 0:
            finished = int(done_A.sum())  # the loop's one host sync
            if finished == done_A.shape[0]:
                break
            if compact and finished * 8 >= done_A.shape[0]:
                keep_A = (~done_A).nonzero().squeeze(1)
                finished_B[batch_rows_A[done_A]] = True
                past.batch_select_indices(keep_A)
                token_A, done_A, batch_rows_A = token_A[keep_A], done_A[keep_A], batch_rows_A[keep_A]
                mask_AS, next_pos_A1 = mask_AS[keep_A], next_pos_A1[keep_A]
        if use_positions:
            kwargs["position_ids"] = next_pos_A1 + t
        out = model(
            input_ids=token_A[:, None],
            attention_mask=mask_AS[:, : P + steps],
            use_cache=True,
            **{cache_arg: past},
            **kwargs,
        )
        logits_AV = out.logits[:, -1, :]
        past = returned_cache(out, cache_arg)
    finished_B[batch_rows_A[done_A]] = True
    del past, out

    completion_mask_BT = alive_BT[:, :steps].long()
    T = max(int(completion_mask_BT.sum(-1).max()), 1)
    return Rollout(
        prompt_ids_BP=prompt_ids_BP,
        prompt_mask_BP=prompt_mask_BP,
        completion_ids_BT=ids_BT[:, :T],
        completion_mask_BT=completion_mask_BT[:, :T],
        logp_BT=logp_BT[:, :T],
        finished_B=finished_B,
    )


__all__ = ["Rollout", "position_ids_from_mask", "sample"]
