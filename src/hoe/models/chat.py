"""How a prompt is put to a chat model: its chat template with the assistant turn opened."""

from __future__ import annotations

from typing import Sequence


def uses_template(tokenizer, chat: bool = True) -> bool:
    return chat and bool(getattr(tokenizer, "chat_template", None))


def chat_prompt(tokenizer, prompt: str) -> str:
    """The text the model sees before answering ``prompt`` (the bare prompt without a template)."""
    if not uses_template(tokenizer):
        return prompt
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)


def encode_prompts(tokenizer, prompts: Sequence[str], *, chat: bool = True, **tokenizer_kwargs):
    """A padded batch of prompts. Special tokens are added only when no template did so already."""
    template = uses_template(tokenizer, chat)
    texts = [chat_prompt(tokenizer, p) if template else p for p in prompts]
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not template, **tokenizer_kwargs)
