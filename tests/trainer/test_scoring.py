"""The trainer's scoring pass equals a plain full-logits forward, on several architectures."""

import pytest
import torch

from gspo.trainer.scoring import completion_logprobs
from tests.helpers_tiny import tiny_model_and_tokenizer


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_fast_path_equals_plain_log_softmax(arch, temperature):
    model, _ = tiny_model_and_tokenizer(arch=arch, chat=False)
    g = torch.Generator().manual_seed(0)
    p_ids = torch.randint(3, 50, (3, 5), generator=g)
    p_mask = torch.ones(3, 5, dtype=torch.long)
    p_mask[0, :2] = 0  # left padding
    c_ids = torch.randint(3, 50, (3, 4), generator=g)
    c_mask = torch.ones(3, 4, dtype=torch.long)
    c_mask[1, 2:] = 0
    logp, ent = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask, temperature=temperature, with_entropy=True)

    ids = torch.cat([p_ids, c_ids], 1)
    mask = torch.cat([p_mask, c_mask], 1)
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, 4:-1].float() / temperature
    ref = torch.log_softmax(logits, -1).gather(-1, c_ids[..., None]).squeeze(-1)
    real = c_mask.bool()
    torch.testing.assert_close(logp[real], ref[real], rtol=1e-5, atol=1e-5)
    p = torch.softmax(logits, -1)
    torch.testing.assert_close(ent[real], -(p * p.log()).sum(-1)[real], rtol=1e-4, atol=1e-4)
