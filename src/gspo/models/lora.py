"""LoRA and QLoRA through ``peft``: wrap a model, save/load adapters, merge for export.

With LoRA the reference policy for the KL term is the *same* model with its adapter disabled
(``model.disable_adapter()``), so no second copy of the weights is held. QLoRA (4-bit base weights)
needs CUDA and bitsandbytes; on CPU it is refused with a clear message before anything loads.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

logger = logging.getLogger("gspo")


def is_peft_model(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def apply_lora(model, *, r: int, alpha: float, dropout: float, target_modules: str):
    """Wrap ``model`` with fresh LoRA adapters; only adapter weights stay trainable."""
    from peft import LoraConfig, get_peft_model

    targets = (
        target_modules
        if target_modules == "all-linear"
        else [t.strip() for t in target_modules.split(",") if t.strip()]
    )
    lora_config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora_config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    logger.info("LoRA r=%d on %s: %.3fM of %.2fM parameters trainable", r, target_modules, trainable / 1e6, total / 1e6)
    return peft_model


def load_4bit_base(name_or_path: str, *, device):
    """QLoRA base: 4-bit NF4 weights with bfloat16 compute, prepared for k-bit training (CUDA only)."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from gspo.models.loading import ensure_pad_token, resolve_model_path

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ValueError("load_in_4bit: bitsandbytes is not installed (pip install 'gspo[gpu]')") from None
    source = resolve_model_path(name_or_path)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(source, quantization_config=quant, device_map={"": device.index or 0})
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.padding_side = "left"
    ensure_pad_token(tokenizer, model)
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False), tokenizer


def reference_context(model):
    """Context in which ``model`` computes the reference policy: adapter off for PEFT models."""
    if is_peft_model(model):
        return model.disable_adapter()
    return contextlib.nullcontext()


def is_adapter_folder(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def load_adapter_model(path: str | Path, *, dtype="float32", device="cpu", trainable: bool = False):
    """Load base model + adapter from an adapter folder (the base is read from adapter_config.json)."""
    import json

    from peft import PeftModel

    from gspo.models.loading import load_model_and_tokenizer

    base_name = json.loads((Path(path) / "adapter_config.json").read_text())["base_model_name_or_path"]
    base, tokenizer = load_model_and_tokenizer(base_name, dtype=dtype, device=device)
    model = PeftModel.from_pretrained(base, str(path), is_trainable=trainable)
    if (Path(path) / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path))
        tokenizer.padding_side = "left"
    return model, tokenizer


def merge_adapter(adapter_dir: str | Path, output_dir: str | Path) -> Path:
    """Merge a LoRA adapter into its base weights and save a plain model folder (with tokenizer)."""
    model, tokenizer = load_adapter_model(adapter_dir)
    merged = model.merge_and_unload()
    output_dir = Path(output_dir)
    merged.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    return output_dir
