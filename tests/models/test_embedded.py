"""The embedded adder: shipped files load offline, the tokenizer round-trips, the misconception is
there (greedy wrong on held-out carry pairs, sampling sometimes right), and pretraining runs."""

import json

import pytest
import torch
from safetensors.torch import load_file

from gspo.models.embedded import (
    PRETRAIN_INFO_FILE,
    PretrainConfig,
    build_tokenizer,
    embedded_model_path,
    pretrain_embedded_model,
    probe_misconception,
    teacher_answers,
)
from gspo.tasks.arithmetic import AdditionTask, split_pairs

TINY = dict(steps=3, batch_size=16, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, warmup_steps=1)


@pytest.fixture(scope="module")
def shipped():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    return model, tokenizer


def test_shipped_folder_is_complete_and_small():
    path = embedded_model_path()
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", PRETRAIN_INFO_FILE} <= names
    assert sum(p.stat().st_size for p in path.iterdir()) < 5 * 2**20
    info = json.loads((path / PRETRAIN_INFO_FILE).read_text())
    assert info["train_pairs"] == len(split_pairs()["train"])


def test_shipped_model_and_tokenizer_load_offline_and_round_trip(shipped):
    model, tokenizer = shipped
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 1e5 < sum(p.numel() for p in model.parameters()) < 2e6
    ids = tokenizer("47+38=85")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and len(ids) == 9
    assert tokenizer.decode(ids, skip_special_tokens=True) == "47+38=85"
    assert tokenizer.decode(tokenizer("12 * 3 - 4", add_special_tokens=False)["input_ids"]) == "12 * 3 - 4"
    assert tokenizer.padding_side == "left"
    assert len({tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id}) == 3
    messages = [{"role": "user", "content": "47+38="}]
    chat = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert tokenizer(chat, add_special_tokens=False)["input_ids"] == tokenizer("47+38=")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tokenizer))


def test_shipped_model_forgets_the_carry_on_held_out_pairs(shipped):
    model, tokenizer = shipped
    carry = probe_misconception(model, tokenizer, AdditionTask().pairs("test")[:150], samples=8)
    assert carry["greedy_accuracy"] < 0.3
    assert carry["greedy_no_carry"] > 0.6
    assert 0.15 < carry["sampled_accuracy"] < 0.5
    assert carry["sampled_no_carry"] > 0.4
    no_carry = probe_misconception(model, tokenizer, AdditionTask(test_carry="none").pairs("test")[:100], samples=2)
    assert no_carry["greedy_accuracy"] > 0.9


def test_teacher_answers():
    assert teacher_answers(42, 31, 0.3) == [("73", 1.0)]
    answers = teacher_answers(47, 38, 0.3)
    assert answers[0] == ("85", 0.3) and answers[1][0] == "75" and sum(w for _, w in answers) == pytest.approx(1.0)


def test_tokenizer_is_character_level():
    tokenizer = build_tokenizer()
    assert tokenizer.convert_ids_to_tokens(tokenizer("9+10=")["input_ids"]) == ["<bos>", "9", "+", "1", "0", "="]
    assert tokenizer.decode(tokenizer("x")["input_ids"], skip_special_tokens=False) == "<bos><unk>"


def test_pretraining_runs_and_is_deterministic(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    first = pretrain_embedded_model(tmp_path / "a", config=PretrainConfig(**TINY), evaluate=False, verbose=False)
    second = pretrain_embedded_model(tmp_path / "b", config=PretrainConfig(**TINY), evaluate=False, verbose=False)
    weights_a, weights_b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    info = json.loads((first / PRETRAIN_INFO_FILE).read_text())
    assert info["config"]["steps"] == 3 and info["final_loss"] > 0
    model = AutoModelForCausalLM.from_pretrained(first, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(first, local_files_only=True)
    probe = probe_misconception(model, tokenizer, AdditionTask().pairs("test")[:4], samples=2)
    assert set(probe) >= {"greedy_accuracy", "sampled_accuracy", "sampled_no_carry"}
    # re-running into an existing folder replaces it (atomically, via a temporary sibling)
    pretrain_embedded_model(first, config=PretrainConfig(**{**TINY, "seed": 1}), evaluate=False, verbose=False)
    key = "model.embed_tokens.weight"
    assert not torch.equal(load_file(first / "model.safetensors")[key], weights_a[key])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        pretrain_embedded_model(tmp_path / "precious", config=PretrainConfig(**TINY), evaluate=False, verbose=False)
    assert (tmp_path / "precious" / "notes.txt").exists()
