"""What PPO's critic costs in memory (peak RSS), with full weights and with LoRA (issue 16).

Each configuration runs in its own process (``ru_maxrss`` is per process): build a trainer on a model of
SmolLM2-135M-Instruct's architecture (its tokenizer and config.json: width 576, vocabulary 49,152, tied
embeddings) with fewer layers (``--layers``, default 6 of 30), randomly initialised in the process (no
SmolLM2 training), and take ``--steps`` training steps; report the resident set size after building
the trainer and the peak over the run. Configurations: ``gspo`` (no critic: the baseline), ``ppo``
(a critic with all weights trained), and both with LoRA (``--lora-r``): ``gspo-lora`` / ``ppo-lora``.

    python benchmarks/critic_memory.py                       # all four, one process each (about a minute)
    python benchmarks/critic_memory.py --layers 30           # SmolLM2-135M's own depth (a few GB of RAM)

Needs the prepared SmolLM2 folder (``gspo prepare-model smollm2`` or ``GSPO_CACHE``) for the tokenizer
and config only. Results in benchmarks/README.md and docs/algorithms.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

MODES = ("gspo", "ppo", "gspo-lora", "ppo-lora")


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_one(mode: str, layers: int, lora_r: int, steps: int) -> dict:
    import torch
    import transformers

    from gspo.config import GSPOConfig
    from gspo.models.smollm2 import smollm2_path
    from gspo.trainer import GSPOTrainer

    torch.set_num_threads(1)
    folder = smollm2_path()
    config = transformers.AutoConfig.from_pretrained(folder)
    config.num_hidden_layers = layers
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).float()
    params = sum(p.numel() for p in model.parameters())
    lora = lora_r if mode.endswith("-lora") else 0
    if lora:
        from gspo.models.lora import apply_lora

        model = apply_lora(model, r=lora, alpha=2 * lora, dropout=0.0, target_modules="all-linear")
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + {2 * i}?"}]} for i in range(16)]

    def reward(prompts, completions, **_):
        return [float(sum(ch.isdigit() for ch in c)) for c in completions]

    out_dir = tempfile.mkdtemp(prefix="critic-mem-")
    cfg = GSPOConfig(
        model="in-process",
        algorithm="ppo" if mode.startswith("ppo") else "gspo",
        lora_r=lora,
        lora_alpha=2 * lora if lora else 16.0,
        prompts_per_step=2,
        group_size=4,
        max_new_tokens=16,
        num_minibatches=1,
        micro_batch_size=8,
        max_steps=steps,
        eval_limit=0,
        output_dir=out_dir,
        progress=False,
    )
    rss_model = _rss_mib()
    trainer = GSPOTrainer(model, tokenizer, [reward], rows, cfg)
    rss_built = _rss_mib()
    for _ in range(steps):
        trainer.train_step()
    critic = trainer.critic.model if trainer.critic is not None else None
    return {
        "mode": mode,
        "layers": layers,
        "params": params,
        "lora_r": lora,
        "critic_params": sum(p.numel() for p in critic.parameters()) if critic is not None else 0,
        "critic_trainable": sum(p.numel() for p in critic.parameters() if p.requires_grad) if critic else 0,
        "rss_model_mib": rss_model,
        "rss_after_build_mib": rss_built,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one mode, print JSON
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.layers, args.lora_r, args.steps)))
        return
    results = []
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root / "src"), OMP_NUM_THREADS="1")
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--one", mode, "--layers", str(args.layers), "--lora-r", str(args.lora_r)]
        cmd += ["--steps", str(args.steps)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if res.returncode != 0:
            raise SystemExit(f"{mode} failed:\n{res.stderr[-3000:]}")
        results.append(json.loads(res.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(
            f"{mode:<10} params {r['params'] / 1e6:6.1f}M  critic {r['critic_params'] / 1e6:6.1f}M "
            f"({r['critic_trainable'] / 1e6:.2f}M trained)  RSS after build {r['rss_after_build_mib']:7.0f} MiB  "
            f"peak {r['peak_rss_mib']:7.0f} MiB",
            flush=True,
        )
    base = {r["mode"]: r["peak_rss_mib"] for r in results}
    if "gspo" in base and "ppo" in base:
        print(f"critic, all weights: +{base['ppo'] - base['gspo']:.0f} MiB peak")
    if "gspo-lora" in base and "ppo-lora" in base:
        print(f"critic, LoRA r={args.lora_r}: +{base['ppo-lora'] - base['gspo-lora']:.0f} MiB peak")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
