"""Supervised fine-tuning: learns, masks the prompt, resumes to the same weights."""

from __future__ import annotations

import pytest
import torch
from conftest import interrupt_at_call

from hoe.checkpoints import CheckpointTensors
from hoe.errors import HoEError
from hoe.training.settings import SFTSettings
from hoe.training.sft import encode_pair, supervised_finetune

PAIRS = [("say hi", "hi!"), ("count", "1 2 3"), ("colour?", "blue"), ("name", "tiny")]


def test_prompt_tokens_are_masked(tiny_chat_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    ids, labels = encode_pair(tokenizer, "say hi", "hi!", max_length=64)
    prompt_length = len(
        tokenizer(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": "say hi"}], add_generation_prompt=True, tokenize=False
            ),
            add_special_tokens=False,
        )["input_ids"]
    )
    assert labels[:prompt_length] == [-100] * prompt_length
    assert labels[prompt_length:] == ids[prompt_length:] and ids[-1] == tokenizer.eos_token_id


def test_loss_falls_and_weights_move(tiny_chat_model, tmp_path):
    log = supervised_finetune(
        tiny_chat_model, PAIRS, tmp_path / "ft", SFTSettings(steps=12, batch_size=4, learning_rate=3e-3), progress=False
    )
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
    flag = field.replace("_", "-")
    with pytest.raises(HoEError, match=rf"^sft settings: {field} \(--{flag}\): input should be greater than 0, got"):
        settings = SFTSettings.create(**{field: value})
        supervised_finetune(tiny_chat_model, PAIRS, tmp_path / "x", settings, progress=False)
    assert not (tmp_path / "x").exists()


def test_lora_fine_tune_saves_the_merged_model_and_a_peft_adapter_and_resumes(tiny_chat_model, tmp_path, monkeypatch):
    """With a LoRA only the adapter learns; the folder holds the merged model and, in adapter/, a
    peft adapter whose delta is exactly merged − base. A killed run resumes to the same adapter."""
    from safetensors.torch import load_file

    from hoe.experts.lora import read_lora
    from hoe.experts.trainable_lora import LoraSettings

    settings, lora = (
        SFTSettings(steps=6, batch_size=2, learning_rate=3e-3, save_every=2),
        LoraSettings(rank=4, alpha=8.0),
    )
    supervised_finetune(tiny_chat_model, PAIRS, tmp_path / "whole", settings, progress=False, lora=lora)
    adapter = read_lora(tmp_path / "whole" / "adapter")
    assert {m.rank for m in adapter.modules.values()} == {4}
    base, merged = CheckpointTensors(tiny_chat_model), CheckpointTensors(tmp_path / "whole")
    name = "model.layers.0.self_attn.q_proj"
    torch.testing.assert_close(
        merged.get(f"{name}.weight") - base.get(f"{name}.weight"), adapter.modules[name].delta(), rtol=1e-4, atol=1e-6
    )
    assert torch.equal(
        merged.get("model.embed_tokens.weight"), base.get("model.embed_tokens.weight")
    )  # frozen outside the LoRA

    restore = interrupt_at_call(monkeypatch, torch.optim.AdamW, "step", 5)
    with pytest.raises(KeyboardInterrupt):
        supervised_finetune(tiny_chat_model, PAIRS, tmp_path / "resumed", settings, progress=False, lora=lora)
    assert (tmp_path / "resumed.partial" / "adapter_config.json").is_file()  # the checkpoint holds the adapter only
    restore()
    supervised_finetune(tiny_chat_model, PAIRS, tmp_path / "resumed", settings, progress=False, lora=lora)
    whole = load_file(str(tmp_path / "whole" / "adapter" / "adapter_model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "adapter" / "adapter_model.safetensors"))
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=1e-5, atol=1e-6)


def test_a_checkpoint_of_a_full_fine_tune_is_not_resumed_as_a_lora(tiny_chat_model, tmp_path, monkeypatch):
    from hoe.experts.trainable_lora import LoraSettings

    settings = SFTSettings(steps=4, batch_size=2, learning_rate=1e-3, save_every=2)
    restore = interrupt_at_call(monkeypatch, torch.optim.AdamW, "step", 3)
    with pytest.raises(KeyboardInterrupt):
        supervised_finetune(tiny_chat_model, PAIRS, tmp_path / "ft", settings, progress=False)
    restore()
    with pytest.raises(HoEError, match="holds a run with other settings"):
        supervised_finetune(
            tiny_chat_model, PAIRS, tmp_path / "ft", settings, progress=False, lora=LoraSettings(rank=4)
        )


def test_prompts_that_leave_no_room_for_the_response_are_refused(tiny_chat_model, tmp_path):
    long_prompt = "tell me " * 40
    with pytest.raises(HoEError, match="every prompt is longer than max-length 16 tokens"):
        supervised_finetune(
            tiny_chat_model,
            [(long_prompt, "ok")],
            tmp_path / "x",
            SFTSettings(steps=1, batch_size=1, max_length=16),
            progress=False,
        )
    assert not (tmp_path / "x").exists()
    with pytest.warns(UserWarning, match="1 of 2 training pairs have no response token within max-length 32"):
        supervised_finetune(
            tiny_chat_model,
            [(long_prompt, "ok"), ("hi", "ok")],
            tmp_path / "y",
            SFTSettings(steps=1, batch_size=2, max_length=32),
            progress=False,
        )
