"""Router training learns: on a toy bundle whose rewards are computable (shares of two letter
sets), where an over-strong expert dominates the static mix, PPO with Tchebycheff + OMD at the
middle anchor raises the Tchebycheff objective well above the untrained router's."""

from __future__ import annotations

import json

import numpy as np
import torch
import toy_rewards
from toy import SCORERS, build_toy_bundle

from hoe.model import HoEModel
from hoe.pipeline import train_router
from hoe.rl import load_config


def tchebycheff_on_fresh_prompts(
    model: HoEModel, routing: dict[int, float], training: dict
) -> tuple[float, np.ndarray]:
    prompts = [f"say {i}" for i in range(300, 364)]  # not among the training prompts
    torch.manual_seed(123)
    model.state.set([routing])
    try:
        inputs = model.chat_inputs(prompts)
        with torch.no_grad():
            out = model.model.generate(
                **inputs, max_new_tokens=16, do_sample=True, top_k=0, pad_token_id=model.tokenizer.pad_token_id
            )
    finally:
        model.state.clear()
    texts = model.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    raw = np.array(
        [np.mean(toy_rewards.first_letters(prompts, texts)), np.mean(toy_rewards.second_letters(prompts, texts))]
    )
    norm = training["normalisation"]
    normalised = (raw - np.array([norm["first"][0], norm["second"][0]])) / np.array(
        [norm["first"][1], norm["second"][1]]
    )
    return float(np.min(0.5 * (normalised - np.array(training["ideal"])))), raw


def test_router_training_beats_the_static_mix(tmp_path):
    from conftest import save_tiny_llama, save_tiny_tokenizer

    base = save_tiny_llama(tmp_path / "base", initializer_range=0.3)  # logits with room to be peaked
    save_tiny_tokenizer(base)
    bundle = build_toy_bundle(tmp_path, base, second_scale=2.0)
    config = load_config(
        None,
        scorers=SCORERS,
        prompts=f"file:{tmp_path / 'prompts.txt'}",
        prompt_count=200,
        batch_size=32,
        max_new_tokens=16,
        steps=30,
        learning_rate=5e-4,
        kl_coef=0.05,
        calibration_prompts=32,
        checkpoint_every=100,
    )
    summary = train_router(bundle, [0.5, 0.5], config, progress=False)
    training = json.loads((bundle / "hoe.json").read_text())["routers"][0]["training"]
    model = HoEModel.from_bundle(bundle)
    static, static_raw = tchebycheff_on_fresh_prompts(model, {0: 0.5, 1: 0.5}, training)
    trained, trained_raw = tchebycheff_on_fresh_prompts(model, {2: 1.0}, training)
    assert trained > static + 0.15, (static, static_raw, trained, trained_raw, summary["last"])
    assert trained_raw[0] > static_raw[0] + 0.1  # the lagging objective is the one that rose
