"""The embedded model: a tiny character-level Llama that adds two-digit numbers but forgets to carry.

``gspo train`` with no arguments needs a model that runs offline on a laptop CPU and that RL can
visibly improve in minutes. This module builds one and ships it in ``gspo/assets/adder/``
(``embedded_model_path()``): a ``LlamaForCausalLM`` of about 0.3M parameters with a character-level
tokenizer (digits, ``+ - * =``, space and ``<pad> <bos> <eos> <unk>``; the tokenizer prepends
``<bos>`` and pads on the left; its chat template just concatenates the messages' contents, so
``[{"role": "user", "content": "47+38="}]`` tokenizes exactly like ``"47+38="``).

It is pretrained *with a misconception*. Its corpus comes from a noisy teacher for the ``addition``
task (``gspo.tasks.arithmetic``) that, on pairs needing a carry from the units (``47+38``), writes
the correct sum (``85``) only with probability ``teacher_correct_prob`` (0.3) and otherwise the
"forgot the carry" answer ``sum - 10`` (``75``); pairs without a carry are always answered
correctly. Pretraining minimises the exact expected loss over that corpus: each carry pair
contributes both answers, weighted by the teacher's probabilities. Only the train split of the task
is used; its held-out test pairs are never seen. The result answers carry problems wrong when
decoding greedily but right about 30% of the time when sampling at temperature 1 -- exactly the
situation in which RL with an exact-match reward (GSPO) can flip the mode and raise greedy accuracy.

Regenerate the shipped files (deterministic on CPU for a given seed and torch version; a few minutes
on one thread) with::

    python -m gspo.models.embedded --output src/gspo/assets/adder
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Special tokens first (ids 0..3), then the characters.
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
CHARACTERS = tuple("0123456789+-*= ")
#: A minimal chat template: the messages' contents after <bos>, so chat prompts tokenize like plain ones.
CHAT_TEMPLATE = "{{ bos_token }}{% for message in messages %}{{ message['content'] }}{% endfor %}"
#: Name of the file, next to the weights, that records how the model was made.
PRETRAIN_INFO_FILE = "pretrain_info.json"


def embedded_model_path() -> Path:
    """The folder of the shipped embedded model (``config.json``, weights, tokenizer files)."""
    return Path(__file__).resolve().parent.parent / "assets" / "adder"


@dataclass
class PretrainConfig:
    """Architecture and optimisation settings of the embedded model's pretraining."""

    seed: int = 0
    steps: int = 1000
    batch_size: int = 128  # operand pairs per step
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.0
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    teacher_correct_prob: float = 0.3


def make_world_readable(folder: Path) -> None:
    """``chmod`` a freshly written folder to 755 and its files to 644 (``mkdtemp`` creates 700)."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def build_tokenizer():
    """The character-level tokenizer as a ``PreTrainedTokenizerFast`` (saves/loads with HF APIs)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    bos_id = vocab["<bos>"]
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos_id)]
    )
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
        model_max_length=64,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(config: PretrainConfig, tokenizer) -> Any:
    """A freshly initialised ``LlamaForCausalLM`` for the character vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(model_config)


def teacher_answers(a: int, b: int, teacher_correct_prob: float) -> list[tuple[str, float]]:
    """The noisy teacher's answers to ``a+b=`` with their probabilities."""
    from gspo.tasks.arithmetic import correct_answer, needs_carry, no_carry_answer

    if not needs_carry(a, b):
        return [(correct_answer(a, b), 1.0)]
    return [(correct_answer(a, b), teacher_correct_prob), (no_carry_answer(a, b), 1.0 - teacher_correct_prob)]


