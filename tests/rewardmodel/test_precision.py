"""Judge training precision: bf16 weights cannot be fully fine-tuned (AdamW's updates of about the
learning rate round away in bf16), an adapter over a bf16 base keeps float32 weights and moves."""
import pytest
import torch

from mlcore.config import ConfigError
from rewardmodel.core.config import TrainingConfig
from rewardmodel.core.demo_judge import save_tiny_qwen
from rewardmodel.core.judge import Judge


def config(**overrides) -> dict:
    return {"dataset_dir": "d", "output_dir": "o", "base_model": "m", **overrides}


def test_bf16_full_fine_tuning_is_refused_and_float32_or_an_adapter_is_not():
    with pytest.raises(ConfigError, match="bfloat16 weights cannot be fully fine-tuned"):
        TrainingConfig.from_dict(config(model_dtype="bfloat16"))
    TrainingConfig.from_dict(config(model_dtype="bfloat16", adapter_rank=8))
    TrainingConfig.from_dict(config(model_dtype="float32"))


def test_an_adapter_over_a_bf16_judge_is_float32_and_its_small_updates_land(tmp_path):
    judge = Judge.from_pretrained(str(save_tiny_qwen(tmp_path / "tiny", seed=0)), dtype="bfloat16", device="cpu")
    judge.add_lora(rank=4, alpha=8)
    adapter = {name: p for name, p in judge.model.named_parameters() if p.requires_grad}
    assert adapter and all("lora_" in name and p.dtype == torch.float32 for name, p in adapter.items())
    base = [p for p in judge.model.parameters() if not p.requires_grad and p.is_floating_point()]
    assert base and all(p.dtype == torch.bfloat16 for p in base)
    # The same tiny step on a bf16 copy of an adapter weight rounds away almost everywhere; on the
    # float32 weight it lands everywhere.
    weight = next(p for name, p in adapter.items() if "lora_A" in name).detach()
    step = 1e-6 * torch.sign(torch.randn_like(weight))
    assert bool(((weight + step) != weight).all())
    as_bf16 = weight.to(torch.bfloat16)
    assert float(((as_bf16 + step.to(torch.bfloat16)) != as_bf16).float().mean()) < 0.1
