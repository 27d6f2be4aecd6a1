"""``load_model_and_tokenizer``: name resolution, pad-token handling, dtype, and offline errors."""

import pytest
import torch

import gspo.models.loading as loading
from gspo.models.embedded import embedded_model_path
from gspo.models.loading import (
    ModelLoadError,
    ensure_pad_token,
    load_model_and_tokenizer,
    pad_is_eos,
    resolve_model_path,
)


def _save_tiny(folder, *, pad: str | None, extra_tokens=()):
    """A tiny Llama + character tokenizer in ``folder``; the tokenizer's pad token is ``pad``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<eos>", "<unk>", *extra_tokens]
    vocab = {t: i for i, t in enumerate(specials + list("abc "))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(specials)
    kwargs = {"pad_token": pad} if pad else {}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", unk_token="<unk>", **kwargs)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        eos_token_id=0,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("name", ["embedded", "embedded:adder", "Embedded"])
def test_embedded_names(name):
    assert resolve_model_path(name) == str(embedded_model_path())
    model, tokenizer = load_model_and_tokenizer(name)
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == "<pad>" and not pad_is_eos(tokenizer)
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert next(model.parameters()).dtype == torch.float32


def test_local_folder_with_dedicated_pad_in_vocab(tmp_path):
    folder = _save_tiny(tmp_path / "m", pad=None, extra_tokens=("<pad>",))
    model, tokenizer = load_model_and_tokenizer(str(folder), dtype="bfloat16")
    assert tokenizer.pad_token == "<pad>" and not pad_is_eos(tokenizer)
    assert tokenizer.padding_side == "left"
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert next(model.parameters()).dtype == torch.bfloat16
    batch = tokenizer(["ab", "abc a"], padding=True, return_tensors="pt")
    assert batch["attention_mask"][0].tolist() == [0, 0, 0, 1, 1]  # left padding
    assert tokenizer.decode(tokenizer("ab c")["input_ids"]) == "ab c"


def test_local_folder_without_pad_falls_back_to_eos(tmp_path):
    folder = _save_tiny(tmp_path / "m", pad=None)
    _, tokenizer = load_model_and_tokenizer(str(folder))
    assert tokenizer.pad_token == "<eos>" and pad_is_eos(tokenizer)


def test_pad_equal_to_eos_is_replaced_by_a_dedicated_token(tmp_path):
    folder = _save_tiny(tmp_path / "m", pad="<eos>", extra_tokens=("<|endoftext|>",))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert ensure_pad_token(tokenizer) == "dedicated"
    assert tokenizer.pad_token == "<|endoftext|>" and not pad_is_eos(tokenizer)
    assert ensure_pad_token(tokenizer) == "existing"


def test_bad_arguments_fail_clearly_without_network(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        load_model_and_tokenizer("embedded", dtype="float64")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model_and_tokenizer(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model_and_tokenizer("./no/such/model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="folder"):
        load_model_and_tokenizer(str(tmp_path / "empty"))


def test_hub_ids_are_passed_through_and_failures_mention_offline_mode(monkeypatch):
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    import transformers

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(ModelLoadError, match="offline") as info:
        load_model_and_tokenizer("some-org/some-model")
    assert "'smollm2'" in str(info.value) and "'embedded'" in str(info.value)


def test_smollm2_names_use_the_prepared_folder(monkeypatch, tmp_path):
    import gspo.models.smollm2 as smollm2

    calls = []
    monkeypatch.setattr(smollm2, "prepare_smollm2", lambda *a, **k: calls.append(1) or tmp_path)
    assert resolve_model_path("smollm2") == str(tmp_path)
    assert resolve_model_path("SmolLM2-135M-Instruct") == str(tmp_path)
    assert len(calls) == 2
    assert loading.SMOLLM2_NAMES and loading.EMBEDDED_NAMES
