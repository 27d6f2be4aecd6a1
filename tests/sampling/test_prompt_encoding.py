"""Tests of gspo.sampling.prompts: left padding, chat templates, left truncation, decoding."""

from __future__ import annotations

import logging

import pytest
import torch

from gspo.sampling import Rollout, decode_completions, encode_prompts, special_token_ids
from tests.helpers_tiny import tiny_tokenizer

CHAT = [{"role": "user", "content": "2+2?"}]


def test_left_padding_and_mask():
    tok = tiny_tokenizer()
    ids_BP, mask_BP = encode_prompts(tok, ["abc", "a"])
    assert ids_BP.dtype == torch.long and mask_BP.dtype == torch.long
    assert mask_BP.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert ids_BP[0].tolist() == tok("abc")["input_ids"]
    assert ids_BP[1].tolist() == [tok.pad_token_id, tok.pad_token_id, tok("a")["input_ids"][0]]


def test_chat_template_applied_with_generation_prompt():
    tok = tiny_tokenizer()
    ids_BP, mask_BP = encode_prompts(tok, [CHAT, "plain"])
    text = tok.decode(ids_BP[0][mask_BP[0].bool()])
    assert text == "<|user|>2+2?\n<|assistant|>"
    assert tok.decode(ids_BP[1][mask_BP[1].bool()]) == "plain"


def test_bos_added_to_strings_but_not_doubled_for_chat():
    tok = tiny_tokenizer(add_bos=True)
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    ids_BP, mask_BP = encode_prompts(tok, ["hi", CHAT])
    for b in range(2):
        real = ids_BP[b][mask_BP[b].bool()].tolist()
        assert real[0] == tok.bos_token_id and real.count(tok.bos_token_id) == 1


def test_chat_prompt_without_template_is_a_clear_error():
    tok = tiny_tokenizer(chat=False)
    with pytest.raises(ValueError, match="no chat template"):
        encode_prompts(tok, [CHAT])
    with pytest.raises(TypeError):
        encode_prompts(tok, [42])


def test_left_truncation_logs_a_warning(caplog):
    tok = tiny_tokenizer()
    with caplog.at_level(logging.WARNING, logger="gspo.sampling.prompts"):
        ids_BP, mask_BP = encode_prompts(tok, ["0123456789", "abc", "xyzxyzxyz"], max_prompt_tokens=4)
    assert ids_BP.shape == (3, 4)
    assert tok.decode(ids_BP[0]) == "6789" and tok.decode(ids_BP[2]) == "zxyz"
    assert "2 of 3 prompts" in caplog.text


def test_special_token_ids_union_with_generation_config():
    tok = tiny_tokenizer()
    model = type("M", (), {})()
    model.generation_config = type("G", (), {"eos_token_id": [5, tok.eos_token_id]})()
    assert special_token_ids(tok, model) == ([tok.eos_token_id, 5], tok.pad_token_id)
    assert special_token_ids(tok) == ([tok.eos_token_id], tok.pad_token_id)


def test_decode_completions_drops_eos_and_pads():
    tok = tiny_tokenizer()
    enc = lambda s: tok(s)["input_ids"]  # noqa: E731
    eos, pad = tok.eos_token_id, tok.pad_token_id
    ids_BT = torch.tensor([enc("42") + [eos, pad], enc("abcd")])
    mask_BT = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    r = Rollout(
        torch.zeros(2, 1, dtype=torch.long),
        torch.ones(2, 1, dtype=torch.long),
        ids_BT,
        mask_BT,
        torch.zeros(2, 4),
        torch.tensor([True, False]),
    )
    assert decode_completions(tok, r) == ["42", "abcd"]
