"""Log-probs of completion tokens under the model being trained: the scoring forward pass (the twin of
the sampling pass in :mod:`gspo.sampling.generate`; used by the RL trainer, SFT and evaluation tools).

The model's forward runs on prompt + completion as usual (through any DDP / PEFT wrapper, so
gradient synchronisation and adapters work), but with ``logits_to_keep=1`` so the output layer
computes a single position. A forward hook on the backbone captures its final hidden states, and
only the completion positions go through ``chunked_token_logprobs``: no ``[B, T, V]`` float32 logits
for prompt positions, and none in full for completion positions either.

Three speed-ups on the fast path (all give the same log-probs and gradients up to float rounding;
tests compare them with the straightforward forward):

- packing (:mod:`gspo.sampling.packing`, tried first; the two below serve where it does not
  apply): the micro-batch's real tokens in one row, each distinct prompt once, no padding, one
  backbone call, for the model families and sizes it supports;
- the model's own output layer computes nothing: ``logits_to_keep`` is an empty index tensor
  (transformers >= 4.5x accepts an index tensor), falling back to ``1`` where that is refused;
- prompt sharing: rows of a micro-batch that share a prompt (a group: the sampler repeats every
  prompt G times) run that prompt through the backbone once (when that saves enough work to pay for
  a second backbone call: ``SHARE_MIN_MACS``), with a KV cache that is then indexed
  out to every row (differentiably: each completion's gradient flows back into the shared prompt),
  and the completions run on top. Used only when the model is called directly (not through a DDP /
  FSDP wrapper, whose forward must run for gradient synchronisation), without gradient
  checkpointing (which turns the cache off), and not for a model with dropout in training mode
  (rows would share the prompt's dropout masks).

Models whose logits are not a plain linear map of the final hidden state (Gemma-2 soft-capping,
Cohere's logit scale, a non-Linear head) take the plain path: full logits of completion positions,
``log_softmax`` in float32. Both paths give the same numbers; tests check it.
"""

from __future__ import annotations

from typing import TypeAlias

import torch
from torch import nn

from gspo.losses import chunked_token_logprobs
from gspo.models.introspect import accepts_kwarg, cache_argument, cached_on, returned_cache, unwrap_model
from gspo.sampling.generate import position_ids_from_mask
from gspo.sampling.packing import distinct_prompts, packed_hidden

Tensor: TypeAlias = torch.Tensor


def _fast_path_parts(model: nn.Module):
    """(backbone, output layer) when logits = linear(final hidden state), else None."""
    inner = unwrap_model(model)
    config = getattr(inner, "config", None)
    if config is not None and (
        getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None) not in (None, 1, 1.0)
    ):
        return None
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    backbone = getattr(inner, getattr(inner, "base_model_prefix", ""), None)
    if not isinstance(head, nn.Linear) or not isinstance(backbone, nn.Module) or backbone is inner:
        return None
    return backbone, head


_EMPTY_KEEP_REFUSED: set[type] = set()


def _forward_without_logits(model: nn.Module, kwargs: dict, keep: bool) -> None:
    """Run ``model`` for its hidden states (captured by a hook), computing as few logits as it allows."""
    if not keep:
        model(**kwargs)
        return
    kind = type(unwrap_model(model))
    if kind not in _EMPTY_KEEP_REFUSED:
        try:
            model(**kwargs, logits_to_keep=torch.empty(0, dtype=torch.long, device=kwargs["input_ids"].device))
            return
        except (TypeError, ValueError, IndexError, RuntimeError):
            _EMPTY_KEEP_REFUSED.add(kind)  # this model wants an int: remember, and keep one position
    model(**kwargs, logits_to_keep=1)


def _can_share_prompts(model: nn.Module, backbone: nn.Module, rows: int) -> bool:
    if rows < 2 or hasattr(model, "module"):  # DDP / FSDP wrappers: their forward must run
        return False
    inner = unwrap_model(model)
    checkpointing = getattr(inner, "is_activation_checkpointing", None)
    if checkpointing is None:  # transformers < 5
        checkpointing = getattr(inner, "is_gradient_checkpointing", False)
    if torch.is_grad_enabled() and checkpointing and inner.training:
        return False
    if _dropout_in_training(inner):  # rows would share the prompt's dropout masks
        return False
    return cache_argument(backbone) is not None