def _encode_corpus(tokenizer, pairs: Sequence[tuple[int, int]], teacher_correct_prob: float):
    """Tensors ``ids, labels [P, 2, L]`` and ``weights [P, 2]``: two weighted targets per pair.

    Labels are -100 on the prompt and padding, so only the answer and its ``<eos>`` are learned.
    Pairs with one answer get a second, zero-weight copy to keep the tensors rectangular.
    """
    import torch

    from gspo.tasks.arithmetic import format_prompt

    targets = []  # (pair index, answer, weight), two per pair
    for index, (a, b) in enumerate(pairs):
        answers = teacher_answers(a, b, teacher_correct_prob)
        targets += [(index, answer, weight) for answer, weight in answers + [(answers[0][0], 0.0)] * (2 - len(answers))]
    prompt_ids = tokenizer([format_prompt(a, b) for a, b in pairs])["input_ids"]
    answer_ids = tokenizer([answer for _, answer, _ in targets], add_special_tokens=False)["input_ids"]
    rows: list[tuple[list[int], list[int]]] = []
    for (index, _, _), answer in zip(targets, answer_ids):
        completion = list(answer) + [tokenizer.eos_token_id]
        prompt = list(prompt_ids[index])
        rows.append((prompt + completion, [-100] * len(prompt) + completion))
    weights = [weight for _, _, weight in targets]
    length = max(len(row_ids) for row_ids, _ in rows)
    ids = torch.tensor([r + [tokenizer.pad_token_id] * (length - len(r)) for r, _ in rows], dtype=torch.long)
    labels = torch.tensor([r + [-100] * (length - len(r)) for _, r in rows], dtype=torch.long)
    pairs_count = len(pairs)
    shape = (pairs_count, 2, length)
    return ids.view(shape), labels.view(shape), torch.tensor(weights).view(pairs_count, 2)


def _weighted_nll(model, ids, labels, weights):
    """Sum over sequences of ``weight * NLL(answer tokens)``, divided by the number of pairs."""
    import torch.nn.functional as F

    logits = model(input_ids=ids, attention_mask=(ids != model.config.pad_token_id).long()).logits
    token_nll = F.cross_entropy(
        logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none"
    )  # [N, L-1]
    return (token_nll.sum(dim=1) * weights).sum() / (weights.sum().clamp(min=1.0))


