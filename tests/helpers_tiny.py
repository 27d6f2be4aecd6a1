"""Tiny random causal LMs and a character-level tokenizer, built offline in a few milliseconds.

Shared by the test suite (nothing here downloads anything)::

    from tests.helpers_tiny import tiny_model_and_tokenizer
    model, tok = tiny_model_and_tokenizer(arch="qwen2")

The tokenizer is character level over printable ASCII (plus newline), so *any* ASCII string round-trips
through ``encode``/``decode``. Special tokens have fixed ids: ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2,
``<unk>`` 3, then the chat role markers ``<|system|>``, ``<|user|>``, ``<|assistant|>``, then any extra
whole-word tokens passed as ``vocab``, then the characters. With ``chat=True`` (the default) the
tokenizer carries a minimal chat template::

    <|user|>question\\n<|assistant|>      (add_generation_prompt=True)

``ForcedEOS`` wraps a model so that a test decides when each row emits EOS; ``ParityTask`` is a
cheap stand-in :class:`gspo.tasks.base.Task` with a deterministic scorer.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from types import SimpleNamespace

import torch

from gspo.models.introspect import cache_argument, returned_cache
from gspo.tasks.base import Task

PAD, EOS, BOS, UNK = "<pad>", "<eos>", "<bos>", "<unk>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
CHARS = tuple(c for c in string.printable if c not in "\t\r\x0b\x0c")  # 95 printable + "\n"

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

ARCHS = ("llama", "qwen2", "gpt2", "mistral", "qwen3")


def tiny_tokenizer(vocab: Sequence[str] | None = None, *, chat: bool = True, add_bos: bool = False):
    """A ``PreTrainedTokenizerFast`` over single characters (+ ``vocab`` extra whole tokens).

    ``add_bos=True`` prepends ``<bos>`` when encoding with ``add_special_tokens=True``.
    """
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, EOS, BOS, UNK, *ROLE_TOKENS]
    extra = [w for w in (vocab or ()) if w not in specials and w not in CHARS]
    tokens = [*specials, *extra, *CHARS]
    token_to_id = {t: i for i, t in enumerate(tokens)}
    # A BPE without merges splits text into single characters; the extra words are matched as
    # added tokens before the model sees the text.
    backend = Tokenizer(models.BPE(vocab=token_to_id, merges=[], unk_token=UNK))
    backend.add_special_tokens(specials)
    if extra:
        backend.add_tokens(extra)
    backend.decoder = decoders.Fuse()
    if add_bos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, token_to_id[BOS])]
        )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=BOS,
        unk_token=UNK,
        padding_side="left",
    )
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_model(
    vocab_size: int,
    *,
    hidden: int = 32,
    layers: int = 2,
    seed: int = 0,
    arch: str = "llama",
    max_positions: int = 512,
    pad_token_id: int = 0,
    eos_token_id: int = 1,
    bos_token_id: int = 2,
):
    """A randomly initialised float32 causal LM of the given architecture, in eval mode.

    Initialisation uses ``seed`` without touching the global torch RNG state.
    """
    import transformers

    heads = max(2, hidden // 16)
    ids = dict(pad_token_id=pad_token_id, eos_token_id=eos_token_id, bos_token_id=bos_token_id)
    llama_like = {
        "llama": ("Llama", False),
        "qwen2": ("Qwen2", True),
        "mistral": ("Mistral", False),
        "qwen3": ("Qwen3", False),
    }
    if arch in llama_like:
        name, tied = llama_like[arch]
        config = getattr(transformers, f"{name}Config")(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=max(1, heads // 2),
            head_dim=hidden // heads,
            max_position_embeddings=max_positions,
            tie_word_embeddings=tied,
            **ids,
        )
        cls = getattr(transformers, f"{name}ForCausalLM")
    elif arch == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=vocab_size, n_embd=hidden, n_layer=layers, n_head=heads, n_positions=max_positions, **ids
        )
        cls = transformers.GPT2LMHeadModel
    else:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    model.generation_config.pad_token_id = pad_token_id
    model.generation_config.eos_token_id = eos_token_id
    return model.float().eval()


def tiny_model_and_tokenizer(
    vocab: Sequence[str] | None = None,
    hidden: int = 32,
    layers: int = 2,
    seed: int = 0,
    arch: str = "llama",
    *,
    chat: bool = True,
    add_bos: bool = False,
):
    """``(model, tokenizer)``: a tiny random ``arch`` model sized to :func:`tiny_tokenizer`'s vocabulary."""
    tok = tiny_tokenizer(vocab, chat=chat, add_bos=add_bos)
    model = tiny_model(
        len(tok),
        hidden=hidden,
        layers=layers,
        seed=seed,
        arch=arch,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    return model, tok


class ForcedEOS(torch.nn.Module):
    """Wraps a causal LM; row b emits ``eos_id`` as its ``eos_at[b]``-th new token (1-based, None: never).

    Records, per call, the input shape and whether the module was in training mode, so tests can
    check the prompt is run once, decode steps feed one token, and the loop stops early. When the
    sampler drops finished rows from the batch, the rows that are gone are exactly those already
    forced to EOS (the only way a row finishes here), so the wrapper follows the compaction.
    """

    def __init__(self, model, eos_id: int, eos_at: list[int | None], ban_ids: tuple[int, ...] = ()):
        super().__init__()
        self.inner = model
        self.eos_id = eos_id
        self.eos_at = eos_at
        self.ban_ids = ban_ids  # never sampled unless forced (e.g. the EOS ids themselves)
        self.calls: list[tuple[tuple[int, ...], bool]] = []
        self._step = 0

    def forward(
        self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None, logits_to_keep=0
    ):
        if past_key_values is None or past_key_values.get_seq_length() == 0:  # a prefill
            self._step = 0
            # a prefill of distinct prompts (sample(repeats=G)) forces nothing; rows start at the first decode
            self._rows = list(range(len(self.eos_at))) if input_ids.shape[0] == len(self.eos_at) else None
        elif self._rows is None:
            self._rows = list(range(input_ids.shape[0]))
        if self._rows is not None and input_ids.shape[0] < len(self._rows):  # the sampler dropped finished rows
            self._rows = [r for r in self._rows if not (self.eos_at[r] is not None and self.eos_at[r] <= self._step)]
            assert len(self._rows) == input_ids.shape[0], "ForcedEOS cannot follow this batch change"
        self.calls.append((tuple(input_ids.shape), self.training))
        # the wrapper takes the pre-5.24 name (as remote-code models do); the inner model its own
        out = self.inner(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **{cache_argument(self.inner): past_key_values},
        )
        logits = out.logits.clone()
        logits[..., list(self.ban_ids)] = -1e4
        for b, row in enumerate(self._rows or ()):
            at = self.eos_at[row]
            if at is not None and self._step == at - 1:
                logits[b, -1, self.eos_id] = 1e4
        self._step += 1
        return SimpleNamespace(logits=logits, past_key_values=returned_cache(out, cache_argument(self.inner)))


class ParityTask(Task):
    """A stand-in task for tests; register it as ``"tests.helpers_tiny:ParityTask"`` in ``TASK_REGISTRY``.

    Rows are ``{"prompt": "<i>+<i>=", "answer": "<i>", "id": "parity-<i>"}`` (a chat message list
    with ``chat=True``); ``path`` names a text file with one prompt per line instead. A completion
    scores 1.0 iff its first character has an even code point: arbitrary, but deterministic and true
    about half the time for a random model. Every ``score_batch`` call is recorded in ``calls``.
    """

    name = "parity"
    splits = ("train", "test")
    max_new_tokens = 6

    def __init__(self, rows: int = 12):
        self.num_rows = rows
        self.calls: list[tuple[list[str], list[dict]]] = []

    def load(self, split, *, path=None, limit=None, chat=False):
        self.check_split(split)
        if path is not None:
            with open(path, encoding="utf-8") as f:
                texts = [line.rstrip("\n") for line in f if line.strip()]
        else:
            texts = [f"{i}+{i}=" for i in range(self.num_rows)]
        texts = texts[:limit] if limit is not None else texts
        return [
            {"prompt": [{"role": "user", "content": t}] if chat else t, "answer": str(i), "id": f"parity-{i}"}
            for i, t in enumerate(texts)
        ]

    def score(self, completion, row):
        return 1.0 if completion and ord(completion[0]) % 2 == 0 else 0.0

    def score_batch(self, completions, rows):
        self.calls.append((list(completions), list(rows)))
        return super().score_batch(completions, rows)


__all__ = [
    "ARCHS",
    "CHAT_TEMPLATE",
    "ForcedEOS",
    "ParityTask",
    "tiny_model",
    "tiny_model_and_tokenizer",
    "tiny_tokenizer",
]
