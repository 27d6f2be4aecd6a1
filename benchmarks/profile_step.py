"""Where a gspo training step spends its time (the bench_vs_trl configuration), without touching src/.

    .venv-bench/bin/python benchmarks/profile_step.py --model tiny-151936 --threads 1
    .venv-bench/bin/python benchmarks/profile_step.py --model smollm2 --threads 1 --torch-profiler
    .venv-bench/bin/python benchmarks/profile_step.py --model smollm2 --py-spy       # flame graph (SVG)

Three views of the same step (1 rollout of 32 completions + 4 optimizer steps, forced full length):

1. phase timers (default): gspo functions are wrapped *from the outside* (monkeypatching module
   attributes and one instance's ``forward``) with wall-clock timers. Phases are exclusive where
   nested (e.g. ``sample: lm_head`` is inside ``sample: model forward``; the table says which is
   inclusive of which). Timers add a few µs per call: negligible against the ms-scale phases.
2. ``--torch-profiler``: torch.profiler op table (self CPU time, top ops) over the measured cycles.
3. ``--py-spy``: re-runs this script under ``py-spy record`` (native frames) and writes an SVG
   flame graph plus a collapsed-stack text file under benchmarks/results/profiles/.

Writes benchmarks/results/profile_<model>_t<threads>.json (and .txt tables).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

TIMES: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)
STACK: list[str] = []


@contextmanager
def phase(name: str):
    STACK.append(name)
    t = time.perf_counter()
    try:
        yield
    finally:
        TIMES[name] += time.perf_counter() - t
        CALLS[name] += 1
        STACK.pop()


def wrap(obj, attr: str, name, staticmethod_: bool = False):
    """Replace ``obj.attr`` by a timed wrapper. ``name`` is a string or ``f() -> str`` (context-dependent)."""
    orig = getattr(obj, attr)

    @functools.wraps(orig)  # keeps the signature: gspo inspects model.forward for its keyword arguments
    def timed(*args, **kwargs):
        with phase(name() if callable(name) else name):
            return orig(*args, **kwargs)

    setattr(obj, attr, staticmethod(timed) if staticmethod_ else timed)
    return orig


def in_phase(prefix: str) -> bool:
    return any(s.startswith(prefix) for s in STACK)


def instrument(trainer) -> None:
    import torch

    import gspo.losses.logprobs as lp
    import gspo.sampling.generate as gen
    import gspo.trainer.rollout as ro
    import gspo.trainer.trainer as tr

    model = trainer.model
    wrap(ro, "sample", "1 sample (total)")
    wrap(gen, "_choose", "1.2 sample: choose token (softmax + draw)")
    wrap(ro, "decode_completions", "2 decode + reward")
    wrap(trainer.rewards.__class__, "__call__", "2 decode + reward")
    wrap(trainer, "_logprobs_no_grad", "3 old log-probs (total, no grad)")
    wrap(trainer, "_update", "4 update (total)")

    def fwd_name():
        return "1.1 sample: model forward (incl. lm_head)" if in_phase("1 ") else "x model forward (padded scoring)"

    def backbone_name():
        if in_phase("1 "):
            return "x backbone in sampling (part of 1.1)"
        if in_phase("3 "):
            return "3.1 old-logp: backbone forward"
        return "4.1 update: backbone forward"

    wrap(model, "forward", fwd_name)
    backbone = getattr(model, model.base_model_prefix)
    wrap(backbone, "forward", backbone_name)  # the packed and prompt-sharing paths call it directly
    head = model.get_output_embeddings()

    def head_name():
        return "1.1a sample: lm_head (part of 1.1)" if in_phase("1 ") else "x lm_head (other)"

    wrap(head, "forward", head_name)

    def chunk_name():
        return (
            "3.2 old-logp: output layer (chunked log-probs)"
            if in_phase("3 ")
            else "4.2 update: output layer fwd (chunked)"
        )

    wrap(lp._ChunkedTokenLogProb, "forward", chunk_name, staticmethod_=True)
    wrap(lp._ChunkedTokenLogProb, "backward", "4.4a update: output layer bwd (part of 4.4)", staticmethod_=True)
    wrap(tr, "policy_loss", "4.3 update: policy loss")
    wrap(torch.Tensor, "backward", "4.4 update: backward (total)")
    if hasattr(trainer, "dist") and hasattr(trainer.dist, "clip_grad_norm"):
        wrap(trainer.dist, "clip_grad_norm", "4.5 update: clip_grad_norm")
    else:
        wrap(torch.nn.utils, "clip_grad_norm_", "4.5 update: clip_grad_norm")
    wrap(trainer.optimizer, "step", "4.6 update: optimizer.step")
    wrap(trainer.optimizer, "zero_grad", "4.7 update: zero_grad")
    # The embedding's backward (dense [V, H] gradient for a tied head) shows up inside 4.4 only.


def build_trainer(model_name: str, completion_len: int, lr: float, threads: int, options: str = ""):
    from gspo.trainer import GSPOConfig, GSPOTrainer

    model, tok = benchlib.load(model_name)
    cfg = GSPOConfig(
        model=model_name,
        prompts_per_step=4,
        group_size=8,
        max_new_tokens=completion_len,
        num_minibatches=4,
        micro_batch_size=8,  # as TRL: 8 sequences per forward (old log-probs and training)
        learning_rate=lr,
        max_grad_norm=1.0,
        algorithm="gspo",
        clip_low=3e-4,
        clip_high=4e-4,
        kl_coef=0.0,
        old_logp_source="recompute",
        temperature=1.0,
        max_steps=10**6,
        progress=False,
        eval_limit=0,
        seed=0,
        num_threads=threads,
    )
    cfg = dataclasses.replace(cfg, **benchlib.parse_gspo_config(options))
    rows = [{"prompt": p} for p in benchlib.prompts()]
    trainer = GSPOTrainer(model, tok, [benchlib.vowel_reward], rows, cfg)
    trainer.eos_ids = [int(model.config.vocab_size)]  # never sampled: full-length completions
    return trainer


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny-151936")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--completion-len", type=int, default=16)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--measure", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--torch-profiler", action="store_true")
    p.add_argument("--py-spy", action="store_true", help="record this script under py-spy (flame graph)")
    p.add_argument("--tag", default="")
    p.add_argument("--gspo-config", default="", help="library options, e.g. 'pack_sequences=false'")
    a = p.parse_args(argv)
    tag = f"{a.model}_t{a.threads}{('_' + a.tag) if a.tag else ''}"
    outdir = benchlib.RESULTS / "profiles"
    outdir.mkdir(parents=True, exist_ok=True)

    if a.py_spy:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        args = [x for x in (argv or sys.argv[1:]) if x != "--py-spy"] + ["--tag", (a.tag + "_pyspy").strip("_")]
        for fmt, ext in (("flamegraph", "svg"), ("raw", "txt")):
            cmd = [
                spy,
                "record",
                "--native",
                "-r",
                "50",
                "-f",
                fmt,
                "-o",
                str(outdir / f"pyspy_{tag}.{ext}"),
                "--",
                sys.executable,
                __file__,
                *args,
            ]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, env=benchlib.thread_env(a.threads))
        summarize_collapsed(outdir / f"pyspy_{tag}.txt", outdir / f"pyspy_{tag}_summary.txt")
        return 0

    benchlib.set_threads(a.threads)
    import torch

    benchlib.set_threads(a.threads)
    torch.manual_seed(0)
    trainer = build_trainer(a.model, a.completion_len, a.lr, a.threads, a.gspo_config)
    for _ in range(a.warmup):
        trainer.train_step()
    instrument(trainer)
    TIMES.clear(), CALLS.clear()
    prof = None
    if a.torch_profiler:
        from torch.profiler import ProfilerActivity, profile

        prof = profile(activities=[ProfilerActivity.CPU], record_shapes=False)
        prof.__enter__()
    t0 = time.perf_counter()
    metrics = []
    for _ in range(a.measure):
        with phase("0 train_step (total)"):
            metrics.append(trainer.train_step())
    wall = time.perf_counter() - t0
    if prof is not None:
        prof.__exit__(None, None, None)

    per_cycle = {k: v / a.measure for k, v in sorted(TIMES.items())}
    total = per_cycle["0 train_step (total)"]
    lines = [
        f"gspo step profile: {a.model} ({benchlib.n_params(trainer.model) / 1e6:.2f}M params), "
        f"{a.threads} thread(s), 32 completions x {a.completion_len} tokens, 4 optimizer steps per cycle; "
        f"per cycle (mean of {a.measure})",
        f"{'phase':55s} {'s/cycle':>9s} {'% step':>7s} {'calls':>6s}",
    ]
    for k, v in per_cycle.items():
        lines.append(f"{k:55s} {v:9.4f} {100 * v / total:6.1f}% {CALLS[k] // a.measure:6d}")
    derived = {
        "1.3 sample: loop overhead (1 - 1.1 - 1.2)": per_cycle.get("1 sample (total)", 0)
        - per_cycle.get("1.1 sample: model forward (incl. lm_head)", 0)
        - per_cycle.get("1.2 sample: choose token (softmax + draw)", 0),
        "4.4b update: backbone+embedding bwd (4.4 - 4.4a)": per_cycle.get("4.4 update: backward (total)", 0)
        - per_cycle.get("4.4a update: output layer bwd (part of 4.4)", 0),
        "output layer total (1.1a + 3.2 + 4.2 + 4.4a)": sum(
            per_cycle.get(k, 0)
            for k in (
                "1.1a sample: lm_head (part of 1.1)",
                "3.2 old-logp: output layer (chunked log-probs)",
                "4.2 update: output layer fwd (chunked)",
                "4.4a update: output layer bwd (part of 4.4)",
            )
        ),
    }
    lines.append("derived:")
    for k, v in derived.items():
        lines.append(f"{k:55s} {v:9.4f} {100 * v / total:6.1f}%")
    text = "\n".join(lines)
    print(text)
    result = dict(
        model=a.model,
        threads=a.threads,
        completion_len=a.completion_len,
        n_params=benchlib.n_params(trainer.model),
        per_cycle_s=per_cycle,
        calls_per_cycle={k: CALLS[k] // a.measure for k in CALLS},
        derived=derived,
        wall_s=wall,
        peak_rss_mib=benchlib.peak_rss_mib(),
        gspo_metrics_time={k: [m[k] for m in metrics] for k in metrics[0] if k.startswith("time/")},
    )
    if prof is not None:
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
        print(table)
        (outdir / f"torchprof_{tag}.txt").write_text(table)
        ka = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:40]
        result["torch_ops_self_cpu_ms_per_cycle"] = {e.key: e.self_cpu_time_total / 1e3 / a.measure for e in ka}
    (outdir / f"phases_{tag}.txt").write_text(text + "\n")
    benchlib.write_json(f"profiles/profile_{tag}.json", result)
    return 0


def summarize_collapsed(src: Path, dst: Path, top: int = 40) -> None:
    """Self-time of the leaf frames in a py-spy 'raw' (collapsed) file, plus inclusive time of key gspo frames."""
    if not src.is_file():
        return
    self_t: dict[str, int] = defaultdict(int)
    incl: dict[str, int] = defaultdict(int)
    total = 0
    for line in src.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        n = int(n)
        total += n
        frames = stack.split(";")
        self_t[frames[-1]] += n
        for f in set(frames):
            if any(key in f for key in ("gspo/", "transformers/", "torch/optim", "torch/autograd", "torch/nn/")):
                incl[f] += n
    out = [f"py-spy samples: {total}", "top self (leaf) frames:"]
    for f, n in sorted(self_t.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"{100 * n / total:6.1f}%  {f}")
    out.append("top inclusive python frames (gspo / transformers / torch):")
    for f, n in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"{100 * n / total:6.1f}%  {f}")
    dst.write_text("\n".join(out) + "\n")
    print("\n".join(out[:30]))


if __name__ == "__main__":
    sys.exit(main())
