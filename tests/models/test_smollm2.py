"""SmolLM2-135M-Instruct from the GGUF file: cache location, skip-if-present, and one real preparation."""

import pytest
import torch

import gspo.models.smollm2 as smollm2
from gspo.models.smollm2 import REQUIRED_FILES, gguf_file, is_prepared, prepare_smollm2, smollm2_path


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("GSPO_CACHE", str(tmp_path / "cache"))
    assert smollm2_path() == tmp_path / "cache" / "models" / "SmolLM2-135M-Instruct"
    assert smollm2_path(tmp_path / "other") == tmp_path / "other" / "models" / "SmolLM2-135M-Instruct"
    monkeypatch.delenv("GSPO_CACHE")
    assert smollm2_path().parts[-4:] == (".cache", "gspo", "models", "SmolLM2-135M-Instruct")


def test_prepared_folder_is_reused(monkeypatch, tmp_path):
    target = smollm2_path(tmp_path)
    target.mkdir(parents=True)
    for name in REQUIRED_FILES[:-1]:
        (target / name).write_text("{}")
    assert not is_prepared(target)
    (target / REQUIRED_FILES[-1]).write_text("{}")
    assert is_prepared(target)

    def must_not_run(*args, **kwargs):
        raise AssertionError("prepared again")

    monkeypatch.setattr(smollm2, "_dequantized_llama", must_not_run)
    assert prepare_smollm2(cache_dir=tmp_path) == target
    with pytest.raises(AssertionError, match="prepared again"):
        prepare_smollm2(cache_dir=tmp_path, force=True)
    assert is_prepared(target)  # a failed forced preparation leaves the old folder in place
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # and no temporary folder behind


def test_gguf_file_is_installed():
    path = gguf_file()
    assert path.name.endswith(".gguf") and path.stat().st_size > 50 * 2**20


@pytest.mark.slow
def test_prepare_smollm2_for_real(tmp_path):
    """Dequantises the real GGUF (about a minute on one CPU thread) and runs the result."""
    from gspo.models.loading import load_model_and_tokenizer

    torch.set_num_threads(1)
    path = prepare_smollm2(cache_dir=tmp_path)
    assert path == smollm2_path(tmp_path) and is_prepared(path)
    assert (path / "chat_template.jinja").exists() or "chat_template" in (path / "tokenizer_config.json").read_text()
    model, tokenizer = load_model_and_tokenizer(str(path))
    assert type(model).__name__ == "LlamaForCausalLM" and "quantization_config" not in model.config.to_dict()
    assert tokenizer.pad_token_id is not None and not tokenizer.pad_token_id == tokenizer.eos_token_id
    messages = [{"role": "user", "content": "What is 2+3?"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = tokenizer([text], add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
        assert logits.shape == (1, batch["input_ids"].shape[1], model.config.vocab_size) == (1, logits.shape[1], 49152)
        out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "5" in answer, answer
