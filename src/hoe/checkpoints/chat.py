"""How a prompt is put to a chat model: its chat template with the assistant turn opened."""

from __future__ import annotations

from typing import Sequence

from hoe.checkpoints.loading import resolve_checkpoint
from hoe.errors import HoEError


def uses_template(tokenizer, chat: bool = True) -> bool:
    return chat and bool(getattr(tokenizer, "chat_template", None))


def chat_prompt(tokenizer, prompt: str) -> str:
    """The text the model sees before answering ``prompt`` (the bare prompt without a template)."""
    if not uses_template(tokenizer):
        return prompt
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )


def encode_prompts(tokenizer, prompts: Sequence[str], *, chat: bool = True, **tokenizer_kwargs):
    """A padded batch of prompts. Special tokens are added only when no template did so already."""
    template = uses_template(tokenizer, chat)
    texts = [chat_prompt(tokenizer, p) if template else p for p in prompts]
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not template, **tokenizer_kwargs)


def context_length(model_ref) -> int | None:
    """The model's context window from its config (no weights are read)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_checkpoint(model_ref))
    return getattr(config, "max_position_embeddings", None)


def fit_prompts(
    tokenizer,
    prompts: Sequence[str],
    context: int | None,
    new_tokens: int,
    chat: bool = True,
    max_prompt_tokens: int | None = None,
) -> tuple[list[str], int]:
    """Prompts cut from the left (the latest turn is kept) so prompt and answer fit ``context``
    and the prompt text keeps at most ``max_prompt_tokens``; returns them and how many were cut."""
    if context is None and max_prompt_tokens is None:
        return list(prompts), 0
    overhead = len(encode_prompts(tokenizer, [""], chat=chat)["input_ids"][0])
    limits = ([context - new_tokens - overhead] if context is not None else []) + (
        [max_prompt_tokens] if max_prompt_tokens else []
    )
    budget = min(limits)
    if budget <= 0:
        raise HoEError(
            f"the model's context ({context} tokens) leaves no room for a prompt and {new_tokens} new tokens"
        )
    fitted, cut = [], 0
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if len(ids) > budget:
            prompt, cut = tokenizer.decode(ids[-budget:], skip_special_tokens=True), cut + 1
        fitted.append(prompt)
    return fitted, cut
