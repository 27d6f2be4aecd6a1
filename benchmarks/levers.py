"""One lever at a time: the scoring forward + backward of one micro-batch, each path of the library.

    python benchmarks/levers.py --model smollm2 --threads 1 --reps 5

Times ``completion_logprobs`` forward + backward (the update's share of a training step, without the
optimizer) on one micro-batch of 8 rows from 4 prompts (2 rows each, as in a shuffled minibatch of
a 4 × 8 rollout), alternating the paths within one process so machine load hits them alike:

- ``padded``: one full forward of every row, padded (the straightforward computation);
- ``kv-shared``: each distinct prompt once, then the completions on its KV cache (two backbone calls);
- ``packed``: every real token in one packed row, each prompt once (one backbone call).

Two settings: ``forced`` (every completion 16 tokens, as in ``bench_vs_trl.py``) and ``realistic``
(lengths drawn between 8 and 128, so rows end early and padding counts). The median time per path
and the speed-up over ``padded`` go to ``results/levers.json`` (and the README via ``report.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

PATHS = {
    "padded": dict(share_prompts=False, pack=False),
    "kv-shared": dict(share_prompts=True, pack=False),
    "packed": dict(share_prompts=True, pack=True),
}


def micro_batch(tok, setting: str, seed: int = 0):
    """8 rows of 4 left-padded prompts (2 rows each, interleaved), right-padded completions."""
    import torch

    g = torch.Generator().manual_seed(seed)
    texts = benchlib.prompts(4)
    enc = tok(texts, return_tensors="pt", padding=True)
    order = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    p_ids, p_mask = enc["input_ids"][order], enc["attention_mask"][order]
    T = 16 if setting == "forced" else 128
    lengths = torch.full((8,), T) if setting == "forced" else torch.randint(8, T + 1, (8,), generator=g)
    c_ids = torch.randint(100, len(tok) - 1, (8, int(lengths.max())), generator=g)
    c_mask = (torch.arange(c_ids.shape[1])[None, :] < lengths[:, None]).long()
    return p_ids, p_mask, c_ids, c_mask


def time_path(model, batch, options: dict) -> float:
    from gspo.sampling.scoring import completion_logprobs

    p_ids, p_mask, c_ids, c_mask = batch
    start = time.perf_counter()
    logp, _ = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask, **options)
    (logp * c_mask).sum().backward()
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per path (after one warm-up)")
    p.add_argument("--out", default="levers.json")
    a = p.parse_args(argv)
    benchlib.set_threads(a.threads)
    import torch

    torch.manual_seed(0)
    model, tok = benchlib.load(a.model)
    model.train()
    results = {}
    for setting in ("forced", "realistic"):
        batch = micro_batch(tok, setting)
        times: dict[str, list[float]] = {name: [] for name in PATHS}
        for rep in range(a.reps + 1):
            for name, options in PATHS.items():
                seconds = time_path(model, batch, options)
                if rep:
                    times[name].append(seconds)
        base = benchlib.median(times["padded"])
        results[setting] = {
            "prompt_tokens": int(batch[1].sum()),
            "completion_tokens": int(batch[3].sum()),
            "padded_tokens": int(batch[1].numel() + batch[3].numel()),
            "paths": {
                name: {"median_s": benchlib.median(ts), "speedup": base / benchlib.median(ts), "all_s": ts}
                for name, ts in times.items()
            },
        }
        print(setting, {k: round(v["median_s"], 3) for k, v in results[setting]["paths"].items()}, flush=True)
    payload = dict(
        model=a.model, threads=a.threads, reps=a.reps, machine=benchlib.machine_info(), versions=benchlib.versions()
    )
    payload["settings"] = results
    print(benchlib.write_json(a.out, payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
