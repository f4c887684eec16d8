"""Extraction: planted exact-rank deltas come back exactly through peft; bad input gets one line."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import logits_of, relative_error, save_tiny_llama

from hoe.errors import HoEError
from hoe.experts import ExtractSettings, extract_expert, read_lora


def _peft_logits(base, adapter):
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base), str(adapter))
    return logits_of(model.eval())


@pytest.mark.parametrize("svd", ["exact", "randomized"])
def test_planted_rank_recovered_through_peft(tiny_base, tiny_planted, tmp_path, svd):
    from transformers import LlamaForCausalLM

    ft, _ = tiny_planted
    out = tmp_path / "expert"
    report = extract_expert(tiny_base, ft, out, ExtractSettings(rank=8, svd=svd), progress=False)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 4  # numerical rank caps the requested 8
    assert sorted(config["target_modules"]) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    assert all(m["relative_error"] < 1e-5 for m in report["modules"])
    assert all(norm == 0 for norm in report["left_out"].values())
    ft_logits = logits_of(LlamaForCausalLM.from_pretrained(ft).eval())
    assert relative_error(_peft_logits(tiny_base, out), ft_logits) < 1e-4


def test_non_linear_deltas_are_reported(tiny_base, tmp_path):
    from conftest import plant_low_rank

    plant_low_rank(tiny_base, tmp_path / "ft", rank=2, touch_norms=True)
    report = extract_expert(tiny_base, tmp_path / "ft", tmp_path / "e", ExtractSettings(rank=2), progress=False)
    norms = report["left_out"]
    assert norms["model.layers.0.input_layernorm.weight"] == pytest.approx(0.01 * 64**0.5, rel=1e-3)
    assert norms["model.embed_tokens.weight"] == 0 and report["totals"]["left_out_delta_norm"] > 0


def test_rank_below_planted_is_best_approximation(tiny_base, tiny_planted, tmp_path):
    ft, deltas = tiny_planted
    report = extract_expert(tiny_base, ft, tmp_path / "e", ExtractSettings(rank=2), progress=False)
    adapter = read_lora(tmp_path / "e")
    for name, delta in deltas.items():
        U, S, Vh = torch.linalg.svd(delta.double())
        best = (U[:, :2] * S[:2]) @ Vh[:2]
        assert relative_error(adapter.modules[name].delta().double(), best) < 1e-4
    assert all(m["rank"] == 2 and 0 < m["relative_error"] < 1 for m in report["modules"])


def test_rank_per_family_and_energy(tiny_base, tiny_planted, tmp_path):
    ft, _ = tiny_planted
    report = extract_expert(
        tiny_base, ft, tmp_path / "e", ExtractSettings(rank=4, rank_attn=1, rank_mlp=3), progress=False
    )
    ranks = {m["module"].rsplit(".", 1)[-1]: m["rank"] for m in report["modules"]}
    assert ranks["q_proj"] == 1 and ranks["down_proj"] == 3
    config = json.loads((tmp_path / "e" / "adapter_config.json").read_text())
    assert config["rank_pattern"] and config["rank_pattern"] == config["alpha_pattern"]

    report = extract_expert(tiny_base, ft, tmp_path / "f", ExtractSettings(rank=4, energy=0.5), progress=False)
    for m in report["modules"]:
        assert m["retained_energy"] >= 0.5 - 1e-9 and m["rank"] <= 4


def test_mixed_ranks_load_in_peft(tiny_base, tiny_planted, tmp_path):
    """rank_pattern under full module names must give each layer its own rank in peft."""
    ft, _ = tiny_planted
    out = tmp_path / "e"
    extract_expert(tiny_base, ft, out, ExtractSettings(rank=4, rank_attn=2), progress=False)
    reference = read_lora(out)
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(tiny_base), str(out))
    for name, module in model.base_model.model.named_modules():
        if name in reference.modules:
            assert module.lora_A["default"].weight.shape[0] == reference.modules[name].rank


def test_target_modules_subset(tiny_base, tiny_planted, tmp_path):
    ft, _ = tiny_planted
    report = extract_expert(
        tiny_base, ft, tmp_path / "e", ExtractSettings(rank=4, target_modules=["q_proj", "v_proj"]), progress=False
    )
    assert {m["module"].rsplit(".", 1)[-1] for m in report["modules"]} == {"q_proj", "v_proj"}
    assert any(name.endswith("k_proj.weight") for name in report["left_out"])


def test_lora_input_is_reranked_without_loss(tiny_base, tiny_planted, tmp_path):
    ft, _ = tiny_planted
    first = tmp_path / "r4"
    extract_expert(tiny_base, ft, first, ExtractSettings(rank=4), progress=False)
    second = tmp_path / "r6"
    report = extract_expert(tiny_base, first, second, ExtractSettings(rank=6), progress=False)
    assert report["source"] == "lora"
    a, b = read_lora(first), read_lora(second)
    for name in a.modules:
        assert b.modules[name].rank == 4
        assert relative_error(b.modules[name].delta(), a.modules[name].delta()) < 1e-5


def test_peft_lora_with_alpha_scaling_is_honoured(tiny_base, tmp_path):
    """A LoRA trained with peft (alpha ≠ r) keeps its product, scaling included."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(3)
    model = get_peft_model(
        LlamaForCausalLM.from_pretrained(tiny_base),
        LoraConfig(r=3, lora_alpha=12, target_modules=["q_proj", "down_proj"]),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)
    model.save_pretrained(tmp_path / "peft")
    expected = logits_of(model.eval())
    extract_expert(tiny_base, tmp_path / "peft", tmp_path / "out", ExtractSettings(rank=3), progress=False)
    assert relative_error(_peft_logits(tiny_base, tmp_path / "out"), expected) < 1e-4


