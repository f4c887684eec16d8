"""Exactness of the HoE model against peft and hand-built mixtures on a tiny model."""

from __future__ import annotations

import pytest
import torch
from conftest import interrupt_at_call, relative_error

from hoe.errors import HoEError
from hoe.experts import read_lora
from hoe.model import HoEModel

IDS = torch.randint(5, 100, (3, 10), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def hoe(bundle_dir):
    return HoEModel.from_bundle(bundle_dir)


def _logits(hoe, **routing):
    with torch.no_grad():
        return hoe(input_ids=IDS, **routing).logits


def _static_mix(tiny_chat_model, bundle_dir, weights: dict[str, float]):
    """Base + Σ w_k B_k A_k, built by hand from the expert folders."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(tiny_chat_model).eval()
    with torch.no_grad():
        for name, weight in weights.items():
            for module_name, lora in read_lora(bundle_dir / "experts" / name).modules.items():
                model.get_submodule(module_name).weight += weight * lora.delta()
        return model(input_ids=IDS).logits


def test_anchor_of_an_expert_equals_peft_merged(hoe, tiny_chat_model, bundle_dir):
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    peft_model = PeftModel.from_pretrained(
        LlamaForCausalLM.from_pretrained(tiny_chat_model), str(bundle_dir / "experts" / "helpful")
    )
    merged = peft_model.merge_and_unload().eval()
    with torch.no_grad():
        expected = merged(input_ids=IDS).logits
    assert relative_error(_logits(hoe, preference={"helpful": 1.0}), expected) < 1e-4
    assert hoe.describe_routing([1, 0]) == {"helpful": 1.0}


def test_static_mix_between_anchors(hoe, tiny_chat_model, bundle_dir):
    # λ = (0.8, 0.2): between 'helpful' (1,0) and 'balanced' (.5,.5) → 0.6·helpful + 0.4·balanced
    assert hoe.describe_routing([0.8, 0.2]) == pytest.approx({"helpful": 0.6, "balanced": 0.4})
    expected = _static_mix(tiny_chat_model, bundle_dir, {"helpful": 0.6, "balanced": 0.4})
    assert relative_error(_logits(hoe, preference=[0.8, 0.2]), expected) < 1e-4


def test_untrained_router_is_the_static_mix_of_its_anchor(hoe, tiny_chat_model, bundle_dir):
    routing = hoe.describe_routing([0.25, 0.75])
    assert routing == {"mostly-harmless": 1.0}
    covers = hoe.bundle.routers[0].covers
    initial = hoe.bundle.routers[0].training["initial_weights"]
    assert sorted(covers) == ["balanced", "harmless"] and initial == pytest.approx([0.5, 0.5])
    expected = _static_mix(tiny_chat_model, bundle_dir, dict(zip(covers, initial)))
    assert relative_error(_logits(hoe, preference=[0.25, 0.75]), expected) < 1e-4


def test_mixed_batch_equals_rows_alone(hoe):
    preferences = [[1, 0], [0.25, 0.75], {"helpful": 0.3, "harmless": 0.7}]
    together = _logits(hoe, preferences=preferences)
    for row, preference in enumerate(preferences):
        with torch.no_grad():
            alone = hoe(input_ids=IDS[row : row + 1], preference=preference).logits
        assert relative_error(together[row : row + 1], alone) < 1e-5


def test_normalisation_and_named_preferences(hoe):
    torch.testing.assert_close(
        _logits(hoe, preference=[2, 6]), _logits(hoe, preference={"helpful": 0.25, "harmless": 0.75})
    )


@pytest.mark.parametrize(
    "preference, message",
    [
        ([1, 0, 0], "preference has 3 values but the bundle has 2 objectives"),
        ({"funny": 1}, "unknown objective 'funny'"),
        ([-0.5, 1.5], "must be non-negative"),
        ([float("nan"), 1], "must be finite"),
        ([0, 0], "all zero"),
        ("helpful=x", "cannot read preference"),
    ],
)
def test_bad_preferences(hoe, preference, message):
    with pytest.raises(HoEError, match=message):
        hoe(input_ids=IDS, preference=preference)


def test_preference_count_must_match_batch(hoe):
    with pytest.raises(HoEError, match="2 preferences for a batch of 3 rows"):
        hoe(input_ids=IDS, preferences=[[1, 0], [0, 1]])
    with pytest.raises(HoEError, match="no preference given"):
        hoe(input_ids=IDS)


def test_zero_gate_experts_are_skipped(hoe, monkeypatch):
    import hoe.model.state as state

    layer = next(iter(hoe.layers.values()))
    with hoe.preference([1, 0]):
        plan = hoe.state.plan_for(layer, torch.zeros(3, 1, layer.in_features))
        assert plan.columns is None  # tiny experts: a gather would cost more than it saves
    monkeypatch.setattr(state, "SKIP_MIN_ELEMENTS", 1)
    with hoe.preference([1, 0]):
        plan = hoe.state.plan_for(layer, torch.zeros(3, 1, layer.in_features))
        assert plan.columns is not None and plan.columns.numel() == layer.ranks[0]
        skipped = hoe(input_ids=IDS, preference=[1, 0]).logits
    monkeypatch.setattr(state, "SKIP_MIN_ELEMENTS", 1 << 40)
    torch.testing.assert_close(skipped, hoe(input_ids=IDS, preference=[1, 0]).logits)


def test_generate_per_row_preferences(hoe):
    texts = hoe.generate(["hi", "tell me"], preferences=[[1, 0], [0, 1]], max_new_tokens=5, do_sample=False)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    alone = hoe.generate(["tell me"], preference=[0, 1], max_new_tokens=5, do_sample=False)
    assert texts[1] == alone[0]


def test_parameter_counts(hoe):
    counts = hoe.parameter_counts()
    layers = list(hoe.layers.values())
    assert counts["routers"] == sum(2 * (l.in_features + 1) for l in layers)
    assert counts["lora_experts"] == sum(3 * 3 * (l.in_features + l.out_features) for l in layers)


def test_trained_router_logits_agree_between_training_and_inference_paths(bundle_dir):
    """The stacked inference copy of the routers must give what the trainable parameters give."""
    model = HoEModel.from_bundle(bundle_dir)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for layer in model.layers.values():
            layer.router_weight.copy_(torch.randn(layer.router_weight.shape, generator=generator))
    model.sync_routers()
    with torch.no_grad():
        inference = model(input_ids=IDS, preference=[0.25, 0.75]).logits
    with torch.enable_grad():
        training = model(input_ids=IDS, preference=[0.25, 0.75]).logits
    assert relative_error(inference, training.detach()) < 1e-5
    static = model(input_ids=IDS, preference=[0.5, 0.5]).logits.detach()
    assert relative_error(inference, static) > 1e-3  # the trained router really changes the output


def test_batch_generation_resumes_to_the_same_answers(hoe, tmp_path, monkeypatch):
    from hoe.model.batch import generate_rows

    def requests():
        return [{"prompt": f"question {i}", "preference": {"helpful": i / 5, "harmless": 1 - i / 5}} for i in range(5)]

    options = {"max_new_tokens": 4, "do_sample": True, "temperature": 1.0}
    whole = generate_rows(
        hoe, requests(), options, batch_size=2, seed=3, output=tmp_path / "whole.jsonl", progress=False
    )
    restore = interrupt_at_call(monkeypatch, type(hoe), "generate", 2)
    with pytest.raises(KeyboardInterrupt):
        generate_rows(hoe, requests(), options, batch_size=2, seed=3, output=tmp_path / "resumed.jsonl", progress=False)
    assert not (tmp_path / "resumed.jsonl").exists() and (tmp_path / "resumed.jsonl.partial").is_file()
    restore()
    resumed = generate_rows(
        hoe, requests(), options, batch_size=2, seed=3, output=tmp_path / "resumed.jsonl", progress=False
    )
    assert [r["response"] for r in resumed] == [r["response"] for r in whole]
    assert (tmp_path / "resumed.jsonl").read_text() == (tmp_path / "whole.jsonl").read_text()
    assert not (tmp_path / "resumed.jsonl.partial").exists()


def test_partial_file_of_other_requests_is_refused(hoe, tmp_path):
    from hoe.model.batch import generate_rows

    (tmp_path / "out.jsonl.partial").write_text(
        '{"prompt": "something else", "preference": {"helpful": 1.0, "harmless": 0.0}}\n'
    )
    with pytest.raises(HoEError, match="holds answers to other requests"):
        generate_rows(
            hoe,
            [{"prompt": "hi", "preference": {"helpful": 1.0, "harmless": 0.0}}],
            {"max_new_tokens": 2},
            batch_size=1,
            seed=0,
            output=tmp_path / "out.jsonl",
            progress=False,
        )


def test_beams_and_several_returns_keep_each_rows_preference(hoe):
    """With num_beams=2 and num_return_sequences=2 the batch grows to 4 rows, each prompt's copies
    next to each other; every copy must keep its prompt's λ (guards repeat_interleave → repeat)."""
    options = dict(num_beams=2, num_return_sequences=2, max_new_tokens=6, do_sample=False)
    prompts, preferences = ["hi", "yo"], [[1, 0], [0, 1]]  # equal lengths: no padding differences
    together = hoe.generate(prompts, preferences=preferences, **options)
    alone = [
        text for prompt, lam in zip(prompts, preferences) for text in hoe.generate([prompt], preference=lam, **options)
    ]
    assert len(together) == 4 and together == alone
    swapped = [
        text
        for prompt, lam in zip(prompts, preferences[::-1])
        for text in hoe.generate([prompt], preference=lam, **options)
    ]
    assert swapped != alone  # the preference really changes these answers


def test_a_base_without_a_tokenizer_is_one_line_before_any_weight_loads(bundle_dir, tmp_path, monkeypatch):
    import json
    import shutil

    import hoe.model.hoe_model as hoe_model

    base = json.loads((bundle_dir / "hoe.json").read_text())["base_model"]
    bare = tmp_path / "bare-base"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(f"{base}/{name}", bare / name)
    bundle = tmp_path / "bundle"
    shutil.copytree(bundle_dir, bundle)
    spec = json.loads((bundle / "hoe.json").read_text())
    (bundle / "hoe.json").write_text(json.dumps({**spec, "base_model": str(bare)}))
    monkeypatch.setattr(
        hoe_model, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("weights loaded"))
    )
    with pytest.raises(
        HoEError,
        match=r"^model '.*bare-base' has no tokenizer: '.*bare-base' holds none of tokenizer.json, "
        r"tokenizer_config.json, tokenizer.model, vocab.json \(save the tokenizer beside the weights\)$",
    ):
        HoEModel.from_bundle(bundle)
