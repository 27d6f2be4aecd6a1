"""gspo against TRL's GRPOTrainer (GSPO configuration), side by side, each side in its own process.

    .venv-bench/bin/python benchmarks/bench_vs_trl.py                      # all models, 1 and 2 threads
    .venv-bench/bin/python benchmarks/bench_vs_trl.py --models tiny-151936 --threads 1
    .venv-bench/bin/python benchmarks/bench_vs_trl.py --setting realistic --models smollm2 --threads 1

Both sides do the same work per optimizer step (the paper's setting, and TRL's documented GSPO one):

- a rollout of ``prompts_per_rollout`` (4) prompts × group size (8) = 32 completions. ``--setting
  forced`` (the default): every completion forced to the full ``--completion-len`` (16) tokens (gspo: an
  EOS id that can never be sampled, namely ``vocab_size``; TRL: ``generation_kwargs={"min_new_tokens":
  L}``, which masks EOS), plain-text prompts. ``--setting realistic``: EOS allowed on both sides, at most
  ``--completion-len`` (128) tokens, so lengths vary, rows finish early and padding counts; prompts in
  the chat template where the tokenizer has one (SmolLM2; the tiny models have none), as gspo's
  ``chat: auto`` does (``benchlib.chat_prompts``: the same prompt ids on both sides);
- π_old log-probs: TRL recomputes them by a no-grad forward over the rollout (because
  ``steps_per_generation`` (4) > ``gradient_accumulation_steps`` (1)); gspo runs its default,
  ``old_logp_source="auto"``, which here (float32, no dropout: the sampler is the trained model) reuses
  the sampler's log-probs — the same numbers up to float rounding. ``--gspo-config
  old_logp_source=recompute`` makes gspo recompute them too (the same-FLOPs comparison);
- the rollout split into 4 minibatches of 8 completions, one optimizer step each (gspo
  ``num_minibatches=4``; TRL ``per_device_train_batch_size=8, steps_per_generation=4``);
- sequence-level ratio, ε = 3e-4 / 4e-4, β = 0, ``loss_type="grpo"`` on the TRL side, fp32, no
  gradient checkpointing, AdamW, grad-norm clipping 1.0, the same learning rate.

One *cycle* is one rollout plus its 4 optimizer steps; ``s/step`` is cycle time / 4 (generation
included), the median over the measured cycles of all repetitions. Completion tokens/s is
``8 × L / (s/step)`` in the forced setting; in the realistic one, where the sides sample different
completions, it is each cycle's generated completion tokens (EOS included; gspo: the completion mask's
sum, TRL: ``completions/mean_length`` of the cycle's first step × 32) / the cycle's time, the median
over the measured cycles. Peak RSS is the worker's ``ru_maxrss`` from ``os.wait4``. Each (model,
threads) pair runs the sides alternately (gspo, TRL, gspo, TRL, ...) in fresh processes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

OPT_STEPS_PER_CYCLE = 4
PER_STEP = 8  # completions per optimizer step (one minibatch)
GROUP = 8
ROLLOUT = PER_STEP * OPT_STEPS_PER_CYCLE  # completions per rollout (32)
BIG = ("tiny-151936", "smollm2")
#: ``--setting``: the defaults of ``--completion-len`` and ``--out`` (file name under benchmarks/results/).
SETTINGS = {
    "forced": dict(completion_len=16, out="bench_vs_trl.json"),
    "realistic": dict(completion_len=128, out="bench_vs_trl_realistic.json"),
}


# ============================================================================ workers
def _finish(out: Path, payload: dict) -> None:
    payload["peak_rss_mib_self"] = benchlib.peak_rss_mib()
    out.write_text(json.dumps(payload))


def setting_prompts(tok, setting: str) -> list:
    """The prompts: plain text (forced), chat messages where the tokenizer has a template (realistic)."""
    return benchlib.chat_prompts(tok) if setting == "realistic" else benchlib.prompts()


def gspo_completion_tokens(m: dict) -> int:
    """Completion tokens of the rollout (EOS included) from ``train_step()``'s metrics.

    ``tokens_per_s`` is the completion mask's sum / ``time/step``, so their product is that sum; it must
    agree with ``completion/length_mean`` × 32 (both exact: integer sums, divided by a power of 2)."""
    n = round(m["tokens_per_s"] * m["time/step"])
    assert n == round(m["completion/length_mean"] * ROLLOUT), (n, m["completion/length_mean"])
    return n


def trl_cycle_lengths(history: list[dict], cycles: range) -> list[float]:
    """TRL's ``completions/mean_length`` of each cycle's rollout.

    TRL generates the whole rollout (32 completions) in the first step of a cycle and logs the
    mean over those 32 at that step only (its metrics are cleared at every log, ``logging_steps=1``)."""
    key = "completions/mean_length"
    by_step = {h["step"]: h[key] for h in history if isinstance(h.get(key), (int, float)) and "step" in h}
    steps = [OPT_STEPS_PER_CYCLE * c + 1 for c in cycles]
    missing = [s for s in steps if s not in by_step]
    assert not missing, f"no {key} logged at steps {missing}: {sorted(by_step)}"
    return [float(by_step[s]) for s in steps]


def worker_gspo(a) -> None:
    import torch

    benchlib.set_threads(a.threads)
    rss_import0 = benchlib.current_rss_mib()
    from gspo.trainer import GSPOConfig, GSPOTrainer

    rss_import = benchlib.current_rss_mib()
    torch.manual_seed(0)
    model, tok = benchlib.load(a.model)
    rss_loaded = benchlib.current_rss_mib()
    cfg = GSPOConfig(
        model=a.model,
        prompts_per_step=ROLLOUT // GROUP,
        group_size=GROUP,
        max_new_tokens=a.completion_len,
        num_minibatches=OPT_STEPS_PER_CYCLE,
        micro_batch_size=PER_STEP,
        learning_rate=a.lr,
        max_grad_norm=1.0,
        algorithm="gspo",
        clip_low=3e-4,
        clip_high=4e-4,
        kl_coef=0.0,
        temperature=1.0,
        max_steps=10**6,
        progress=False,
        eval_limit=0,
        seed=0,
        num_threads=a.threads,
        **benchlib.parse_gspo_config(a.gspo_config),
    )
    rows = [{"prompt": p} for p in setting_prompts(tok, a.setting)]
    trainer = GSPOTrainer(model, tok, [benchlib.vowel_reward], rows, cfg)
    if a.setting == "forced":  # full-length completions: an EOS id outside the vocabulary can never be sampled
        trainer.eos_ids = [int(model.config.vocab_size)]
    cycles, lengths, tokens, parts = [], [], [], []
    for i in range(a.warmup + a.measure):
        t = time.perf_counter()
        m = trainer.train_step()
        dt = time.perf_counter() - t
        assert m["optimizer_steps"] == OPT_STEPS_PER_CYCLE * (i + 1), m["optimizer_steps"]
        if i >= a.warmup:
            cycles.append(dt)
            lengths.append(m["completion/length_mean"])
            tokens.append(gspo_completion_tokens(m))
            parts.append({k: m[k] for k in ("time/sample", "time/reward", "time/old_logp", "time/update")})
    _finish(
        Path(a.out),
        dict(
            side="gspo",
            cycle_s=cycles,
            completion_len_mean=lengths,
            completion_tokens=tokens,
            eos_ids=list(trainer.eos_ids),
            chat_template=not isinstance(rows[0]["prompt"], str),
            parts=parts,
            threads=torch.get_num_threads(),
            n_params=benchlib.n_params(model),
            rss_before_import_mib=rss_import0,
            rss_after_import_mib=rss_import,
            rss_after_load_mib=rss_loaded,
        ),
    )


def worker_trl(a) -> None:
    import torch

    benchlib.set_threads(a.threads)
    rss_import0 = benchlib.current_rss_mib()
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    rss_import = benchlib.current_rss_mib()
    torch.manual_seed(0)
    model, tok = benchlib.load(a.model)
    rss_loaded = benchlib.current_rss_mib()
    L = a.completion_len
    total_cycles = a.warmup + a.measure

    class Timer(TrainerCallback):
        def __init__(self):
            self.begin, self.ends, self.threads = None, {}, None

        def on_train_begin(self, args, state, control, **kw):
            self.begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.ends[state.global_step] = time.perf_counter()
            self.threads = torch.get_num_threads()

    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(
            output_dir=tmp,
            per_device_train_batch_size=PER_STEP,
            num_generations=GROUP,
            steps_per_generation=OPT_STEPS_PER_CYCLE,
            gradient_accumulation_steps=1,
            num_iterations=1,
            max_completion_length=L,
            generation_kwargs={"min_new_tokens": L} if a.setting == "forced" else None,
            temperature=1.0,
            importance_sampling_level="sequence",
            loss_type="grpo",
            beta=0.0,
            epsilon=3e-4,
            epsilon_high=4e-4,
            gradient_checkpointing=False,
            bf16=False,
            fp16=False,
            use_cpu=True,
            learning_rate=a.lr,
            lr_scheduler_type="constant",
            max_grad_norm=1.0,
            weight_decay=0.0,
            max_steps=OPT_STEPS_PER_CYCLE * total_cycles,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=0,
        )
        prompts = setting_prompts(tok, a.setting)
        ds = Dataset.from_list([{"prompt": p} for p in prompts])
        trainer = GRPOTrainer(
            model=model, reward_funcs=[benchlib.vowel_reward], args=args, train_dataset=ds, processing_class=tok
        )
        timer = Timer()
        trainer.add_callback(timer)
        trainer.train()
        history = trainer.state.log_history
        eos_ids = list(trainer.eos_token_ids)
    ends = [timer.begin] + [timer.ends[OPT_STEPS_PER_CYCLE * (c + 1)] for c in range(total_cycles)]
    cycles = [ends[c + 1] - ends[c] for c in range(a.warmup, total_cycles)]
    lengths = trl_cycle_lengths(history, range(a.warmup, total_cycles))
    _finish(
        Path(a.out),
        dict(
            side="trl",
            cycle_s=cycles,
            completion_len_mean=lengths,
            completion_tokens=[round(x * ROLLOUT) for x in lengths],
            eos_ids=eos_ids,
            chat_template=not isinstance(prompts[0], str),
            log_keys=sorted({k for h in history for k in h}),
            threads=timer.threads,
            n_params=benchlib.n_params(model),
            rss_before_import_mib=rss_import0,
            rss_after_import_mib=rss_import,
            rss_after_load_mib=rss_loaded,
            config=dict(
                steps_per_generation=args.steps_per_generation,
                generation_batch_size=args.generation_batch_size,
                importance_sampling_level=args.importance_sampling_level,
                loss_type=args.loss_type,
                beta=args.beta,
                epsilon=args.epsilon,
                epsilon_high=args.epsilon_high,
                gradient_checkpointing=args.gradient_checkpointing,
                bf16=args.bf16,
                optim=str(args.optim),
            ),
        ),
    )


# ============================================================================ driver
def cycle_rates(run: dict) -> list[float]:
    """Completion tokens/s of each measured cycle of one run: the tokens generated / the cycle's time."""
    return [n / t for n, t in zip(run["completion_tokens"], run["cycle_s"])]