@pytest.mark.parametrize(
    "values, message",
    [
        ({"rank": 0}, "extract settings: rank (--rank): input should be greater than 0, got 0"),
        ({"rank": -3}, "extract settings: rank (--rank): input should be greater than 0, got -3"),
        ({"energy": 0.0}, "extract settings: energy (--energy): input should be greater than 0, got 0.0"),
        ({"energy": 1.5}, "extract settings: energy (--energy): input should be less than or equal to 1, got 1.5"),
        ({"svd": "magic"}, "extract settings: svd (--svd): input should be 'exact' or 'randomized', got 'magic'"),
        ({"dtype": "int3"}, "unknown dtype"),
        ({"target_modules": ["nope_proj"]}, "matches no linear layer"),
    ],
)
def test_bad_settings_leave_nothing(tiny_base, tiny_planted, tmp_path, values, message):
    """One line naming the setting as a recipe key and as a CLI flag; nothing written."""
    out = tmp_path / "out"
    with pytest.raises(HoEError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        extract_expert(tiny_base, tiny_planted[0], out, ExtractSettings.create(**values), progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_shape_mismatch_names_tensor(tiny_base, tmp_path):
    other = save_tiny_llama(tmp_path / "wide", intermediate_size=80)
    with pytest.raises(HoEError, match=r"tensor 'model\.layers\.0\.mlp\.(gate|up|down)_proj\.weight' has shape"):
        extract_expert(tiny_base, other, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_architecture_mismatch(tiny_base, tmp_path):
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    MistralForCausalLM(config).save_pretrained(tmp_path / "mistral")
    with pytest.raises(HoEError, match="'llama' model but the fine-tuned model is a 'mistral'"):
        extract_expert(tiny_base, tmp_path / "mistral", tmp_path / "out", progress=False)


def test_missing_paths_and_existing_out(tiny_base, tiny_planted, tmp_path):
    with pytest.raises(HoEError, match="model not found: '/no/such/model'"):
        extract_expert(tiny_base, "/no/such/model", tmp_path / "out", progress=False)
    with pytest.raises(HoEError, match="model not found: './missing-base'"):
        extract_expert("./missing-base", tiny_planted[0], tmp_path / "out", progress=False)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(HoEError, match="already exists"):
        extract_expert(tiny_base, tiny_planted[0], tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    with pytest.raises(HoEError, match="a folder this command did not write"):  # not an adapter: never emptied
        extract_expert(tiny_base, tiny_planted[0], tmp_path / "out", overwrite=True, progress=False)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    (tmp_path / "out" / "adapter_config.json").write_text("{}")  # a previous adapter is replaced
    extract_expert(tiny_base, tiny_planted[0], tmp_path / "out", overwrite=True, progress=False)
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file() and not (tmp_path / "out" / "keep.txt").exists()


def test_adapter_for_other_base_is_refused(tiny_base, tiny_planted, tmp_path):
    ft, _ = tiny_planted
    extract_expert(tiny_base, ft, tmp_path / "e", ExtractSettings(rank=2), progress=False)
    other = save_tiny_llama(tmp_path / "wide", intermediate_size=80)
    with pytest.raises(HoEError, match="maps .* but the base layer maps"):
        extract_expert(other, tmp_path / "e", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