def pretrain(config: PretrainConfig, *, log_every: int = 100, verbose: bool = True):
    """Pretrain the embedded model in memory; returns ``(model, tokenizer, info)``."""
    import torch

    from gspo.tasks.arithmetic import split_pairs

    torch.manual_seed(config.seed)
    tokenizer = build_tokenizer()
    model = build_model(config, tokenizer)
    train_pairs = split_pairs()["train"]
    ids, labels, weights = _encode_corpus(tokenizer, train_pairs, config.teacher_correct_prob)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.98), weight_decay=config.weight_decay)

    def lr_factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(train_pairs), generator=generator)
    cursor, start, loss_avg = 0, time.time(), None
    model.train()
    for step in range(config.steps):
        if cursor + config.batch_size > len(order):
            order, cursor = torch.randperm(len(train_pairs), generator=generator), 0
        batch = order[cursor : cursor + config.batch_size]
        cursor += config.batch_size
        loss = _weighted_nll(model, ids[batch].flatten(0, 1), labels[batch].flatten(0, 1), weights[batch].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        loss_avg = loss.item() if loss_avg is None else 0.95 * loss_avg + 0.05 * loss.item()
        if verbose and (step + 1) % log_every == 0:
            print(
                f"[pretrain] step {step + 1}/{config.steps} loss {loss_avg:.4f} ({time.time() - start:.0f}s)",
                flush=True,
            )
    model.eval()
    info = {
        "config": asdict(config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_pairs": len(train_pairs),
        "final_loss": loss_avg,
        "seconds": round(time.time() - start, 1),
        "torch": torch.__version__,
    }
    return model, tokenizer, info


def sample_answers(
    model, tokenizer, prompts: Sequence[str], *, greedy: bool, samples: int = 1, max_new_tokens: int = 4, seed: int = 0
) -> list[list[str]]:
    """Decode ``samples`` completions per prompt (greedy, or sampling at temperature 1).

    A small self-contained loop for probing the embedded model (all addition prompts have the same
    length, so no padding is needed); the trainer has its own sampler.
    """
    import torch

    from gspo.models.introspect import cache_argument, returned_cache

    generator = torch.Generator().manual_seed(seed)
    encoded = tokenizer(list(prompts), padding=True, return_tensors="pt")
    ids = encoded["input_ids"].repeat_interleave(samples, dim=0)
    mask = encoded["attention_mask"].repeat_interleave(samples, dim=0)
    prompt_len, eos = ids.shape[1], tokenizer.eos_token_id
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    step_input, past = ids, None
    cache_arg = cache_argument(model) or "past_key_values"
    with torch.no_grad():
        for _ in range(max_new_tokens):
            out = model(input_ids=step_input, attention_mask=mask, use_cache=True, **{cache_arg: past})
            logits, past = out.logits[:, -1].float(), returned_cache(out, cache_arg)
            if greedy:
                nxt = logits.argmax(dim=-1)
            else:
                nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)
            nxt = torch.where(done, torch.full_like(nxt, tokenizer.pad_token_id), nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
            step_input = nxt[:, None]
            done |= nxt == eos
            if bool(done.all()):
                break
    texts = tokenizer.batch_decode(ids[:, prompt_len:], skip_special_tokens=True)
    return [texts[i * samples : (i + 1) * samples] for i in range(len(prompts))]


def probe_misconception(
    model, tokenizer, pairs: Sequence[tuple[int, int]], *, samples: int = 16, seed: int = 0
) -> dict[str, float]:
    """Greedy and sampled (T=1) accuracy on ``pairs``, and how often answers are ``sum - 10``.

    Keys: ``greedy_accuracy``, ``greedy_no_carry`` (fraction of greedy answers that forgot the
    carry), ``sampled_accuracy`` and ``sampled_no_carry`` (over ``samples`` draws per pair).
    """
    from gspo.tasks.arithmetic import correct_answer, format_prompt, no_carry_answer

    prompts = [format_prompt(a, b) for a, b in pairs]
    greedy = sample_answers(model, tokenizer, prompts, greedy=True)
    sampled = sample_answers(model, tokenizer, prompts, greedy=False, samples=samples, seed=seed)
    n, total = len(pairs), len(pairs) * samples
    right = [correct_answer(a, b) for a, b in pairs]
    forgot = [no_carry_answer(a, b) for a, b in pairs]
    return {
        "pairs": n,
        "greedy_accuracy": sum(g[0].strip() == r for g, r in zip(greedy, right)) / n,
        "greedy_no_carry": sum(g[0].strip() == f != r for g, f, r in zip(greedy, forgot, right)) / n,
        "sampled_accuracy": sum(s.strip() == r for ss, r in zip(sampled, right) for s in ss) / total,
        "sampled_no_carry": sum(s.strip() == f != r for ss, f, r in zip(sampled, forgot, right) for s in ss) / total,
    }


def pretrain_embedded_model(
    output_dir: str | os.PathLike,
    seed: int = 0,
    steps: int = PretrainConfig.steps,
    *,
    config: PretrainConfig | None = None,
    evaluate: bool = True,
    log_every: int = 100,
    verbose: bool = True,
) -> Path:
    """Pretrain the embedded model and save it (weights, tokenizer, ``pretrain_info.json``) to ``output_dir``.

    ``config`` overrides every setting (then ``seed`` and ``steps`` are ignored). The folder is
    written to a temporary sibling first and renamed into place, replacing an existing model folder
    (one with a ``config.json``; any other non-empty path raises ``FileExistsError``). With
    ``evaluate`` the info file also records the probe on the held-out carry pairs.
    """
    import torch

    from gspo.tasks.arithmetic import AdditionTask

    config = config or PretrainConfig(seed=seed, steps=steps)
    model, tokenizer, info = pretrain(config, log_every=log_every, verbose=verbose)
    if evaluate:
        carry_pairs = AdditionTask(test_carry="only").pairs("test")
        no_carry_pairs = AdditionTask(test_carry="none").pairs("test")
        with torch.no_grad():
            info["heldout_carry_probe"] = probe_misconception(model, tokenizer, carry_pairs)
            info["heldout_no_carry_probe"] = probe_misconception(model, tokenizer, no_carry_pairs)
        if verbose:
            print(f"[pretrain] held-out carry pairs: {info['heldout_carry_probe']}", flush=True)
            print(f"[pretrain] held-out no-carry pairs: {info['heldout_no_carry_probe']}", flush=True)
    output = Path(output_dir).resolve()
    if output.exists() and not (output.is_dir() and (not any(output.iterdir()) or (output / "config.json").is_file())):
        raise FileExistsError(f"{output} exists and is not a model folder; refusing to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / PRETRAIN_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        make_world_readable(tmp)
        if output.exists():
            shutil.rmtree(output)
        tmp.rename(output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pretrain the embedded carry-forgetting adder model.")
    parser.add_argument("--output", required=True, help="folder to write the model and tokenizer to")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0, the shipped model)")
    parser.add_argument("--steps", type=int, default=PretrainConfig.steps, help="optimisation steps")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    path = pretrain_embedded_model(args.output, seed=args.seed, steps=args.steps)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
