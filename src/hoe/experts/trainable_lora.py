"""A fresh trainable peft LoRA on a model: one recipe for ``make-expert --lora``, PPO's LoRA policy
and the MORLHF baseline, so their adapters are alike (every linear layer of the blocks, no dropout)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from hoe.errors import HoEError
from hoe.settings import flag_name

ADAPTER_DIR = "adapter"  # where a LoRA-trained expert keeps its peft adapter, beside the merged model
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraSettings:
    rank: int = 16
    alpha: float = 32.0

    def validate(self) -> None:
        if self.rank <= 0:
            raise HoEError(f"{flag_name('lora_rank')} must be positive, got {self.rank}")
        if not self.alpha > 0:
            raise HoEError(f"LoRA alpha must be positive, got {self.alpha}")

    def peft_config(self, model):
        """peft's ``LoraConfig`` for the model: the usual Llama projections where present, else every
        linear layer but the head."""
        from peft import LoraConfig

        present = {
            name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)
        }
        targets = [t for t in LORA_TARGETS if t in present] or sorted(present - {"lm_head"})
        return LoraConfig(r=self.rank, lora_alpha=self.alpha, target_modules=targets, lora_dropout=0.0, bias="none")


def attach_lora(model, settings: LoraSettings, seed: int = 0):
    """``model`` wrapped in a new peft LoRA (seeded initialisation); only the adapter trains."""
    from peft import get_peft_model

    torch.manual_seed(seed)
    return get_peft_model(model, settings.peft_config(model))


def save_adapter_and_merge(model, folder: Path):
    """Write a trained peft model's adapter to ``folder/adapter`` and return the base with the
    adapter merged in (to be saved beside it as the full expert model)."""
    model.save_pretrained(folder / ADAPTER_DIR, safe_serialization=True)
    return model.merge_and_unload()
