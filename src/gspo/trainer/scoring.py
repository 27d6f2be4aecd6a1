"""Log-probs of completion tokens under the model being trained (the trainer's scoring pass).

The model's forward runs on prompt + completion as usual (through any DDP / PEFT wrapper, so
gradient synchronisation and adapters work), but with ``logits_to_keep=1`` so the output layer
computes a single position. A forward hook on the backbone captures its final hidden states, and
only the completion positions go through ``chunked_token_logprobs``: no ``[B, T, V]`` float32 logits
for prompt positions, and none in full for completion positions either.

Models whose logits are not a plain linear map of the final hidden state (Gemma-2 soft-capping,
Cohere's logit scale, a non-Linear head) take the plain path: full logits of completion positions,
``log_softmax`` in float32. Both paths give the same numbers; tests check it.
"""

from __future__ import annotations

import torch
from torch import nn

from gspo.losses import chunked_token_logprobs
from gspo.models.introspect import accepts_kwarg, unwrap_model
from gspo.sampling.generate import position_ids_from_mask

Tensor = torch.Tensor


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
) -> tuple[Tensor, Tensor | None]:
    """``(logp_BT, entropy_BT)`` of the completion tokens (float32; entropy detached, or None).

    ``force_plain`` takes the full-logits path (needed when parameters are sharded: FSDP, ZeRO-3).

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
        captured: dict[str, Tensor] = {}

        def grab(_module, _inputs, output):
            captured["hidden"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

        handle = backbone.register_forward_hook(grab)
        try:
            model(**kwargs, **({"logits_to_keep": 1} if keep else {}))
        finally:
            handle.remove()
        hidden_BTH = captured["hidden"][:, P - 1 : P + T - 1]
        return chunked_token_logprobs(
            hidden_BTH, head.weight, completion_ids_BT, bias=head.bias, temperature=temperature,
            chunk_size=chunk_size, with_entropy=with_entropy,
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
