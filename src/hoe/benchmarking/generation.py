"""Answers of a plain transformers model to a list of prompts, batch by batch, as the benchmarks that
compare models need them: greedy unless asked to sample, stripped, in prompt order, with the
milliseconds per decoding step (the rank curve compares them side by side). The tokenizer pads on
the left (the caller sets it), so a batch's new tokens all start at the same column."""

from __future__ import annotations

import time
from typing import NamedTuple

import torch
from tqdm import tqdm

from hoe.checkpoints.chat import encode_prompts


class Answers(NamedTuple):
    texts: list[str]
    ms_per_step: float


@torch.no_grad()
def answer_prompts(
    model, tokenizer, prompts: list[str], *, new_tokens: int = 64, batch: int = 16, sample: bool = False, desc=None
) -> Answers:
    """Each prompt's answer (``sample``: temperature 1, no nucleus cut); ``desc`` shows a progress bar."""
    texts, steps, seconds = [], 0, 0.0
    starts = range(0, len(prompts), batch)
    for start in tqdm(starts, desc=desc, unit="batch") if desc else starts:
        inputs = encode_prompts(tokenizer, prompts[start : start + batch])
        began = time.perf_counter()
        out = model.generate(
            **inputs,
            max_new_tokens=new_tokens,
            do_sample=sample,
            pad_token_id=tokenizer.pad_token_id,
            **({"temperature": 1.0, "top_p": 1.0} if sample else {}),
        )
        seconds += time.perf_counter() - began
        new = out[:, inputs["input_ids"].shape[1] :]
        steps += new.shape[1]
        texts += [text.strip() for text in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return Answers(texts, 1000 * seconds / max(steps, 1))
