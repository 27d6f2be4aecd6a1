"""Shared helpers of the benchmark scripts: models, prompts, reward, threads, memory, machine info.

Models (``--model`` names used by every script):

- ``tiny-259``, ``tiny-32768``, ``tiny-151936``: random Qwen2 models (hidden 128, 2 layers, 4 heads,
  2 KV heads, MLP 352, tied embeddings: 0.40M / 4.56M / 19.8M parameters) with a byte-level tokenizer
  built with ``tokenizers`` (256 byte symbols + ``<pad>`` ``<eos>`` ``<bos>`` = 259 ids; the larger
  vocabularies are padded with unused ``<unused_N>`` tokens, which no text ever encodes to but a random
  model can sample). Built once, seeded, saved under ``$GSPO_BENCH_CACHE`` (default
  ``~/.cache/gspo-bench``), so every process loads identical weights from disk.
- ``smollm2``: SmolLM2-135M-Instruct through ``gspo.models.loading.load_model_and_tokenizer``.

Both sides of a comparison load with ``load_model_and_tokenizer(path)`` (plain ``from_pretrained``
plus left padding and a pad token), so they get the same weights, tokenizer and attention kernel.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

TINY_VOCABS = (259, 32768, 151936)
MODELS = tuple(f"tiny-{v}" for v in TINY_VOCABS) + ("smollm2",)
TINY = dict(hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
SPECIALS = ("<pad>", "<eos>", "<bos>")


def cache_dir() -> Path:
    return Path(os.environ.get("GSPO_BENCH_CACHE") or "~/.cache/gspo-bench").expanduser()


def set_threads(n: int) -> None:
    """Pin intra-op threads (call before importing torch in a fresh process, and again after)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass


#: OpenMP threads sleep instead of spinning at barriers. On a shared, oversubscribed 2-core machine a
#: spinning thread steals the core its busy peer needs (a 2-thread tiny-model step measured 3x slower
#: than 1 thread with the default policy, 1.3x with PASSIVE). Applied to both sides of every comparison.
OMP_WAIT_POLICY = os.environ.get("BENCH_OMP_WAIT_POLICY", "PASSIVE")


def thread_env(n: int) -> dict:
    env = dict(os.environ)
    if OMP_WAIT_POLICY:
        env.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(n)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    return env


# ----------------------------------------------------------------------------------------- models
def byte_level_tokenizer(vocab_size: int):
    """A byte-level ``PreTrainedTokenizerFast``: ids 0-2 specials, 3-258 bytes, then unused tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 259:
        raise ValueError("vocab_size must be >= 259 (256 bytes + 3 special tokens)")
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for ch in sorted(ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    for i in range(vocab_size - len(vocab)):
        vocab[f"<unused_{i}>"] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIALS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", padding_side="left"
    )


def tiny_model_path(vocab_size: int) -> Path:
    """Build (once) and return the folder of the tiny random Qwen2 model with this vocabulary."""
    path = cache_dir() / "models" / f"qwen2-h128-l2-v{vocab_size}"
    if (path / "config.json").is_file() and (path / "tokenizer.json").is_file():
        return path
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = byte_level_tokenizer(vocab_size)
    config = Qwen2Config(
        vocab_size=vocab_size,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        **TINY,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config.eos_token_id = 1
    model.generation_config.pad_token_id = 0
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if not path.exists():
        tmp.rename(path)
    return path


def model_source(name: str) -> str:
    """The folder to load for a benchmark model name (prepares it when needed)."""
    if name.startswith("tiny-"):
        return str(tiny_model_path(int(name.split("-", 1)[1])))
    if name == "smollm2":
        from gspo.models.loading import resolve_model_path

        return resolve_model_path("smollm2")
    return name


def load(name_or_path: str):
    """(model, tokenizer) in float32 on CPU, train mode off, via gspo's loader (plain from_pretrained)."""
    from gspo.models.loading import load_model_and_tokenizer

    src = model_source(name_or_path) if not Path(name_or_path).is_dir() else name_or_path
    return load_model_and_tokenizer(src, dtype="float32", device="cpu")


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------- data
def parse_gspo_config(text: str) -> dict:
    """``"old_logp_source=recompute,minibatch_grouping=group"`` -> GSPOConfig overrides (library options)."""
    out = {}
    for item in filter(None, (x.strip() for x in (text or "").split(","))):
        key, _, value = item.partition("=")
        out[key.strip()] = {"true": True, "false": False}.get(value.strip().lower(), value.strip())
    return out