def _dropout_in_training(model: nn.Module) -> bool:
    """Whether ``model`` (unwrapped) runs dropout now: then rows must not share a prompt's computation."""
    return model.training and _has_dropout(model)


def sampler_matches_trainer(model: nn.Module) -> bool:
    """Whether the sampler's log-probs of ``model`` equal this module's up to float rounding.

    True when every floating parameter is float32/float64 (in bf16/fp16 the sampler's logits are
    rounded to half precision, this module's are computed in float32) and the model has no dropout
    (the trainer scores in training mode, the sampler in eval mode). Used by
    ``old_logp_source="auto"``.
    """
    inner = unwrap_model(model)
    wide = all(p.dtype in (torch.float32, torch.float64) for p in inner.parameters() if p.is_floating_point())
    return wide and not _has_dropout(inner)


def _has_dropout(model: nn.Module) -> bool:
    """Whether the model has any dropout (a module with p > 0, or a config rate > 0). Cached on the model."""

    def compute(m: nn.Module) -> bool:
        config = getattr(m, "config", None)
        rates = [
            v
            for k, v in (vars(config).items() if config is not None else ())
            if ("dropout" in k or "pdrop" in k) and isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        return any(r > 0 for r in rates) or any(isinstance(x, nn.Dropout) and x.p > 0 for x in m.modules())

    return cached_on(model, "_gspo_has_dropout", compute)


#: Prompt sharing runs the backbone twice (prompts, then completions): a fixed cost in Python and
#: dispatch (measured ~9 ms per micro-batch on a 2-layer, 128-wide model, where it made the step 15 %
#: slower). It is used only when it saves at least this many multiply-adds: skipped prompt tokens x
#: the backbone's parameters outside the embedding (SmolLM2-135M: ~1e10 per micro-batch of 8 in the
#: benchmark; the 2-layer model: ~1e8). The packed forward (one call) uses the same bar for the
#: padding and repeated-prompt tokens it skips, since building its layout and mask costs a little too.
SHARE_MIN_MACS = 1e9


def _body_parameters(backbone: nn.Module) -> int:
    """Parameters of the backbone outside its input embedding (cached on the module)."""

    def compute(m: nn.Module) -> int:
        embedding = m.get_input_embeddings() if hasattr(m, "get_input_embeddings") else None
        skip = {id(p) for p in embedding.parameters()} if isinstance(embedding, nn.Module) else set()
        return sum(p.numel() for p in m.parameters() if id(p) not in skip)

    return cached_on(backbone, "_gspo_body_parameters", compute)


def _shared_prompt_hidden(backbone, prompt_ids_BP, prompt_mask_BP, completion_ids_BT, attention_mask_BS):
    """Final hidden states predicting each completion token, each distinct prompt computed once.

    None when sharing would save less than ``SHARE_MIN_MACS`` multiply-adds (e.g. every prompt is
    distinct) or the backbone returns no cache.
    """
    B, P = prompt_ids_BP.shape
    body = _body_parameters(backbone)
    if (B - 1) * P * body < SHARE_MIN_MACS:
        return None  # even a single shared prompt would save too little: skip the de-duplication too
    ids_UP, mask_UP, inverse_B = distinct_prompts(prompt_ids_BP, prompt_mask_BP, share=True)
    saved_tokens = (B - ids_UP.shape[0]) * P
    if saved_tokens == 0 or saved_tokens * body < SHARE_MIN_MACS:
        return None  # nothing (or too little) to share: a second backbone call would cost more
    cache_arg = cache_argument(backbone)
    out_p = backbone(
        input_ids=ids_UP, attention_mask=mask_UP, position_ids=position_ids_from_mask(mask_UP), use_cache=True
    )
    cache = returned_cache(out_p, cache_arg)
    if cache is None or not hasattr(cache, "batch_select_indices"):
        return None
    cache.batch_select_indices(inverse_B)  # differentiable indexing: gradients flow back to the prompt pass
    positions_BT = position_ids_from_mask(attention_mask_BS)[:, P:]
    out_c = backbone(
        input_ids=completion_ids_BT,
        attention_mask=attention_mask_BS,
        position_ids=positions_BT,
        use_cache=True,
        **{cache_arg: cache},
    )
    last_prompt_B1H = out_p.last_hidden_state[:, -1][inverse_B][:, None]
    return torch.cat([last_prompt_B1H, out_c.last_hidden_state[:, :-1]], dim=1)


def completion_logprobs(
    model: nn.Module,
    prompt_ids_BP: Tensor,
    prompt_mask_BP: Tensor,
    completion_ids_BT: Tensor,
    completion_mask_BT: Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    with_entropy: bool = False,
    force_plain: bool = False,
    share_prompts: bool = True,
    pack: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """``(logp_BT, entropy_BT)`` of the completion tokens (float32; entropy detached, or None).

    ``force_plain`` takes the full-logits path (needed when parameters are sharded: FSDP, ZeRO-3).
    ``share_prompts=False`` turns prompt sharing off (each row runs its own prompt).
    ``pack=False`` turns the packed forward off (:mod:`gspo.sampling.packing`; padded rows instead).

    Prompts are left-padded (as the sampler produces them); positions follow the attention mask, as
    in sampling, so the log-probs equal the sampler's for the same tokens and temperature.
    """
    P = prompt_ids_BP.shape[1]
    T = completion_ids_BT.shape[1]
    input_ids = torch.cat([prompt_ids_BP, completion_ids_BT], dim=1)
    attention_mask = torch.cat([prompt_mask_BP.long(), completion_mask_BT.long()], dim=1)
    position_ids = position_ids_from_mask(attention_mask)
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    parts = None if force_plain else _fast_path_parts(model)
    keep = accepts_kwarg(model, "logits_to_keep")

    if parts is not None:
        backbone, head = parts
        hidden_BTH = None
        if pack and not hasattr(model, "module"):  # DDP / FSDP wrappers: their forward must run
            hidden_BTH = packed_hidden(
                backbone,
                prompt_ids_BP,
                prompt_mask_BP,
                completion_ids_BT,
                completion_mask_BT,
                share=share_prompts and not _dropout_in_training(unwrap_model(model)),
                min_saved_tokens=SHARE_MIN_MACS / _body_parameters(backbone),
            )
        if hidden_BTH is None and share_prompts and _can_share_prompts(model, backbone, prompt_ids_BP.shape[0]):
            hidden_BTH = _shared_prompt_hidden(
                backbone, prompt_ids_BP, prompt_mask_BP, completion_ids_BT, attention_mask
            )
        if hidden_BTH is None:
            captured: dict[str, Tensor] = {}

            def grab(_module, _inputs, output):
                captured["hidden"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

            handle = backbone.register_forward_hook(grab)
            try:
                _forward_without_logits(model, kwargs, keep)
            finally:
                handle.remove()
            hidden_BTH = captured["hidden"][:, P - 1 : P + T - 1]
        return chunked_token_logprobs(
            hidden_BTH,
            head.weight,
            completion_ids_BT,
            bias=head.bias,
            temperature=temperature,
            chunk_size=chunk_size,
            with_entropy=with_entropy,
        )

    # Plain path: logits of completion positions only (when the model supports logits_to_keep).
    if keep:
        out = model(**kwargs, logits_to_keep=T + 1)
        logits_BTV = out.logits[:, :-1]
    else:
        out = model(**kwargs)
        logits_BTV = out.logits[:, P - 1 : P + T - 1]
    logits_BTV = logits_BTV.float() / temperature
    logsm_BTV = torch.log_softmax(logits_BTV, dim=-1)
    logp_BT = logsm_BTV.gather(-1, completion_ids_BT[..., None]).squeeze(-1)
    entropy_BT = None
    if with_entropy:
        with torch.no_grad():
            entropy_BT = -(logsm_BTV.exp() * logsm_BTV).sum(-1)
    return logp_BT, entropy_BT
