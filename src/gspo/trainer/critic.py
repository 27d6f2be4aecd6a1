"""PPO's critic: a value model beside the policy, its GAE advantages and its own optimizer steps.

The trainer builds one when the algorithm needs ``critic`` (:mod:`gspo.algorithms`: ``ppo``) and
calls it at three points of a step, never by the algorithm's name:

1. :meth:`Critic.prepare` after the rollout (and the π_old / reference passes): no-grad values
   V_old of every completion token, token rewards (the verifiable reward on each row's last real
   token, minus ``reward_kl_coef`` · (log μ − log π_ref) per token, μ the sampler's log-probs), GAE
   (:func:`gspo.losses.gae`, γ = ``gae_gamma``, λ = ``gae_lambda``), and the advantages whitened over
   the whole rollout's real tokens (all processes): these replace the rollout's advantages, per token;
2. :meth:`Critic.minibatch_step` after each policy optimizer step, on the same rows: the clipped
   value loss (:func:`gspo.losses.value_loss`, c = ``value_clip``) summed over real tokens and divided
   by the minibatch's real-token count (all processes), accumulated over micro-batches, then one AdamW
   step at ``critic_lr`` (the policy's schedule and warm-up, its own optimizer state), guarded like the
   policy's (a non-finite loss or gradient norm skips it);
3. :meth:`state_dict` / :meth:`save` / :meth:`load` for checkpoints: the critic's trainable tensors in
   ``critic/critic.safetensors`` and its optimizer and schedule in ``trainer_state.pt``.

**The value model** is the policy's backbone (the causal LM without its output layer) and a linear
head from the last hidden state to a scalar, V_t read at the position that predicts completion token t
(the state in which y_t is chosen, as in verl and TRL). The backbone is a copy of the policy's weights
(with a LoRA policy: its merged weights), or the model at ``critic_path``; the head starts at zero
(so V = 0 before the first update, and building a critic draws no random numbers). With ``lora_r > 0``
the copy gets its own LoRA adapters (same rank, α and targets) and only they and the head train: no
gradients or Adam moments for the backbone's weights (memory: ``docs/algorithms.md``). The head
computes in float32 (float64 for a float64 backbone). ``gradient_checkpointing`` applies to the critic
too. A 4-bit (QLoRA) policy is not copied: such a run names the critic's weights (``critic_path``).

Departure from some peers: the critic is never shared with the policy (no shared trunk, as in verl /
OpenRLHF's separate critic); no critic warm-up phase (the policy updates from the first step).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, TypeAlias

import torch
from torch import nn

from gspo.losses import gae, value_loss, whiten, whiten_moments
from gspo.models.introspect import enable_activation_checkpointing, unwrap_model
from gspo.models.lora import is_peft_model
from gspo.sampling.generate import position_ids_from_mask
from gspo.trainer.optim import build_optimizer, build_scheduler
from gspo.trainer.switches import reward_tokens

logger = logging.getLogger("gspo")

Tensor: TypeAlias = torch.Tensor

CRITIC_DIR = "critic"
CRITIC_FILE = "critic.safetensors"


class ValueModel(nn.Module):
    """A causal LM's backbone and a scalar head: V_t for every completion token of a batch."""

    def __init__(self, backbone: nn.Module, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        weight = next(p for p in backbone.parameters() if p.is_floating_point())
        dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
        self.head = nn.Linear(hidden_size, 1, device=weight.device, dtype=dtype)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, prompt_ids_BP: Tensor, prompt_mask_BP: Tensor, completion_ids_BT: Tensor, completion_mask_BT):
        """``[B, T]`` values: V_t from the hidden state at the position that predicts completion token t."""
        P, T = prompt_ids_BP.shape[1], completion_ids_BT.shape[1]
        ids = torch.cat([prompt_ids_BP, completion_ids_BT], dim=1)
        mask = torch.cat([prompt_mask_BP.long(), completion_mask_BT.long()], dim=1)
        out = self.backbone(
            input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), use_cache=False
        )
        hidden_BTH = out.last_hidden_state[:, P - 1 : P + T - 1]
        return self.head(hidden_BTH.to(self.head.weight.dtype)).squeeze(-1)


def _backbone_of(lm: nn.Module) -> tuple[nn.Module, int]:
    """(the body of a causal LM, without its output layer; its hidden size)."""
    inner = unwrap_model(lm)
    backbone = getattr(inner, getattr(inner, "base_model_prefix", ""), None)
    if not isinstance(backbone, nn.Module) or backbone is inner:
        raise ValueError(f"critic: cannot find the backbone of {type(inner).__name__} (no base_model_prefix)")
    config = inner.config.get_text_config() if hasattr(inner.config, "get_text_config") else inner.config
    return backbone, int(config.hidden_size)


