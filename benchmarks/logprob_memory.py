"""Peak memory of completion log-probs: gspo's chunked output layer vs the plain full-logits way.

Each method runs in its own subprocess (so peak RSS is its own), on the same random final hidden
states and output-layer weight, forward + backward:

- ``full``: what TRL-style code does: ``log_softmax(hidden @ W.T)`` over *all* positions (prompt and
  completion), ``[B, P+T, V]`` float32 logits kept for backward, then gather the completion tokens;
- ``completion``: the same but only over completion positions (``logits_to_keep``-style);
- ``chunked``: ``gspo.losses.chunked_token_logprobs`` over completion positions (default chunking).

Reported: peak RSS above the process's baseline after the inputs exist (MiB), and seconds.

    python benchmarks/logprob_memory.py --vocab 151936 --hidden 576 --batch 8 --prompt 256 --completion 256
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_one(method: str, vocab: int, hidden: int, batch: int, prompt: int, completion: int, threads: int) -> dict:
    import torch

    from gspo.losses import chunked_token_logprobs

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    h_all = (torch.randn(batch, prompt + completion, hidden, generator=g) * 0.1).requires_grad_(True)
    weight = (torch.randn(vocab, hidden, generator=g) * 0.02).requires_grad_(True)
    targets = torch.randint(0, vocab, (batch, completion), generator=g)
    # warm the allocator and the kernels on a tiny problem, then take the baseline
    chunked_token_logprobs(h_all[:1, :2], weight, targets[:1, :2])[0].sum().backward()
    h_all.grad = weight.grad = None
    baseline = _rss_mib()
    start = time.perf_counter()
    if method == "full":
        logits = h_all @ weight.t()
        logp_all = torch.log_softmax(logits.float(), dim=-1)
        logp = logp_all[:, prompt - 1 : -1].gather(-1, targets[..., None]).squeeze(-1)
    elif method == "completion":
        logits = h_all[:, prompt - 1 : -1] @ weight.t()
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)
    elif method == "chunked":
        logp, _ = chunked_token_logprobs(h_all[:, prompt - 1 : -1], weight, targets)
    else:
        raise ValueError(method)
    logp.sum().backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "method": method,
        "peak_extra_mib": round(peak - baseline, 1),
        "seconds": round(seconds, 3),
        "checksum": float(logp.detach().sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--completion", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    shape = dict(vocab=args.vocab, hidden=args.hidden, batch=args.batch, prompt=args.prompt, completion=args.completion)
    if args.one:
        print(json.dumps(run_one(args.one, threads=args.threads, **shape)))
        return
    results = []
    for method in ("full", "completion", "chunked"):
        cmd = [sys.executable, __file__, "--one", method, "--threads", str(args.threads)]
        cmd += [f"--{k}={v}" for k, v in shape.items()]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    full = results[0]["peak_extra_mib"]
    print(f"shape: {shape}, threads {args.threads}")
    print("| method | peak extra RSS (MiB) | vs full | seconds (fwd+bwd) |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['method']} | {r['peak_extra_mib']:.0f} | {r['peak_extra_mib'] / full:.3f} | {r['seconds']:.2f} |")
    sums = {r["method"]: r["checksum"] for r in results}
    assert abs(sums["chunked"] - sums["full"]) < 1e-3 * abs(sums["full"]), sums
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"shape": shape, "threads": args.threads, "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
