"""MOD decoding (tokens from softmax(Σ λ_i log π_i)) against the models' own outputs and against
log-probabilities mixed by hand.

Two tiny random models give near-uniform, near-identical next-token distributions, under which a
wrong mixture still samples the same tokens; so most tests use two independently initialised
models whose output heads are scaled up (peaked, clearly different distributions)."""

from __future__ import annotations

import pytest
import torch

from hoe.evaluation.methods.mod import mod_generate

IDS = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])


@pytest.fixture(scope="module")
def peaked(tiny_chat_model):
    """Two different tiny Llamas with sharp next-token distributions."""
    from conftest import tiny_llama_config
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    a = AutoModelForCausalLM.from_pretrained(tiny_chat_model).eval()
    torch.manual_seed(7)
    b = LlamaForCausalLM(tiny_llama_config()).eval()
    with torch.no_grad():
        for model in (a, b):
            model.lm_head.weight.mul_(30.0)
    return a, b


def hand_mixed(models, weights, sequence) -> torch.Tensor:
    """Σ_i w_i log_softmax(π_i(·|sequence)) at the last position, recomputed without a KV cache."""
    with torch.no_grad():
        return sum(w * torch.log_softmax(m(sequence).logits[:, -1].float(), -1) for m, w in zip(models, weights))


def greedy_by_hand(models, weights, ids, steps: int) -> torch.Tensor:
    sequence = ids
    for _ in range(steps):
        sequence = torch.cat([sequence, hand_mixed(models, weights, sequence).argmax(-1, keepdim=True)], dim=1)
    return sequence[:, ids.shape[1] :]