def summarize_realistic(runs: list[dict]) -> dict:
    """Tokens/s from the tokens each side generated: median per-cycle rate; mean length over all cycles."""
    tokens = [n for r in runs for n in r["completion_tokens"]]
    return dict(
        tokens_per_s=benchlib.median([x for r in runs for x in cycle_rates(r)]),
        tokens_per_s_per_rep=[benchlib.median(cycle_rates(r)) for r in runs],
        completion_len_mean=sum(tokens) / (ROLLOUT * len(tokens)),
        completion_len_mean_per_rep=[sum(r["completion_tokens"]) / (ROLLOUT * len(r["cycle_s"])) for r in runs],
        completion_tokens_per_cycle=tokens,
    )


def summarize(runs: list[dict], L: int, setting: str = "forced") -> dict:
    cycles = [c for r in runs for c in r["cycle_s"]]
    s_step = benchlib.median(cycles) / OPT_STEPS_PER_CYCLE
    out = dict(
        s_per_step=s_step,
        tokens_per_s=PER_STEP * L / s_step,
        peak_rss_mib=max(r["peak_rss_mib_wait4"] for r in runs),
        rss_after_load_mib=benchlib.median([r["rss_after_load_mib"] for r in runs]),
        s_per_step_per_rep=[benchlib.median(r["cycle_s"]) / OPT_STEPS_PER_CYCLE for r in runs],
        peak_rss_per_rep=[r["peak_rss_mib_wait4"] for r in runs],
        completion_len_mean=benchlib.median([x for r in runs for x in r["completion_len_mean"]]),
        n_cycles=len(cycles),
    )
    if setting == "realistic":
        out.update(summarize_realistic(runs))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(benchlib.MODELS))
    p.add_argument("--threads", default="1,2")
    p.add_argument("--reps", type=int, default=2, help="repetitions per side (alternating gspo, TRL, ...)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up cycles (1 cycle = 1 rollout + 4 optimizer steps)")
    p.add_argument("--measure", type=int, default=3, help="measured cycles per repetition")
    p.add_argument(
        "--measure-big",
        type=int,
        default=1,
        help="measured cycles per repetition for the slow models (tiny-151936, smollm2)",
    )
    p.add_argument(
        "--setting",
        choices=sorted(SETTINGS),
        default="forced",
        help="forced: every completion L tokens (EOS masked); realistic: EOS allowed, lengths vary up to L",
    )
    p.add_argument("--completion-len", type=int, help="L (default: 16 forced, 128 realistic)")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--sides", default="gspo,trl")
    p.add_argument(
        "--gspo-config",
        default="",
        help="GSPOConfig overrides for the gspo side, e.g. 'old_logp_source=recompute' (library options)",
    )
    p.add_argument(
        "--out",
        help="file name under benchmarks/results/ (an absolute path is used as is; default: "
        "bench_vs_trl.json forced, bench_vs_trl_realistic.json realistic)",
    )
    p.add_argument("--worker", choices=["gspo", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--threads-one", type=int, dest="threads_one", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.completion_len = a.completion_len or SETTINGS[a.setting]["completion_len"]
    a.out = a.out or SETTINGS[a.setting]["out"]

    if a.worker:
        a.threads, a.out = a.threads_one, a.worker_out
        (worker_gspo if a.worker == "gspo" else worker_trl)(a)
        return 0

    models = [m for m in a.models.split(",") if m]
    threads = [int(t) for t in a.threads.split(",")]
    sides = a.sides.split(",")
    benchlib.prepare_models_subprocess(models)  # once, outside any timing, in a child (driver stays small)
    results = dict(
        machine=benchlib.machine_info(),
        versions=benchlib.versions_subprocess(),
        driver_peak_rss_mib=benchlib.peak_rss_mib(),
        settings=dict(
            setting=a.setting,
            completion_len=a.completion_len,
            group_size=GROUP,
            completions_per_opt_step=PER_STEP,
            opt_steps_per_rollout=OPT_STEPS_PER_CYCLE,
            warmup_cycles=a.warmup,
            measured_cycles=a.measure,
            measured_cycles_big_models=a.measure_big,
            reps=a.reps,
            lr=a.lr,
            dtype="float32",
            gspo_config=a.gspo_config or None,
        ),
        command=" ".join([Path(sys.executable).name, *sys.argv]),
        started=time.strftime("%Y-%m-%d %H:%M:%S"),
        rows=[],
    )
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for m in models:
            for n in threads:
                runs = {s: [] for s in sides}
                for rep in range(a.reps):
                    for side in sides:
                        out = Path(tmp) / f"{m}-{n}-{rep}-{side}.json"
                        measure = a.measure_big if m in BIG else a.measure
                        cmd = [
                            sys.executable,
                            __file__,
                            "--worker",
                            side,
                            "--model",
                            m,
                            "--threads-one",
                            str(n),
                            "--worker-out",
                            str(out),
                            "--warmup",
                            str(a.warmup),
                            "--measure",
                            str(measure),
                            "--completion-len",
                            str(a.completion_len),
                            "--setting",
                            a.setting,
                            "--lr",
                            str(a.lr),
                        ]
                        if a.gspo_config:
                            cmd += ["--gspo-config", a.gspo_config]
                        t = time.perf_counter()
                        data, rss, _ = benchlib.run_child_wait4(cmd, benchlib.thread_env(n), out)
                        data["peak_rss_mib_wait4"] = rss
                        data["wall_s"] = time.perf_counter() - t
                        runs[side].append(data)
                        print(rep_line(f"[{m} t={n} rep={rep}] {side:4s}", data, rss, a.setting), flush=True)
                row = dict(model=m, threads=n, n_params=runs[sides[0]][0]["n_params"], runs=runs)
                for side in sides:
                    row[side] = summarize(runs[side], a.completion_len, a.setting)
                if "gspo" in row and "trl" in row:
                    g, t = row["gspo"], row["trl"]
                    row["ratio"] = dict(
                        tokens_per_s=g["tokens_per_s"] / t["tokens_per_s"],
                        s_per_step=g["s_per_step"] / t["s_per_step"],
                        peak_rss=g["peak_rss_mib"] / t["peak_rss_mib"],
                    )
                results["rows"].append(row)
                benchlib.write_json(a.out, results)
    results["total_wall_s"] = time.perf_counter() - t_all
    path = benchlib.write_json(a.out, results)
    print(table(results))
    print(f"wrote {path}")
    return 0


def rep_line(head: str, data: dict, rss: float, setting: str) -> str:
    """One console line per worker run; the realistic setting adds the tokens generated and tokens/s."""
    line = (
        f"{head}: s/step {benchlib.median(data['cycle_s']) / 4:.4f}  "
        f"peak RSS {rss:.0f} MiB  len {benchlib.median(data['completion_len_mean']):.1f}  "
        f"threads {data['threads']}  ({data['wall_s']:.0f}s)"
    )
    if setting == "realistic":
        line += f"  tokens/cycle {data['completion_tokens']}  tok/s {benchlib.median(cycle_rates(data)):,.1f}"
    return line


def table(results: dict) -> str:
    realistic = results["settings"].get("setting") == "realistic"
    lens = " gspo mean len | TRL mean len |" if realistic else ""
    lines = [
        f"| model (params) | threads | gspo s/step | TRL s/step |{lens} gspo tok/s | TRL tok/s | tok/s ratio | gspo peak RSS | TRL peak RSS | RSS ratio |",
        "|---|---|---|---|" + "---|---|" * realistic + "---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        g, t, q = r.get("gspo"), r.get("trl"), r.get("ratio")
        if not (g and t and q):
            continue
        lens = f" {g['completion_len_mean']:.1f} | {t['completion_len_mean']:.1f} |" if realistic else ""
        lines.append(
            f"| {r['model']} ({r['n_params'] / 1e6:.2f}M) | {r['threads']} | {g['s_per_step']:.4f} | {t['s_per_step']:.4f} |{lens} "
            f"{g['tokens_per_s']:,.0f} | {t['tokens_per_s']:,.0f} | **{q['tokens_per_s']:.2f}x** | "
            f"{g['peak_rss_mib']:,.0f} MiB | {t['peak_rss_mib']:,.0f} MiB | **{q['peak_rss']:.2f}x** |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
