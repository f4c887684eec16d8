"""hoe merge on tiny models: exactness, peft agreement, anchors, full-model inputs, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import plant_low_rank, relative_error

from hoe.errors import HoEError
from hoe.experts import ExtractSettings, extract_expert, read_lora
from hoe.merging import MergeSettings, merge_experts


@pytest.fixture(scope="module")
def three_experts(tiny_base, tmp_path_factory):
    """Three rank-2 LoRA experts of the tiny base, and their full fine-tuned models."""
    root = tmp_path_factory.mktemp("experts")
    experts, models = [], []
    for k in range(3):
        plant_low_rank(tiny_base, root / f"ft{k}", rank=2, seed=10 + k)
        extract_expert(tiny_base, root / f"ft{k}", root / f"e{k}", ExtractSettings(rank=2), progress=False)
        experts.append(root / f"e{k}")
        models.append(root / f"ft{k}")
    return experts, models


def _sum(experts, weights):
    adapters = [read_lora(e) for e in experts]
    return {
        name: sum(w * a.modules[name].delta().double() for a, w in zip(adapters, weights))
        for name in adapters[0].modules
    }


def test_linear_is_exact_at_full_rank(tiny_base, three_experts, tmp_path):
    experts, _ = three_experts
    weights = [0.5, 0.3, 0.2]
    report = merge_experts(tiny_base, experts, tmp_path / "m", MergeSettings(weights=weights, rank=6), progress=False)
    assert report["totals"]["factored_modules"] == 14  # LoRA inputs never formed a dense delta
    merged, expected = read_lora(tmp_path / "m"), _sum(experts, weights)
    for name, delta in expected.items():
        assert relative_error(merged.modules[name].delta().double(), delta) < 1e-6
    assert all(m["rank"] == 6 and m["relative_error"] < 1e-6 for m in report["modules"])


def test_full_model_inputs_match_lora_inputs(tiny_base, three_experts, tmp_path):
    experts, models = three_experts
    merge_experts(tiny_base, models, tmp_path / "full", MergeSettings(weights=[1, 1, 1], rank=6), progress=False)
    merged, expected = read_lora(tmp_path / "full"), _sum(experts, [1, 1, 1])
    for name, delta in expected.items():
        assert relative_error(merged.modules[name].delta().double(), delta) < 1e-5


def test_agrees_with_peft_cat_and_svd(tiny_base, three_experts, tmp_path):
    """peft's 'cat' is Σ w_i B_i A_i exactly and 'svd' its truncation: hoe's linear is both."""
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    experts, _ = three_experts
    weights = [0.6, 0.3, 0.1]
    model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(tiny_base), str(experts[0]), adapter_name="a0")
    for k in (1, 2):
        model.load_adapter(str(experts[k]), adapter_name=f"a{k}")
    model.add_weighted_adapter(["a0", "a1", "a2"], weights, "cat", combination_type="cat")
    model.add_weighted_adapter(["a0", "a1", "a2"], weights, "svd3", combination_type="svd", svd_rank=3)
    merge_experts(tiny_base, experts, tmp_path / "full", MergeSettings(weights=weights, rank=6), progress=False)
    merge_experts(tiny_base, experts, tmp_path / "r3", MergeSettings(weights=weights, rank=3), progress=False)
    ours_full, ours_r3 = read_lora(tmp_path / "full"), read_lora(tmp_path / "r3")
    for name, module in model.base_model.model.named_modules():
        if hasattr(module, "lora_A") and "cat" in module.lora_A:
            peft_cat = module.lora_B["cat"].weight @ module.lora_A["cat"].weight * module.scaling["cat"]
            peft_svd = module.lora_B["svd3"].weight @ module.lora_A["svd3"].weight * module.scaling["svd3"]
            assert relative_error(ours_full.modules[name].delta(), peft_cat.detach()) < 1e-5
            assert relative_error(ours_r3.modules[name].delta(), peft_svd.detach()) < 1e-4


@pytest.mark.parametrize("method", ["ties", "dare_linear", "dare_ties", "pcb", "tsv"])
def test_every_method_writes_a_loadable_expert(tiny_base, three_experts, tmp_path, method):
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    experts, _ = three_experts
    report = merge_experts(tiny_base, experts, tmp_path / method, MergeSettings(method=method, rank=4), progress=False)
    assert report["method"] == method and report["totals"]["modules"] == 14
    PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(tiny_base), str(tmp_path / method))
    saved = json.loads((tmp_path / method / "merge_report.json").read_text())
    assert saved["parameters"] == report["parameters"] and saved["totals"]["wall_time_s"] > 0


def test_dare_merge_is_deterministic(tiny_base, three_experts, tmp_path):
    experts, _ = three_experts
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        merge_experts(
            tiny_base,
            experts,
            tmp_path / name,
            MergeSettings(method="dare_linear", params={"seed": seed}, rank=4),
            progress=False,
        )
    a, b, c = (read_lora(tmp_path / n) for n in "abc")
    name = next(iter(a.modules))
    assert torch.equal(a.modules[name].delta(), b.modules[name].delta())
    assert not torch.equal(a.modules[name].delta(), c.modules[name].delta())


def test_anchor_from_names_and_from_source_anchors(tiny_base, three_experts, tmp_path):
    experts, _ = three_experts
    report = merge_experts(
        tiny_base,
        experts[:2],
        tmp_path / "ab",
        MergeSettings(weights=[3, 1], objectives=["helpful", "harmless"]),
        progress=False,
    )
    assert report["objectives"] == ["helpful", "harmless"] and report["anchor"] == [0.75, 0.25]
    meta = json.loads((tmp_path / "ab" / "hoe_expert.json").read_text())
    assert meta["anchor"] == [0.75, 0.25] and meta["source"]["method"] == "linear"
    # merging the merged expert with expert 1 again: anchors combine in the same space
    single = tmp_path / "harmless-only"
    merge_experts(
        tiny_base,
        [experts[0], experts[1]],
        single,
        MergeSettings(weights=[0, 1], objectives=["helpful", "harmless"]),
        progress=False,
    )
    again = merge_experts(
        tiny_base, [tmp_path / "ab", single], tmp_path / "again", MergeSettings(weights=[1, 1]), progress=False
    )
    assert again["objectives"] == ["helpful", "harmless"] and again["anchor"] == [0.375, 0.625]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"weights": [0.5, 0.5]}, r"weights \(--weights\) has 2 values for 3 experts"),
        ({"weights": [0.5, -0.1, 0.6]}, r"weights \(--weights\) must be non-negative"),
        ({"weights": [0, 0, 0]}, r"weights \(--weights\) are all zero"),
        ({"weights": [float("nan"), 1, 1]}, r"weights \(--weights\)\[0\]: input should be a finite number"),
        ({"objectives": ["a", "b", "a"]}, r"objectives \(--objectives\) names an objective twice"),
        ({"rank": 0}, r"merge settings: rank \(--rank\): input should be greater than 0, got 0"),
        ({"method": "slerp"}, r"merge settings: method \(--method\): unknown merge method 'slerp'"),
        ({"method": "ties", "params": {"density": 1.5}}, r"density \(--density\) must lie in \(0, 1\]"),
        ({"objectives": ["a", "b"]}, r"objectives \(--objectives\) has 2 names for 3 experts"),
    ],
)
def test_bad_input_leaves_nothing(tiny_base, three_experts, tmp_path, values, message):
    with pytest.raises(HoEError, match=message):
        settings = MergeSettings.create(**values)
        merge_experts(tiny_base, three_experts[0], tmp_path / "out", settings, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_one_expert_and_mismatched_expert_are_refused(tiny_base, three_experts, tmp_path):
    from conftest import save_tiny_llama

    with pytest.raises(HoEError, match="at least two experts"):
        merge_experts(tiny_base, three_experts[0][:1], tmp_path / "out", progress=False)
    wide = save_tiny_llama(tmp_path / "wide", intermediate_size=80)
    with pytest.raises(HoEError, match=r"tensor 'model\.layers\.0\.mlp\.\w+_proj\.weight' has shape .* in the expert"):
        merge_experts(tiny_base, [three_experts[1][0], wide], tmp_path / "out", progress=False)
    with pytest.raises(HoEError, match="maps .* but the base layer maps"):
        merge_experts(wide, three_experts[0][:2], tmp_path / "out2", progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


@pytest.mark.parametrize("inputs", ["lora", "full"])
def test_method_parameters_reach_the_merge(tiny_base, three_experts, tmp_path, inputs):
    """--density (and the other parameters) must reach the method on the dense path for LoRA and
    for full-model inputs, and --keep on TSV's factored path (guards parameters silently dropped)."""
    from hoe.merging import get_method

    experts, models = three_experts
    sources = experts if inputs == "lora" else models
    weights = [0.5, 0.3, 0.2]
    report = merge_experts(
        tiny_base,
        sources,
        tmp_path / "t",
        MergeSettings(method="ties", weights=weights, rank=64, params={"density": 0.7}),
        progress=False,
    )
    assert report["parameters"]["density"] == 0.7
    merged, adapters = read_lora(tmp_path / "t"), [read_lora(e) for e in experts]
    name = "model.layers.0.self_attn.q_proj"
    deltas = torch.stack([a.modules[name].delta().double() for a in adapters])
    ties = get_method("ties").function
    expected = ties(deltas, torch.tensor(weights, dtype=torch.float64), density=0.7)
    default = ties(deltas, torch.tensor(weights, dtype=torch.float64), density=0.2)
    assert relative_error(merged.modules[name].delta().double(), expected) < 1e-4
    assert relative_error(default, expected) > 0.1  # the parameter matters at this size
    if inputs == "lora":
        # keep 0.02 of 64 → one singular triplet per task (the experts have rank 2; the default 1/3 keeps both)
        merge_experts(
            tiny_base,
            sources,
            tmp_path / "k",
            MergeSettings(method="tsv", rank=64, params={"keep": 0.02}),
            progress=False,
        )
        tsv = get_method("tsv").function(deltas, torch.full((3,), 1 / 3, dtype=torch.float64), keep=0.02)
        assert relative_error(read_lora(tmp_path / "k").modules[name].delta().double(), tsv) < 1e-5
