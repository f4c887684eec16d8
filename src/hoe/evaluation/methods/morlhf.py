"""``morlhf``: MORLHF, one LoRA per λ trained by PPO with linear scalarisation Σ λ_i R_i: the
expensive upper bound, a training run per preference (cached and resumable in the run's work folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hoe.checkpoints.chat import fit_prompts
from hoe.data import load_prompts
from hoe.evaluation.methods.common import AdapterPerPreferenceMethod, Context, register
from hoe.evaluation.preference_sets import preference_label
from hoe.rl.config import TrainConfig
from hoe.rl.lora_ppo import train_lora_ppo


def morlhf_adapter(context: Context, preference: np.ndarray) -> Path:
    """A LoRA trained by PPO on Σ λ_i R_i (linear scalarisation) for this λ; made once, resumable."""
    out = context.work / "morlhf" / preference_label(preference)
    if (out / "adapter_config.json").is_file():
        return out
    config = context.morlhf or TrainConfig(trainable="lora", scalarisation="linear")
    prompts = load_prompts(config.prompts, "train", limit=config.prompt_count)
    prompts, _ = fit_prompts(
        context.tokenizer, prompts, None, config.max_new_tokens, max_prompt_tokens=config.max_prompt_tokens
    )
    train_lora_ppo(
        context.load_base(),
        context.tokenizer,
        preference,
        context.bundle.objectives,
        context.scorers,
        config,
        prompts,
        out,
        merge=False,
        device=context.device,
        progress=context.progress,
    )
    return out


@register
class MORLHFMethod(AdapterPerPreferenceMethod):
    """MORLHF: a LoRA trained for each λ with linear scalarisation, folded into the base."""

    name = "morlhf"
    needs_experts = False

    def adapter(self, preference: np.ndarray) -> Path:
        return morlhf_adapter(self.context, preference)
