"""How gspo's step time and peak memory grow with completion length and group size.

    .venv-bench/bin/python benchmarks/scaling.py                          # tiny-32768, 1 thread
    .venv-bench/bin/python benchmarks/scaling.py --model tiny-151936 --lengths 16,64,256 --groups 4,8

The bench_vs_trl workload (4 prompts per rollout, 4 minibatches = 4 optimizer steps per rollout,
forced full-length completions, fp32, old log-probs recomputed), varying one thing at a time:

- completion length L ∈ --lengths (group size 8): tokens per step grow ∝ L;
- group size G ∈ --groups (L = --group-len): completions per rollout = 4·G, minibatch = G.

Every point runs in a fresh process (peak RSS from os.wait4). Micro-batch = minibatch (one forward
per optimizer step, as TRL does). For each sweep the table gives s/optimizer step, completion
tokens/s, peak RSS and the RSS added on top of the loaded model, plus the local growth exponent
k = ln(t2/t1) / ln(x2/x1) between successive points (k = 1: linear; k < 1: fixed costs being
amortised; k > 1: superlinear).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

PROMPTS_PER_ROLLOUT, MINIBATCHES = 4, 4


def worker(a) -> None:
    import torch

    benchlib.set_threads(a.threads)
    from gspo.trainer import GSPOConfig, GSPOTrainer

    torch.manual_seed(0)
    model, tok = benchlib.load(a.model)
    rss_loaded = benchlib.current_rss_mib()
    G, L = a.group, a.length
    cfg = GSPOConfig(
        model=a.model,
        prompts_per_step=PROMPTS_PER_ROLLOUT,
        group_size=G,
        max_new_tokens=L,
        num_minibatches=MINIBATCHES,
        micro_batch_size=PROMPTS_PER_ROLLOUT * G // MINIBATCHES,
        learning_rate=1e-5,
        max_grad_norm=1.0,
        algorithm="gspo",
        kl_coef=0.0,
        old_logp_source="recompute",
        temperature=1.0,
        max_steps=10**6,
        progress=False,
        eval_limit=0,
        seed=0,
        num_threads=a.threads,
    )
    trainer = GSPOTrainer(model, tok, [benchlib.vowel_reward], [{"prompt": p} for p in benchlib.prompts()], cfg)
    trainer.eos_ids = [int(model.config.vocab_size)]  # never sampled: full-length completions
    cycles, parts = [], []
    for i in range(a.warmup + a.measure):
        t = time.perf_counter()
        m = trainer.train_step()
        if i >= a.warmup:
            cycles.append(time.perf_counter() - t)
            parts.append({k: m[k] for k in ("time/sample", "time/old_logp", "time/update")})
            assert m["completion/length_mean"] == L
    Path(a.worker_out).write_text(
        json.dumps(
            dict(cycle_s=cycles, parts=parts, rss_after_load_mib=rss_loaded, peak_rss_mib_self=benchlib.peak_rss_mib())
        )
    )


def run_point(model, threads, G, L, warmup, measure, tmp) -> dict:
    out = Path(tmp) / f"{model}-{G}-{L}.json"
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--model",
        model,
        "--threads",
        str(threads),
        "--group",
        str(G),
        "--length",
        str(L),
        "--warmup",
        str(warmup),
        "--measure",
        str(measure),
        "--worker-out",
        str(out),
    ]
    data, rss, _ = benchlib.run_child_wait4(cmd, benchlib.thread_env(threads), out)
    s_cycle = benchlib.median(data["cycle_s"])
    tokens_per_step = PROMPTS_PER_ROLLOUT * G * L / MINIBATCHES
    part = {k: benchlib.median([p[k] for p in data["parts"]]) / MINIBATCHES for k in data["parts"][0]}
    row = dict(
        group=G,
        length=L,
        s_per_step=s_cycle / MINIBATCHES,
        tokens_per_s=tokens_per_step / (s_cycle / MINIBATCHES),
        peak_rss_mib=rss,
        rss_after_load_mib=data["rss_after_load_mib"],
        added_rss_mib=rss - data["rss_after_load_mib"],
        s_per_step_parts=part,
        completions_per_step=PROMPTS_PER_ROLLOUT * G // MINIBATCHES,
    )
    print(
        f"  G={G:3d} L={L:4d}: {row['s_per_step']:.4f} s/step  {row['tokens_per_s']:8.0f} tok/s  "
        f"peak RSS {rss:.0f} MiB (+{row['added_rss_mib']:.0f})  parts/step {part}",
        flush=True,
    )
    return row


def add_exponents(rows: list[dict], key: str) -> None:
    for prev, cur in zip(rows, rows[1:]):
        r = math.log(cur[key] / prev[key])
        cur["k_time"] = math.log(cur["s_per_step"] / prev["s_per_step"]) / r
        cur["k_added_rss"] = math.log(max(cur["added_rss_mib"], 1) / max(prev["added_rss_mib"], 1)) / r


def table(rows: list[dict], key: str, label: str) -> str:
    lines = [
        f"| {label} | s/step | k (time) | s/step: sample / old-logp / update | tok/s | peak RSS | added RSS | k (added RSS) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r["s_per_step_parts"]
        lines.append(
            f"| {r[key]} | {r['s_per_step']:.4f} | {r.get('k_time', float('nan')):.2f} | "
            f"{p['time/sample']:.4f} / {p['time/old_logp']:.4f} / {p['time/update']:.4f} | {r['tokens_per_s']:,.0f} | "
            f"{r['peak_rss_mib']:,.0f} MiB | {r['added_rss_mib']:,.0f} MiB | {r.get('k_added_rss', float('nan')):.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny-32768")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lengths", default="16,32,64,128,256")
    p.add_argument("--groups", default="4,8,16,32")
    p.add_argument("--group-len", type=int, default=16, help="completion length of the group-size sweep")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--measure", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--group", type=int, help=argparse.SUPPRESS)
    p.add_argument("--length", type=int, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker(a)
        return 0
    benchlib.prepare_models_subprocess([a.model])
    res = dict(
        machine=benchlib.machine_info(),
        versions=benchlib.versions_subprocess(),
        model=a.model,
        threads=a.threads,
        settings=dict(
            warmup=a.warmup,
            measure=a.measure,
            prompts_per_rollout=PROMPTS_PER_ROLLOUT,
            minibatches=MINIBATCHES,
            group_len=a.group_len,
        ),
        command=" ".join([Path(sys.executable).name, *sys.argv]),
    )
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{a.model}, {a.threads} thread(s): completion length sweep (G=8)")
        res["length_sweep"] = [
            run_point(a.model, a.threads, 8, L, a.warmup, a.measure, tmp) for L in map(int, a.lengths.split(","))
        ]
        add_exponents(res["length_sweep"], "length")
        print(f"{a.model}, {a.threads} thread(s): group size sweep (L={a.group_len})")
        res["group_sweep"] = [
            run_point(a.model, a.threads, G, a.group_len, a.warmup, a.measure, tmp)
            for G in map(int, a.groups.split(","))
        ]
        add_exponents(res["group_sweep"], "group")
    path = benchlib.write_json(a.out or f"scaling_{a.model}_t{a.threads}.json", res)
    print(table(res["length_sweep"], "length", "completion length (G=8)"))
    print(table(res["group_sweep"], "group", f"group size (L={a.group_len})"))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
