"""Linear-layer discovery from tensor names agrees with the real model classes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hoe.checkpoints import CheckpointTensors
from hoe.errors import HoEError
from hoe.experts.modules import linear_layers, select_targets


def _configs():
    from transformers import GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

    small = dict(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return {
        "llama": LlamaConfig(**small),
        "llama-tied": LlamaConfig(**small, tie_word_embeddings=True),
        "mistral": MistralConfig(**small),
        "qwen2": Qwen2Config(**small),
        "gpt2": GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64),
    }


@pytest.mark.parametrize("name", list(_configs()))
def test_discovery_matches_model_classes(name, tmp_path):
    from transformers import AutoModelForCausalLM

    config = _configs()[name]
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(tmp_path)
    output = model.get_output_embeddings()
    expected = {
        module_name
        for module_name, module in model.named_modules()
        if module is not output and (isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D")
    }
    found = linear_layers(tmp_path, CheckpointTensors(tmp_path).shapes())
    assert {spec.module for spec in found} == expected
    assert all(spec.transposed == (name == "gpt2") for spec in found)


def test_gpt2_conv1d_expert_loads_in_peft(tmp_path):
    """Conv1D weights are (in, out): extraction transposes them and sets fan_in_fan_out."""
    from conftest import logits_of, relative_error
    from peft import PeftModel
    from transformers import GPT2LMHeadModel

    from hoe.experts import ExtractSettings, extract_expert

    config = _configs()["gpt2"]
    torch.manual_seed(0)
    base = GPT2LMHeadModel(config)
    base.save_pretrained(tmp_path / "base")
    with torch.no_grad():
        for module in base.modules():
            if type(module).__name__ == "Conv1D":
                module.weight += 0.05 * torch.randn(module.weight.shape[0], 2) @ torch.randn(2, module.weight.shape[1])
    base.save_pretrained(tmp_path / "ft")
    extract_expert(tmp_path / "base", tmp_path / "ft", tmp_path / "e", ExtractSettings(rank=2), progress=False)
    adapted = PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(tmp_path / "base"), str(tmp_path / "e"))
    assert relative_error(logits_of(adapted.eval()), logits_of(base.eval())) < 1e-4


def test_written_config_is_a_valid_lora_config(tiny_base, tiny_planted, tmp_path):
    import json

    from peft import LoraConfig

    from hoe.experts import ExtractSettings, extract_expert

    extract_expert(tiny_base, tiny_planted[0], tmp_path / "e", ExtractSettings(rank=3, rank_attn=2), progress=False)
    config = json.loads((tmp_path / "e" / "adapter_config.json").read_text())
    parsed = LoraConfig(**{k: v for k, v in config.items() if k != "peft_type"})
    assert parsed.r == 2  # the most common rank: 8 attention modules at 2, 6 MLP modules at 3
    assert len(parsed.rank_pattern) == 6 and set(parsed.rank_pattern.values()) == {3}
    assert set(parsed.target_modules) >= {"q_proj", "down_proj"}


def test_select_targets_errors_name_what_exists(tiny_base):
    layers = linear_layers(tiny_base, CheckpointTensors(tiny_base).shapes())
    assert len(select_targets(layers, ["q_proj"])) == 2
    assert len(select_targets(layers, ["all-linear"])) == 14
    with pytest.raises(HoEError, match="available: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj"):
        select_targets(layers, ["qkv"])