def prompts(n: int = 64) -> list[str]:
    """Deterministic plain-text prompts of slightly different lengths (so left padding occurs)."""
    out = []
    for i in range(n):
        a, b = (37 * i + 11) % 97, (53 * i + 7) % 89
        out.append(f"Question {i}: what is {a} plus {b}? Think step by step." + (" Be brief." if i % 3 == 0 else ""))
    return out


def chat_prompts(tokenizer, n: int = 64) -> list:
    """``prompts(n)`` as one-message chats when the tokenizer has a chat template (gspo's ``chat: auto``),
    else plain text. gspo renders them with ``apply_chat_template(add_generation_prompt=True)``, TRL
    (conversational dataset) the same way: the same prompt ids on both sides."""
    if not getattr(tokenizer, "chat_template", None):
        return prompts(n)
    return [[{"role": "user", "content": p}] for p in prompts(n)]


def completion_text(c) -> str:
    """A completion's text: a string (gspo; TRL with plain prompts) or TRL's ``[{"role", "content"}]``."""
    if isinstance(c, str):
        return c
    if isinstance(c, list) and c and isinstance(c[-1], dict):
        return str(c[-1].get("content", ""))
    return str(c)


def vowel_reward(prompts, completions, **kwargs):
    """A cheap reward with spread (so advantages are non-zero): share of vowels in the completion."""
    out = []
    for c in completions:
        text = completion_text(c)
        out.append(sum(ch in "aeiouAEIOU" for ch in text) / (1 + len(text)))
    return out


# ----------------------------------------------------------------------------------------- memory / stats
def peak_rss_mib() -> float:
    """This process's peak resident set size (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def median(xs):
    return float(statistics.median(xs)) if xs else float("nan")


def run_child_wait4(cmd: list[str], env: dict, out_path: Path) -> tuple[dict, float, str]:
    """Run a worker writing its JSON to ``out_path``; return (json, peak RSS MiB from os.wait4, stderr tail).

    Linux carries the parent's RSS high-water mark into a forked/exec'd child's ``ru_maxrss``, so the
    driver that calls this must stay small (no torch/transformers imported): ``assert_small_driver``.
    """
    assert_small_driver()
    with open(out_path.with_suffix(".stderr"), "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    tail = out_path.with_suffix(".stderr").read_text()[-4000:]
    if proc.returncode != 0 or not out_path.is_file():
        raise RuntimeError(f"worker failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    return json.loads(out_path.read_text()), usage.ru_maxrss / 1024.0, tail


def assert_small_driver(limit_mib: float = 150.0) -> None:
    """Fail loudly if this (driver) process is big enough to distort its children's ru_maxrss."""
    if peak_rss_mib() > limit_mib:
        raise RuntimeError(
            f"driver peak RSS {peak_rss_mib():.0f} MiB > {limit_mib} MiB: children's ru_maxrss "
            "would inherit it; keep torch/transformers out of the driver process"
        )


# ----------------------------------------------------------------------------------------- machine
def machine_info() -> dict:
    info = {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        names = [l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name")]
        flags = next((l.split(":", 1)[1].split() for l in cpuinfo.splitlines() if l.startswith("flags")), [])
        info["cpu_model"] = names[0] if names else "?"
        info["cpu_flags_simd"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    try:
        info["nproc_cmd"] = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip())
    except Exception:
        pass
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["mem_total_gib"] = round(int(mem) / 2**20, 1)
    except OSError:
        pass
    info["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY") or OMP_WAIT_POLICY or "default"
    try:
        info["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def versions_subprocess(python: str = sys.executable) -> dict:
    """``versions()`` computed in a child process, so the calling driver stays small (see run_child_wait4)."""
    code = (
        f"import sys, json; sys.path.insert(0, {str(HERE)!r}); import benchlib; print(json.dumps(benchlib.versions()))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=thread_env(1))
    return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"error": out.stderr[-500:]}


def prepare_models_subprocess(names, python: str = sys.executable) -> None:
    """Build / prepare the benchmark models in a child process (keeps torch out of the driver)."""
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import benchlib\n"
        f"for m in {list(names)!r}: print(m, benchlib.model_source(m))"
    )
    subprocess.run([python, "-c", code], check=True, env=thread_env(2))


def versions() -> dict:
    out = {}
    for mod in ("torch", "transformers", "trl", "accelerate", "tokenizers", "gspo"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", "?")
        except Exception:
            out[mod] = None
    return out


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return path
