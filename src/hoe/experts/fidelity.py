"""How much of a fine-tune's behaviour an expert keeps, measured on next-token distributions."""

from __future__ import annotations

from pathlib import Path

import torch

from hoe.checkpoints.chat import encode_prompts
from hoe.checkpoints.loading import load_model, load_tokenizer


def chat_batch(tokenizer, prompts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    return encode_prompts(tokenizer, prompts, truncation=True, max_length=max_length)


@torch.no_grad()
def next_token_log_probs(model, batch) -> torch.Tensor:
    return torch.log_softmax(model(**batch).logits.float(), dim=-1)


def mean_kl(reference: torch.Tensor, other: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over real tokens of KL(reference ‖ other), both given as log-probabilities."""
    kl = (reference.exp() * (reference - other)).sum(-1)
    return float(kl[mask].mean())


def logit_fidelity(
    base: str | Path, finetuned: str | Path, adapter: str | Path, prompts: list[str], max_length: int = 96
) -> dict:
    """Mean per-token KL(fine-tuned ‖ model) for the base and for base + expert, on ``prompts``.

    ``shift_recovered`` = 1 − KL(ft‖expert) / KL(ft‖base): 1 means the expert reproduces the
    fine-tune's next-token distributions, 0 means it does no better than the base.
    """
    from peft import PeftModel

    tokenizer = load_tokenizer(base)
    tokenizer.padding_side = "right"
    batch = chat_batch(tokenizer, prompts, max_length)
    mask = batch["attention_mask"].bool()

    ft_lp = next_token_log_probs(load_model(finetuned), batch)
    base_model = load_model(base)
    base_lp = next_token_log_probs(base_model, batch)
    expert_lp = next_token_log_probs(PeftModel.from_pretrained(base_model, str(adapter)).eval(), batch)
    kl_base, kl_expert = mean_kl(ft_lp, base_lp, mask), mean_kl(ft_lp, expert_lp, mask)
    return {
        "prompts": len(prompts),
        "tokens": int(mask.sum()),
        "kl_ft_base": round(kl_base, 6),
        "kl_ft_expert": round(kl_expert, 6),
        "shift_recovered": round(1 - kl_expert / kl_base, 4) if kl_base > 0 else 1.0,
    }
