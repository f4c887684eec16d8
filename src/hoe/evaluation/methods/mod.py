"""MOD (Shi et al. 2024, "Decoding-Time Language Model Alignment with Multiple Objectives"):
the next token is drawn from softmax(Σ_i λ_i log π_i(·|x)) over N aligned models, each with its
own KV cache, so every token costs N forward passes."""

from __future__ import annotations

from typing import Sequence

import torch

from hoe.evaluation.methods.common import Method, Point, register


def mod_generate(
    models: Sequence,
    weights: Sequence[float],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    min_new_tokens: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Generate from the λ-weighted product of ``models`` (left-padded batch); returns the new tokens."""
    with torch.no_grad():  # a context, not a decorator: mutation testing skips decorated functions
        if len(models) != len(weights):
            raise ValueError(f"{len(weights)} weights for {len(models)} models")
        active = [(m, float(w)) for m, w in zip(models, weights) if w > 0]
        batch = input_ids.shape[0]
        mask = attention_mask.clone()
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        caches = [None] * len(active)
        step_ids, step_positions = input_ids, positions
        finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        produced = []
        for step in range(max_new_tokens):
            combined = None
            for index, (model, weight) in enumerate(active):
                out = model(
                    input_ids=step_ids,
                    attention_mask=mask,
                    position_ids=step_positions,
                    past_key_values=caches[index],
                    use_cache=True,
                )
                caches[index] = out.past_key_values
                log_probs = torch.log_softmax(out.logits[:, -1].float(), dim=-1) * weight
                combined = log_probs if combined is None else combined + log_probs
            if step < min_new_tokens and eos_token_id is not None:
                combined[:, eos_token_id] = -float("inf")
            if do_sample:
                probabilities = torch.softmax(combined / temperature, dim=-1)
                token = torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
            else:
                token = combined.argmax(-1)
            token = torch.where(finished, torch.full_like(token, pad_token_id), token)
            produced.append(token)
            if eos_token_id is not None:
                finished |= token == eos_token_id
                if bool(finished.all()):
                    break
            step_ids = token[:, None]
            step_positions = step_positions[:, -1:] + 1
            mask = torch.cat([mask, torch.ones(batch, 1, dtype=mask.dtype, device=mask.device)], dim=1)
        return torch.stack(produced, dim=1)


@register
class MODMethod(Method):
    """MOD: the next token from Σ λ_i log π_i over the expert models, N passes per token."""

    name = "mod"

    def setup(self, point: Point) -> None:
        self.models = self.context.expert_models()

    def generate(self, inputs: dict[str, torch.Tensor], point: Point) -> torch.Tensor:
        decoding, tokenizer, forced = self.context.decoding, self.context.tokenizer, self.context.forced_length
        return mod_generate(
            self.models,
            point.preference,
            inputs["input_ids"],
            inputs["attention_mask"],
            max_new_tokens=forced or decoding.max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            do_sample=decoding.do_sample and forced is None,
            temperature=decoding.temperature,
            min_new_tokens=forced or 0,
        )