def critic_backbone(policy: nn.Module, config, device: torch.device) -> tuple[nn.Module, int]:
    """The critic's body: the model at ``config.critic_path``, else a copy of the policy's weights."""
    if config.critic_path is not None:
        from gspo.models.loading import load_model_and_tokenizer

        lm, _ = load_model_and_tokenizer(config.critic_path, dtype=config.dtype, device=str(device))
        backbone, hidden = _backbone_of(lm)
        want = unwrap_model(policy).get_input_embeddings().num_embeddings
        have = backbone.get_input_embeddings().num_embeddings
        if have < want:
            from gspo.config import ConfigError

            raise ConfigError(
                "critic_path", f"{config.critic_path}'s vocabulary has {have} tokens, the policy's {want}"
            )
        return backbone, hidden
    while hasattr(policy, "module") and isinstance(policy.module, nn.Module):  # DDP / accelerate wrappers
        policy = policy.module
    lm = copy.deepcopy(policy)
    if is_peft_model(lm):  # the policy's current weights, merged; the critic gets adapters of its own
        lm = lm.merge_and_unload()
        lm.__dict__.pop("peft_config", None)
    return _backbone_of(lm)


def _with_lora(backbone: nn.Module, config) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    targets = config.lora_target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0, target_modules=targets)
    return get_peft_model(backbone, lora)