def test_mod_one_hot_equals_greedy_generate(tiny_chat_model, tmp_path):
    from conftest import plant_low_rank
    from transformers import AutoModelForCausalLM, AutoTokenizer

    plant_low_rank(tiny_chat_model, tmp_path / "other", rank=2, scale=0.5)
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    tokenizer.padding_side = "left"
    first = AutoModelForCausalLM.from_pretrained(tiny_chat_model).eval()
    second = AutoModelForCausalLM.from_pretrained(tmp_path / "other").eval()
    batch = tokenizer(["hello there", "a longer prompt here"], return_tensors="pt", padding=True)
    for target, weights in ((first, [1.0, 0.0]), (second, [0.0, 1.0])):
        expected = target.generate(
            **batch, max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        ours = mod_generate(
            [first, second],
            weights,
            batch["input_ids"],
            batch["attention_mask"],
            max_new_tokens=8,
            min_new_tokens=8,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        assert torch.equal(ours, expected[:, batch["input_ids"].shape[1] :])


def test_mod_left_padding_on_a_model_with_absolute_positions():
    """GPT-2 adds learned absolute position embeddings, so (unlike RoPE, which only sees relative
    offsets) it shows whether position ids follow the attention mask across left padding and the
    KV cache (guards positions dropped, shifted, or taken from the cache length)."""
    from conftest import tiny_gpt2

    model = tiny_gpt2()
    ids = torch.tensor([[0, 0, 0, 5, 6], [9, 10, 11, 12, 13]])
    mask = torch.tensor([[0, 0, 0, 1, 1], [1, 1, 1, 1, 1]])
    ours = mod_generate([model, model], [1.0, 0.0], ids, mask, max_new_tokens=6, eos_token_id=None, pad_token_id=0)
    for row, start in ((0, 3), (1, 0)):  # each row answers as it would alone and unpadded
        alone = model.generate(
            input_ids=ids[row : row + 1, start:],
            attention_mask=mask[row : row + 1, start:],
            max_new_tokens=6,
            do_sample=False,
            pad_token_id=0,
        )
        assert ours[row].tolist() == alone[0, 5 - start :].tolist(), row
    with (
        torch.no_grad()
    ):  # positions matter to this model: the same two tokens at positions 2, 3 score very differently
        at_start = model(input_ids=ids[:1, 3:], position_ids=torch.tensor([[0, 1]])).logits
        later = model(input_ids=ids[:1, 3:], position_ids=torch.tensor([[2, 3]])).logits
    assert (at_start - later).abs().max() > 1.0


def test_mod_greedy_follows_the_mixed_log_probabilities(peaked):
    a, b = peaked
    for weights in ([0.3, 0.7], [0.8, 0.2], [1.0, 1.0]):
        tokens = mod_generate(
            [a, b], weights, IDS, torch.ones_like(IDS), max_new_tokens=6, eos_token_id=None, pad_token_id=0
        )
        assert torch.equal(tokens, greedy_by_hand([a, b], weights, IDS, 6)), weights
    mixed = mod_generate(
        [a, b], [0.5, 0.5], IDS, torch.ones_like(IDS), max_new_tokens=6, eos_token_id=None, pad_token_id=0
    )
    alone = [
        mod_generate([a, b], w, IDS, torch.ones_like(IDS), max_new_tokens=6, eos_token_id=None, pad_token_id=0)
        for w in ([1.0, 0.0], [0.0, 1.0])
    ]
    assert not torch.equal(mixed, alone[0]) and not torch.equal(mixed, alone[1])  # the mixture is neither model


@pytest.mark.parametrize("temperature", [None, 0.7])
def test_mod_samples_from_the_mixed_log_probabilities_over_several_steps(peaked, temperature):
    """Each sampled token is drawn from softmax((0.3·log π_a + 0.7·log π_b) / T) with the same
    generator (T = 1 by default)."""
    a, b = peaked
    options = {} if temperature is None else {"temperature": temperature}
    tokens = mod_generate(
        [a, b],
        [0.3, 0.7],
        IDS,
        torch.ones_like(IDS),
        max_new_tokens=8,
        eos_token_id=None,
        pad_token_id=0,
        do_sample=True,
        generator=torch.Generator().manual_seed(11),
        **options,
    )
    generator = torch.Generator().manual_seed(11)
    sequence = IDS
    for step in range(8):
        drawn = torch.multinomial(
            torch.softmax(hand_mixed([a, b], [0.3, 0.7], sequence) / (temperature or 1.0), -1), 1, generator=generator
        )
        assert torch.equal(tokens[:, step], drawn[:, 0]), f"step {step}"
        sequence = torch.cat([sequence, drawn], dim=1)


def test_end_of_sequence_pads_finished_rows_and_stops_when_all_are_done(peaked):
    """Greedy without an end token gives rows T; with eos = T[0, 2], row 0 stops after its third
    token and is padded from then on, the other row goes on until it emits eos itself (or the
    budget ends), and generation stops once every row has finished."""
    a, b = peaked
    free = greedy_by_hand([a, b], [0.5, 0.5], IDS, 8)
    eos = int(free[0, 2])
    tokens = mod_generate(
        [a, b], [0.5, 0.5], IDS, torch.ones_like(IDS), max_new_tokens=8, eos_token_id=eos, pad_token_id=99
    )
    ends = [next((i for i, t in enumerate(row.tolist()) if t == eos), None) for row in free]
    length = 8 if None in ends else max(ends) + 1
    assert tokens.shape == (2, length)
    for row, end in enumerate(ends):
        stop = length if end is None else end + 1
        assert tokens[row, :stop].tolist() == free[row, :stop].tolist()
        assert tokens[row, stop:].tolist() == [99] * (length - stop)
    # a first token that is eos for both rows ends generation after one step (min_new_tokens defaults to 0)
    both = mod_generate(
        [a, b],
        [0.5, 0.5],
        IDS[:1].repeat(2, 1),
        torch.ones(2, 4, dtype=torch.long),
        max_new_tokens=8,
        eos_token_id=int(free[0, 0]),
        pad_token_id=99,
    )
    assert both.tolist() == [[int(free[0, 0])], [int(free[0, 0])]]


def test_min_new_tokens_forbids_eos_before_it_and_only_before_it(peaked):
    a, b = peaked
    free = greedy_by_hand([a, b], [0.5, 0.5], IDS[:1], 8)
    eos = int(free[0, 2])
    allowed = mod_generate(
        [a, b],
        [0.5, 0.5],
        IDS[:1],
        torch.ones(1, 4, dtype=torch.long),
        max_new_tokens=8,
        eos_token_id=eos,
        pad_token_id=99,
        min_new_tokens=2,
    )
    assert allowed[0].tolist() == free[0, :3].tolist()  # eos at step 2 is allowed with min_new_tokens=2
    held = mod_generate(
        [a, b],
        [0.5, 0.5],
        IDS[:1],
        torch.ones(1, 4, dtype=torch.long),
        max_new_tokens=8,
        eos_token_id=eos,
        pad_token_id=99,
        min_new_tokens=3,
    )
    assert held.shape[1] > 3 and int(held[0, 2]) != eos and held[0, :2].tolist() == free[0, :2].tolist()
    later = int(free[0, 1])
    if later != eos:
        forbidden = mod_generate(
            [a, b],
            [0.5, 0.5],
            IDS[:1],
            torch.ones(1, 4, dtype=torch.long),
            max_new_tokens=4,
            eos_token_id=later,
            pad_token_id=99,
            min_new_tokens=2,
        )
        assert int(forbidden[0, 1]) != later and forbidden.shape[1] >= 3


def test_a_model_with_weight_zero_is_never_run(peaked):
    """MOD costs one forward pass per model with a positive weight; a zero weight costs none."""
    a, _ = peaked

    def never(*args, **kwargs):
        raise AssertionError("a model with weight 0 was run")

    tokens = mod_generate(
        [a, never], [1.0, 0.0], IDS, torch.ones_like(IDS), max_new_tokens=3, eos_token_id=None, pad_token_id=0
    )
    assert tokens.shape == (2, 3)
    with pytest.raises(ValueError, match="^1 weights for 2 models$"):
        mod_generate([a, a], [1.0], IDS, torch.ones_like(IDS), max_new_tokens=1, eos_token_id=None, pad_token_id=0)


def test_the_mod_method_decodes_with_the_run_s_settings(peaked, monkeypatch):
    """The ``mod`` method hands mod_generate the point's λ, the run's decoding and the tokenizer's
    ids; under timing (``forced_length``) it decodes greedily for exactly that many tokens."""
    from types import SimpleNamespace

    from hoe.evaluation.methods import Point
    from hoe.evaluation.methods import mod as mod_module
    from hoe.evaluation.settings import Decoding

    calls = []
    monkeypatch.setattr(mod_module, "mod_generate", lambda *args, **kwargs: calls.append((args, kwargs)) or "tokens")
    tokenizer = SimpleNamespace(eos_token_id=2, pad_token_id=0)
    context = SimpleNamespace(
        decoding=Decoding(max_new_tokens=7, do_sample=True, temperature=0.5),
        tokenizer=tokenizer,
        forced_length=None,
        expert_models=lambda: list(peaked),
    )
    method = mod_module.MODMethod(context)
    point = Point("mod", "0.3-0.7", [0.3, 0.7])
    method.setup(point)
    inputs = {"input_ids": IDS, "attention_mask": torch.ones_like(IDS)}
    assert method.generate(inputs, point) == "tokens"
    (models, weights, ids, mask), options = calls[-1]
    assert list(models) == list(peaked) and weights == [0.3, 0.7] and ids is IDS and mask is inputs["attention_mask"]
    assert options == {
        "max_new_tokens": 7,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "do_sample": True,
        "temperature": 0.5,
        "min_new_tokens": 0,
    }
    context.forced_length = 5
    method.generate(inputs, point)
    assert calls[-1][1] == {
        "max_new_tokens": 5,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "do_sample": False,
        "temperature": 0.5,
        "min_new_tokens": 5,
    }
    assert mod_module.MODMethod.name == "mod" and mod_module.MODMethod.per_preference
