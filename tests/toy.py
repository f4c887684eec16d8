"""A toy HoE bundle whose rewards are computable: two LoRA experts trained on the tiny chat
model to answer with letters from one of two disjoint sets (tests/rl/toy_rewards.py scores the
share of each set)."""

from __future__ import annotations

import random
from pathlib import Path

import torch

FIRST_LETTERS, SECOND_LETTERS = "abcdefghijklm", "nopqrstuvwxyz"
SCORERS = {"first": "py:toy_rewards:first_letters", "second": "py:toy_rewards:second_letters"}


def train_letter_lora(base: Path, letters: str, out: Path, steps: int = 120, seed: int = 0, scale: float = 1.0) -> Path:
    """A rank-8 peft LoRA that makes the tiny model answer 'say N' with ``letters`` (its delta
    multiplied by ``scale`` afterwards: an over-strong expert dominates a static mix)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(
            r=8,
            lora_alpha=8,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            lora_dropout=0.0,
        ),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        texts = []
        for _ in range(8):
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": f"say {rng.randrange(400)}"}], add_generation_prompt=True, tokenize=False
            )
            texts.append(prompt + "".join(rng.choice(letters) for _ in range(20)) + tokenizer.eos_token)
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(out)
    if scale != 1.0:
        from safetensors.torch import load_file, save_file

        weights = load_file(str(out / "adapter_model.safetensors"))
        save_file(
            {k: v * scale if "lora_B" in k else v for k, v in weights.items()}, str(out / "adapter_model.safetensors")
        )
    return out


def build_toy_bundle(root: Path, base: Path, routers: str = "", second_scale: float = 1.0) -> Path:
    """Bundle with the two letter experts (anchors [1, 0] and [0, 1]) and a prompt file."""
    from hoe.pipeline.build import build_bundle

    root.mkdir(parents=True, exist_ok=True)
    train_letter_lora(base, FIRST_LETTERS, root / "lora-first", seed=1)
    train_letter_lora(base, SECOND_LETTERS, root / "lora-second", seed=2, scale=second_scale)
    (root / "prompts.txt").write_text("".join(f"say {i}\n" for i in range(400)))
    (root / "recipe.yaml").write_text(f"""
base: {base}
objectives: [first, second]
rank: 8
experts:
  - name: first
    anchor: [1, 0]
    lora: lora-first
  - name: second
    anchor: [0, 1]
    lora: lora-second
{routers}""")
    build_bundle(root / "recipe.yaml", root / "bundle", progress=False)
    return root / "bundle"
