"""Supervised fine-tuning: learns, masks the prompt, resumes to the same weights."""

from __future__ import annotations

import pytest
import torch

from conftest import interrupt_at_call
from hoe.errors import HoEError
from hoe.models import CheckpointTensors
from hoe.training import SFTSettings, supervised_finetune
from hoe.training.sft import encode_pair

PAIRS = [("say hi", "hi!"), ("count", "1 2 3"), ("colour?", "blue"), ("name", "tiny")]


def test_prompt_tokens_are_masked(tiny_chat_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    ids, labels = encode_pair(tokenizer, "say hi", "hi!", max_length=64)
    prompt_length = len(tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": "say hi"}], add_generation_prompt=True, tokenize=False), add_special_tokens=False)["input_ids"])
    assert labels[:prompt_length] == [-100] * prompt_length
    assert labels[prompt_length:] == ids[prompt_length:] and ids[-1] == tokenizer.eos_token_id


def test_loss_falls_and_weights_move(tiny_chat_model, tmp_path):
    log = supervised_finetune(tiny_chat_model, PAIRS, tmp_path / "ft", SFTSettings(steps=12, batch_size=4, learning_rate=3e-3), progress=False)
    assert log["losses"][-1] < log["losses"][0]
    before, after = CheckpointTensors(tiny_chat_model), CheckpointTensors(tmp_path / "ft")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(before.get(name), after.get(name))
    assert (tmp_path / "ft" / "sft_log.json").is_file() and not (tmp_path / "ft.partial").exists()


def test_interrupted_run_resumes_to_same_weights(tiny_chat_model, tmp_path, monkeypatch):
    settings = SFTSettings(steps=6, batch_size=2, learning_rate=1e-3, save_every=2)
    supervised_finetune(tiny_chat_model, PAIRS, tmp_path / "whole", settings, progress=False)

    restore = interrupt_at_call(monkeypatch, torch.optim.AdamW, "step", 5)
    with pytest.raises(KeyboardInterrupt):
        supervised_finetune(tiny_chat_model, PAIRS, tmp_path / "resumed", settings, progress=False)
    assert (tmp_path / "resumed.partial").is_dir() and not (tmp_path / "resumed").exists()
    restore()
    log = supervised_finetune(tiny_chat_model, PAIRS, tmp_path / "resumed", settings, progress=False)
    assert log["step"] == 6
    whole, resumed = CheckpointTensors(tmp_path / "whole"), CheckpointTensors(tmp_path / "resumed")
    for name in whole.names():
        torch.testing.assert_close(resumed.get(name), whole.get(name), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("field, value", [("steps", 0), ("batch_size", -1), ("learning_rate", 0.0)])
def test_bad_settings(tiny_chat_model, tmp_path, field, value):
    settings = SFTSettings(**{field: value})
    with pytest.raises(HoEError, match="must be positive"):
        supervised_finetune(tiny_chat_model, PAIRS, tmp_path / "x", settings, progress=False)
    assert not (tmp_path / "x").exists()
