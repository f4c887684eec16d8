"""MOD decoding: a one-hot λ reproduces that model's own greedy generation."""

from __future__ import annotations

import torch

from hoe.baselines import mod_generate


def test_mod_one_hot_equals_greedy_generate(tiny_chat_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from conftest import plant_low_rank

    plant_low_rank(tiny_chat_model, tmp_path / "other", rank=2, scale=0.5)
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    tokenizer.padding_side = "left"
    first = AutoModelForCausalLM.from_pretrained(tiny_chat_model).eval()
    second = AutoModelForCausalLM.from_pretrained(tmp_path / "other").eval()
    batch = tokenizer(["hello there", "a longer prompt here"], return_tensors="pt", padding=True)
    for target, weights in ((first, [1.0, 0.0]), (second, [0.0, 1.0])):
        expected = target.generate(**batch, max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        ours = mod_generate([first, second], weights, batch["input_ids"], batch["attention_mask"], max_new_tokens=8,
                            min_new_tokens=8, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        assert torch.equal(ours, expected[:, batch["input_ids"].shape[1]:])


def test_mod_mixes_log_probabilities(tiny_chat_model, tmp_path):
    from transformers import AutoModelForCausalLM

    from conftest import plant_low_rank

    plant_low_rank(tiny_chat_model, tmp_path / "other", rank=2, scale=0.5)
    a = AutoModelForCausalLM.from_pretrained(tiny_chat_model).eval()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "other").eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    mask = torch.ones_like(ids)
    token = mod_generate([a, b], [0.3, 0.7], ids, mask, max_new_tokens=1, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        mixed = 0.3 * torch.log_softmax(a(ids).logits[:, -1], -1) + 0.7 * torch.log_softmax(b(ids).logits[:, -1], -1)
    assert int(token[0, 0]) == int(mixed.argmax(-1))


def test_mod_samples_from_the_mixed_log_probabilities_over_several_steps(tiny_chat_model, tmp_path):
    """Sampling for 8 steps from two prompts, recomputed here without a KV cache: each token is
    drawn from softmax((0.3·log π_a + 0.7·log π_b) / T) with the same generator (guards mixing
    probabilities instead of log-probabilities, and the cache bookkeeping)."""
    from transformers import AutoModelForCausalLM

    from conftest import plant_low_rank

    plant_low_rank(tiny_chat_model, tmp_path / "other", rank=2, scale=0.5)
    a = AutoModelForCausalLM.from_pretrained(tiny_chat_model).eval()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "other").eval()
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    tokens = mod_generate([a, b], [0.3, 0.7], ids, torch.ones_like(ids), max_new_tokens=8, eos_token_id=None, pad_token_id=0,
                          do_sample=True, temperature=0.7, generator=torch.Generator().manual_seed(11))
    generator = torch.Generator().manual_seed(11)
    sequence = ids
    with torch.no_grad():
        for step in range(8):
            mixed = 0.3 * torch.log_softmax(a(sequence).logits[:, -1], -1) + 0.7 * torch.log_softmax(b(sequence).logits[:, -1], -1)
            drawn = torch.multinomial(torch.softmax(mixed / 0.7, -1), 1, generator=generator)
            assert torch.equal(tokens[:, step], drawn[:, 0]), f"step {step}"
            sequence = torch.cat([sequence, drawn], dim=1)
