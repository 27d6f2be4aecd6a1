"""Data parallelism through ``accelerate`` (DDP, FSDP, DeepSpeed), with a no-op single-process path.

How a multi-process step stays identical to the single-process one with the same global batch:

- every process draws the same prompt order and takes its contiguous share of the step's prompts, so
  each group of G responses lives on one process and its advantages need no cross-process data
  (rewards are still all-gathered, for the ``batch`` advantage scale and for logging);
- sampling is layout-independent (``sample(..., row_offset, global_rows)``): a row's tokens do not
  depend on which process samples it;
- minibatches are cut from one global permutation shared by all processes; each process trains on
  the rows of that minibatch it holds, and the loss is divided by the *global* number of sequences
  (or tokens) in the minibatch. DDP averages gradients over processes, so each process multiplies its
  loss by the world size: the synchronised gradient is then exactly the single-process one;
- a process holding no row of a minibatch still joins the gradient all-reduce with a zero loss.

Only the main process writes checkpoints, logs and plots, and runs evaluation.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch

#: accelerate's distributed types that need GPUs: on CPU, accelerate 1.x either refuses them deep in
#: each worker (FSDP with sync_module_states: "There are currently no available devices found") or
#: silently drops the plugin and runs DDP (its state only switches to FSDP / DeepSpeed on GPUs).
GPU_ONLY_TYPES = ("FSDP", "DEEPSPEED", "MEGATRON_LM")


def gpu_only_launch_error(kind: str, source: str) -> str | None:
    """The sentence that refuses a ``kind`` launch (an accelerate distributed type) on a machine without
    CUDA, or None when it can run here."""
    import torch

    kind = kind.upper()
    if kind not in GPU_ONLY_TYPES or torch.cuda.is_available():
        return None
    return (
        f"{source} asks for {kind}, which accelerate runs only on GPUs, and this machine has no CUDA device; "
        f"on CPU use --num-processes N without --accelerate-config (DDP over gloo: the same result as one process)"
    )


def launched_distributed() -> bool:
    """True inside ``accelerate launch`` / ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class Dist:
    """Rank, world size and the few collectives the trainer needs (no-ops for one process)."""

    def __init__(self, accelerator=None):
        self.accelerator = accelerator
        if accelerator is not None:
            self.rank, self.world, self.is_main = (
                accelerator.process_index,
                accelerator.num_processes,
                accelerator.is_main_process,
            )
        else:
            self.rank, self.world, self.is_main = 0, 1, True

    @property
    def device(self) -> torch.device:
        """Where collectives' tensors live (the accelerator's device: NCCL needs CUDA tensors)."""
        return torch.device("cpu") if self.accelerator is None else self.accelerator.device

    @property
    def sharded_params(self) -> bool:
        """FSDP / ZeRO-3 shard parameters: the output layer's weight cannot be read directly."""
        if self.accelerator is None:
            return False
        kind = str(self.accelerator.distributed_type)
        if "FSDP" in kind:
            return True
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        return plugin is not None and getattr(plugin, "zero_stage", 0) == 3

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        if self.world == 1:
            return tensor
        import torch.distributed as dist

        ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
        out = tensor.clone()
        dist.all_reduce(out, op=ops[op])
        return out

    def reduce_metrics(
        self, means: dict[str, tuple[Any, Any]], mins: dict[str, Any] | None = None, maxs: dict[str, Any] | None = None
    ) -> dict[str, float]:
        """Metrics of the whole global batch from each process's local ones, in three all-reduces at most.

        ``means`` maps a name to ``(local mean, local weight)`` (e.g. a mean over this process's tokens and
        its token count): the result is the weight-averaged mean over processes (0 where no weight).
        ``mins`` / ``maxs`` map a name to a local extreme (±inf where a process has none).
        """
        out: dict[str, float] = {}
        if means:
            values = torch.tensor([[float(v) * float(w), float(w)] for v, w in means.values()], dtype=torch.float64)
            values = self.all_reduce(values.to(self.device))
            out.update({k: float(s / w) if w > 0 else 0.0 for k, (s, w) in zip(means, values.tolist())})
        for op, extremes in (("min", mins), ("max", maxs)):
            if extremes:
                local = torch.tensor([float(v) for v in extremes.values()], dtype=torch.float64)
                out.update(zip(extremes, self.all_reduce(local.to(self.device), op).tolist()))
        return out

    def gather_objects(self, items: list[Any]) -> list[Any]:
        """Concatenate per-process lists in rank order."""
        if self.world == 1:
            return list(items)
        from accelerate.utils import gather_object

        return gather_object(list(items))

    def barrier(self) -> None:
        if self.world > 1:
            self.accelerator.wait_for_everyone()

    def no_sync(self, model, active: bool):
        """Skip the gradient all-reduce for all but the last micro-batch of a minibatch."""
        if self.world == 1 or not active:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(model)

    def clip_grad_norm(self, model, params, max_norm: float) -> torch.Tensor:
        if self.accelerator is not None:
            norm = self.accelerator.clip_grad_norm_(params, max_norm)
            if norm is not None:
                return torch.as_tensor(norm)
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def unwrap(self, model):
        return model if self.accelerator is None else self.accelerator.unwrap_model(model)