class Critic:
    """The value model of a ``GSPOTrainer`` whose algorithm needs a critic (see the module docstring)."""

    def __init__(self, trainer):
        cfg = trainer.config
        self.trainer, self.config = trainer, cfg
        backbone, hidden = critic_backbone(trainer.dist.unwrap(trainer.model), cfg, trainer.device)
        backbone.requires_grad_(True)
        if cfg.gradient_checkpointing:
            enable_activation_checkpointing(backbone)
        if cfg.lora_r > 0:
            backbone = _with_lora(backbone, cfg)
        self.model: nn.Module = ValueModel(backbone, hidden).to(trainer.device).train()
        self.optimizer = build_optimizer(
            (p for p in self.model.parameters() if p.requires_grad),
            kind=cfg.optimizer,
            lr=cfg.critic_lr,
            weight_decay=cfg.weight_decay,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            eps=cfg.adam_eps,
            device=trainer.device,
        )
        if trainer.dist.accelerator is not None:
            self.model, self.optimizer = trainer.dist.accelerator.prepare(self.model, self.optimizer)
        self.scheduler = build_scheduler(
            self.optimizer,
            schedule=cfg.lr_schedule,
            warmup_steps=cfg.warmup_steps,
            total_steps=cfg.max_steps * cfg.num_minibatches * cfg.num_epochs,
        )
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        trainable = sum(p.numel() for p in self.params)
        total = sum(p.numel() for p in self.model.parameters())
        logger.info("critic: %.3fM of %.2fM parameters trainable, lr %g", trainable / 1e6, total / 1e6, cfg.critic_lr)
        self.old_values_BT: Tensor | None = None
        self.returns_BT: Tensor | None = None
        self._stats: dict[str, Any] = {}

    # ------------------------------------------------------------------ values
    def _values(self, batch, idx: Tensor) -> tuple[Tensor, int]:
        """Values of rows ``idx`` (columns ``:last``, trimmed of all-padding columns as the policy's)."""
        roll = batch.sampled
        p_mask, c_mask = roll.prompt_mask_BP[idx], roll.completion_mask_BT[idx]
        first = int(p_mask.any(0).long().argmax())
        last = int(c_mask.any(0).long().cumsum(0).argmax()) + 1
        values = self.model(
            roll.prompt_ids_BP[idx][:, first:],
            p_mask[:, first:],
            roll.completion_ids_BT[idx][:, :last],
            c_mask[:, :last],
        )
        return values, last

    @torch.no_grad()
    def _all_values(self, batch) -> Tensor:
        B, T = batch.sampled.completion_ids_BT.shape
        out: Tensor | None = None
        for idx in self.trainer._micro_slices(torch.arange(B, device=self.trainer.device)):
            values, last = self._values(batch, idx)
            if out is None:
                out = torch.zeros(B, T, device=values.device, dtype=values.dtype)
            out[idx, :last] = values
        assert out is not None
        return out

    # ------------------------------------------------------------------ 1. advantages
    def prepare(self, batch, ref_logp_BT: Tensor | None) -> None:
        """V_old, token rewards, GAE and whitening; sets ``batch.adv_B`` to the ``[B, T]`` advantages."""
        cfg, dist = self.config, self.trainer.dist
        self.model.train()
        mask_BT = batch.loss_mask_BT
        old_values_BT = self._all_values(batch)
        B = batch.size
        r_BT = reward_tokens(cfg, dist, batch, ref_logp_BT)[1].to(old_values_BT.dtype)
        adv_BT, returns_BT = gae(r_BT, old_values_BT, mask_BT, gamma=cfg.gae_gamma, lam=cfg.gae_lambda)
        moments = dist.all_reduce(whiten_moments(adv_BT, mask_BT))
        batch.adv_B = whiten(adv_BT, mask_BT, moments=moments)
        self.old_values_BT, self.returns_BT = old_values_BT, returns_BT
        _, stats = value_loss(old_values_BT, old_values_BT, returns_BT, mask_BT)  # before any update
        self._stats = {
            "critic/explained_variance": stats["explained_variance"],
            "critic/value_mean": stats["value_mean"],
            "critic/returns_mean": stats["returns_mean"],
            "critic/token_reward_sum": torch.where(mask_BT, r_BT, 0.0).sum() / max(B, 1),
            "critic/advantage_raw_mean": moments[0] / moments[2].clamp(min=1),
            "critic/value_loss": [],
            "critic/value_clip_frac": [],
            "critic/grad_norm": [],
        }

    # ------------------------------------------------------------------ 2. the update
    def minibatch_step(self, batch, mb_idx: Tensor) -> None:
        """The value loss on this minibatch's rows, accumulated over micro-batches; one guarded AdamW step."""
        tr, cfg = self.trainer, self.config
        assert self.old_values_BT is not None and self.returns_BT is not None
        mask_BT = batch.loss_mask_BT
        tokens = tr.dist.all_reduce(mask_BT[mb_idx].sum().to(self.old_values_BT.dtype)).clamp(min=1)
        normalizer = tokens / tr.dist.world
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=tr.device, dtype=self.old_values_BT.dtype)
        clip_sum = torch.zeros_like(loss_sum)
        micro = list(tr._micro_slices(mb_idx)) or [None]
        for j, idx in enumerate(micro):
            with tr.dist.no_sync(self.model, active=j < len(micro) - 1):
                if idx is None:  # no row of this minibatch here: join the all-reduce with zero
                    values, _ = self._values(batch, torch.arange(1, device=tr.device))
                    (values.sum() * 0.0).backward()
                    continue
                values, last = self._values(batch, idx)
                m = mask_BT[idx, :last]
                loss, stats = value_loss(
                    values,
                    self.old_values_BT[idx, :last],
                    self.returns_BT[idx, :last],
                    m,
                    clip=cfg.value_clip,
                    normalizer=normalizer,
                )
                loss.backward()
                loss_sum = loss_sum + loss.detach() / tr.dist.world
                clip_sum = clip_sum + stats["value_clip_frac"] * m.sum()
        loss_sum = tr.dist.all_reduce(loss_sum)
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
        grad_norm = tr.dist.clip_grad_norm(self.model, self.params, max_norm)
        if torch.isfinite(grad_norm) and torch.isfinite(loss_sum):
            self.optimizer.step()
            self.scheduler.step()
        else:
            logger.warning("step %d: non-finite value loss or gradient; critic step skipped", tr.step + 1)
        self.optimizer.zero_grad(set_to_none=True)
        self._stats["critic/value_loss"].append(loss_sum)
        self._stats["critic/value_clip_frac"].append(tr.dist.all_reduce(clip_sum) / (tokens * 1.0))
        self._stats["critic/grad_norm"].append(grad_norm)

    def metrics(self) -> dict[str, float]:
        """This step's critic metrics (host floats): lists are averaged over the critic's optimizer steps."""
        out = {}
        for key, value in self._stats.items():
            if isinstance(value, list):
                out[key] = float(torch.stack([v.double() for v in value]).mean()) if value else float("nan")
            else:
                out[key] = float(self.trainer.dist.all_reduce(value.double()) / self.trainer.dist.world)
        return out

    # ------------------------------------------------------------------ 3. checkpoints
    def trainable_tensors(self) -> dict[str, Tensor]:
        model = self.trainer.dist.unwrap(self.model)
        return {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}

    def save(self, folder: Path) -> None:
        """Write the critic's trainable tensors into ``folder/critic/critic.safetensors``."""
        from safetensors.torch import save_file

        (Path(folder) / CRITIC_DIR).mkdir(parents=True, exist_ok=True)
        save_file(self.trainable_tensors(), str(Path(folder) / CRITIC_DIR / CRITIC_FILE))

    def load(self, folder: Path) -> None:
        """Restore the trainable tensors written by :meth:`save` (the names must match exactly)."""
        from safetensors.torch import load_file

        from gspo.trainer.checkpoint import CheckpointError

        file = Path(folder) / CRITIC_DIR / CRITIC_FILE
        if not file.is_file():
            raise CheckpointError(f"checkpoint {folder} has no critic ({CRITIC_DIR}/{CRITIC_FILE})")
        saved = load_file(str(file), device=str(self.trainer.device))
        own = dict(self.trainer.dist.unwrap(self.model).named_parameters())
        mine = set(self.trainable_tensors())
        if set(saved) != mine:
            raise CheckpointError(
                f"checkpoint {folder}: the critic does not match (unexpected {sorted(set(saved) - mine)[:5]}, "
                f"missing {sorted(mine - set(saved))[:5]})"
            )
        with torch.no_grad():
            for name, tensor in saved.items():
                own[name].copy_(tensor)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
