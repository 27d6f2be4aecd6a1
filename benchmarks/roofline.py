"""The machine's limit for a gspo step, and how close gspo gets to it.

    .venv-bench/bin/python benchmarks/roofline.py                        # uses results/bench_vs_trl.json
    .venv-bench/bin/python benchmarks/roofline.py --measure-gspo          # times gspo itself instead

1. Measures fp32 matmul throughput (GFLOP/s; best of several runs, so it approximates an unloaded
   core on a shared machine) for a large square product and for the shapes a step really runs (output
   layer, MLP, decode), and the memory bandwidth of a large copy, at 1 and 2 threads, each in a fresh
   process.
2. Counts the FLOPs of one optimizer step of the bench_vs_trl workload (a rollout of 32 completions
   of L tokens is generated once per 4 optimizer steps; per optimizer step: 1/4 of the rollout's
   sampling and old-log-prob forward, plus forward+backward of 8 completions):
     sampling    2·N_body per prompt token (prefill, no logits but the last) and per generated token
                 2·(N_body + V·H) (body + output layer), plus attention 4·c·d per layer at context c;
     old logp    forward over prompt+completion: 2·N_body per token, 2·V·H per *completion* token, attention;
     training    3 × that forward (forward + backward ≈ 2 × forward), i.e. ~6·N per trained token.
   N_body counts the matmul weights of the transformer layers; the embedding lookup costs no FLOPs.
   Prompt lengths are the real token counts of the benchmark prompts (no padding counted).
3. Lowest possible time = Σ over phases of max(FLOPs / matmul peak, bytes / bandwidth), where bytes
   are the unavoidable weight reads (every decode step reads all weights) and AdamW's traffic
   (read p, g, m, v; write p, m, v: 28 bytes per parameter) plus grad-norm clipping (4 bytes/param).
4. Reports gspo's measured s/step (median, from bench_vs_trl) as a multiple of that bound, and the
   fraction of the machine's limit it reaches (bound / measured).

Writes benchmarks/results/roofline.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

PER_STEP, GROUP, STEPS_PER_ROLLOUT = 8, 8, 4


# ============================================================================ machine measurements (child)
def measure_machine(threads: int) -> dict:
    import time

    import torch

    benchlib.set_threads(threads)

    def best(fn, reps):
        fn()
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return min(ts), sorted(ts)[len(ts) // 2]

    shapes = {
        "square 2048": (2048, 2048, 2048),
        "output layer [512,128]x[128,151936]": (512, 128, 151936),
        "SmolLM2 MLP [1024,576]x[576,1536]": (1024, 576, 1536),
        "SmolLM2 head [256,576]x[576,49152]": (256, 576, 49152),
        "decode head [32,576]x[576,49152]": (32, 576, 49152),
    }
    out = {"threads": torch.get_num_threads(), "matmul_gflops": {}, "matmul_gflops_median": {}}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        c = torch.empty(m, n)
        tmin, tmed = best(lambda: torch.mm(a, b, out=c), 15)
        out["matmul_gflops"][name] = 2 * m * k * n / tmin / 1e9
        out["matmul_gflops_median"][name] = 2 * m * k * n / tmed / 1e9
    x = torch.randn(64 * 2**20)  # 256 MiB
    y = torch.empty_like(x)
    tmin, tmed = best(lambda: y.copy_(x), 10)
    out["copy_gbs"] = 2 * x.numel() * 4 / tmin / 1e9
    out["copy_gbs_median"] = 2 * x.numel() * 4 / tmed / 1e9
    return out


def prompt_lengths(model: str) -> dict:
    import benchlib as bl
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bl.model_source(model))
    lens = [len(tok(p)["input_ids"]) for p in bl.prompts()]
    return {"mean": sum(lens) / len(lens), "min": min(lens), "max": max(lens)}


# ============================================================================ FLOP model
def model_shape(model: str) -> dict:
    cfg = json.loads((Path(benchlib_model_path(model)) / "config.json").read_text())
    H, I, nl = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or H // nh
    V = cfg["vocab_size"]
    tied = cfg.get("tie_word_embeddings", True)
    per_layer = H * nh * hd + 2 * H * nkv * hd + nh * hd * H + 3 * H * I
    n_body = nl * per_layer
    n_params = n_body + V * H * (1 if tied else 2) + nl * 2 * H + H  # + norms
    return dict(
        H=H,
        I=I,
        layers=nl,
        heads=nh,
        kv_heads=nkv,
        head_dim=hd,
        V=V,
        tied=tied,
        n_body=n_body,
        n_params_approx=n_params,
        attn_dim=nh * hd,
    )


def benchlib_model_path(model: str) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(benchlib.HERE)!r}); import benchlib; "
            f"print(benchlib.model_source({model!r}))",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=benchlib.thread_env(1),
    )
    return out.stdout.strip().splitlines()[-1]


def step_cost(shape: dict, P: float, L: int) -> dict:
    """FLOPs and unavoidable bytes of one optimizer step (1/4 rollout + 1 minibatch update)."""
    Nb, VH, d, nl = shape["n_body"], shape["V"] * shape["H"], shape["attn_dim"], shape["layers"]
    n_params = shape["n_params_approx"]
    B = PER_STEP * STEPS_PER_ROLLOUT  # 32 sequences per rollout

    def attn(c0, c1):  # Σ_{c=c0+1..c1} 4·c·d·nl (causal attention FLOPs for positions c0+1..c1)
        return 4 * d * nl * (c1 * (c1 + 1) / 2 - c0 * (c0 + 1) / 2)

    S = P + L
    sample = B * (2 * Nb * P + attn(0, P) + 2 * VH + (L - 1) * (2 * Nb + 2 * VH) + attn(P, S - 1))
    fwd_one = 2 * Nb * S + attn(0, S) + 2 * VH * L
    old = B * fwd_one
    train_mb = PER_STEP * 3 * fwd_one
    flops = dict(sampling=sample / STEPS_PER_ROLLOUT, old_logp=old / STEPS_PER_ROLLOUT, training=train_mb)
    wbytes = 4 * n_params
    n_micro = B // PER_STEP
    bytes_ = dict(
        sampling=L * wbytes / STEPS_PER_ROLLOUT,  # every decode step (and the prefill) reads all weights
        old_logp=n_micro * wbytes / STEPS_PER_ROLLOUT,
        training=3 * wbytes,
        optimizer=(28 + 4) * n_params,  # AdamW read p,g,m,v write p,m,v + grad-norm read g
    )
    return dict(flops=flops, bytes=bytes_, total_gflop=sum(flops.values()) / 1e9, prompt_tokens=P, completion_len=L)


def bound(cost: dict, machine: dict) -> dict:
    peak = max(machine["matmul_gflops"].values()) * 1e9
    bw = machine["copy_gbs"] * 1e9
    phases = {}
    for ph in ("sampling", "old_logp", "training"):
        phases[ph] = max(cost["flops"][ph] / peak, cost["bytes"][ph] / bw)
    phases["optimizer"] = cost["bytes"]["optimizer"] / bw
    return dict(
        t_min_s=sum(phases.values()),
        t_compute_only_s=sum(cost["flops"].values()) / peak,
        phases_s=phases,
        peak_gflops=peak / 1e9,
        bandwidth_gbs=bw / 1e9,
    )


# ============================================================================ driver
def child(fn: str, arg, threads: int):
    code = (
        f"import sys, json; sys.path.insert(0, {str(benchlib.HERE)!r}); import roofline; "
        f"print(json.dumps(roofline.{fn}({arg!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=benchlib.thread_env(threads))
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(benchlib.MODELS))
    p.add_argument("--threads", default="1,2")
    p.add_argument("--completion-len", type=int, default=16)
    p.add_argument("--bench-results", default=str(benchlib.RESULTS / "bench_vs_trl.json"))
    p.add_argument("--measure-gspo", action="store_true", help="time gspo here (bench_vs_trl worker) instead")
    a = p.parse_args(argv)
    threads = [int(t) for t in a.threads.split(",")]
    models = a.models.split(",")

    machine = {t: child("measure_machine", t, t) for t in threads}
    for t, m in machine.items():
        print(
            f"{t} thread(s): matmul GFLOP/s best "
            + ", ".join(f"{k}: {v:.1f}" for k, v in m["matmul_gflops"].items())
            + f"; copy {m['copy_gbs']:.1f} GB/s"
        )
    bench = {}
    if not a.measure_gspo and Path(a.bench_results).is_file():
        data = json.loads(Path(a.bench_results).read_text())
        for r in data["rows"]:
            bench[(r["model"], r["threads"])] = r
    rows = []
    for m in models:
        shape = model_shape(m)
        P = child("prompt_lengths", m, 1)["mean"]
        cost = step_cost(shape, P, a.completion_len)
        for t in threads:
            b = bound(cost, machine[t])
            row = dict(model=m, threads=t, shape=shape, cost=cost, bound=b)
            if (m, t) in bench:
                row["gspo_s_per_step"] = bench[(m, t)]["gspo"]["s_per_step"]
                if "trl" in bench[(m, t)]:
                    row["trl_s_per_step"] = bench[(m, t)]["trl"]["s_per_step"]
                row["source"] = "bench_vs_trl.json"
            elif a.measure_gspo or (m, t) not in bench:
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / "g.json"
                    cmd = [
                        sys.executable,
                        str(benchlib.HERE / "bench_vs_trl.py"),
                        "--worker",
                        "gspo",
                        "--model",
                        m,
                        "--threads-one",
                        str(t),
                        "--worker-out",
                        str(out),
                        "--warmup",
                        "1",
                        "--measure",
                        "2",
                        "--completion-len",
                        str(a.completion_len),
                    ]
                    data, _, _ = benchlib.run_child_wait4(cmd, benchlib.thread_env(t), out)
                row["gspo_s_per_step"] = benchlib.median(data["cycle_s"]) / STEPS_PER_ROLLOUT
                row["source"] = "measured here"
            row["gspo_x_bound"] = row["gspo_s_per_step"] / b["t_min_s"]
            row["gspo_fraction_of_limit"] = b["t_min_s"] / row["gspo_s_per_step"]
            if "trl_s_per_step" in row:
                row["trl_x_bound"] = row["trl_s_per_step"] / b["t_min_s"]
            rows.append(row)
    result = dict(
        machine_info=benchlib.machine_info(),
        versions=benchlib.versions_subprocess(),
        machine=machine,
        completion_len=a.completion_len,
        rows=rows,
    )
    path = benchlib.write_json("roofline.json", result)
    print(table(result))
    print(f"wrote {path}")
    return 0


def table(result: dict) -> str:
    lines = [
        "| model | threads | GFLOP/step (sample / old-logp / train) | matmul peak GFLOP/s | copy GB/s | "
        "lowest possible s/step | gspo s/step | gspo = x·bound | fraction of limit | TRL = x·bound |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        f = r["cost"]["flops"]
        b = r["bound"]
        lines.append(
            f"| {r['model']} | {r['threads']} | {sum(f.values()) / 1e9:.2f} ({f['sampling'] / 1e9:.2f} / "
            f"{f['old_logp'] / 1e9:.2f} / {f['training'] / 1e9:.2f}) | {b['peak_gflops']:.0f} | {b['bandwidth_gbs']:.1f} | "
            f"{b['t_min_s']:.4f} | {r['gspo_s_per_step']:.4f} | {r['gspo_x_bound']:.1f}x | "
            f"{100 * r['gspo_fraction_of_limit']:.1f}% | "
            + (f"{r['trl_x_bound']:.1f}x |" if "trl_x_bound" in r else "– |")
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
