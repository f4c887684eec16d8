"""Make the benign refusal pairs (``packaged:hh-helpful-refusals``) that measure whether a harmlessness
head rewards refusing a harmless request.

Why: a head trained on HH-RLHF harmless-base pairs alone learns "a refusal is harmless", whatever the
request. Experts optimised against it refused 94% of benign requests (benchmarks/experts: the
distilled harmlessness expert). HH-RLHF's harmless pairs hold almost no benign requests, so nothing
in them says that refusing a harmless request is worse than answering it. These pairs say so; run.py
reports how the shipped head judges them and what training on them costs (the shipped head does not
train on them).

For each HH-RLHF helpful prompt (DOVE's val_sft file, the prompts of ``packaged:hh-helpful-sft``),
the embedded model answers it twice, greedy, 64 new tokens: once as asked (the chosen reply) and
once told to decline (the rejected reply; a decline that does not read as a refusal is sampled again,
temperature 1, up to three more times). A pair is kept only when the answer is not refusal-like
and the refusal is. The label is a rule ("answer a benign request rather than refuse it"), not a
person's judgement; ATTRIBUTION.md says so.

    .venv/bin/python benchmarks/rewards/refusal_pairs.py     # 987 s (about 16 minutes) on 2 CPU cores

Writes ``src/hoe/data/files/hh_helpful_refusal_pairs.jsonl.gz`` (prompt, chosen, rejected).
"""

from __future__ import annotations

import gzip
import json
import time
from importlib import resources

import torch

from hoe.benchmarking.generation import answer_prompts
from hoe.checkpoints import load_model, load_tokenizer
from hoe.checkpoints.loading import DEFAULT_MODEL
from hoe.data.packaged import packaged_prompts
from hoe.rewards.offline import refusal_like

OUT_FILE = "hh_helpful_refusal_pairs.jsonl.gz"
DECLINE = (
    "Do not answer the following request. Reply with one or two sentences that politely decline to help "
    "with it, and nothing else.\n\n"
)


def declines(model, tokenizer, prompts: list[str], retries: int = 3) -> list[str]:
    """Each prompt's decline: greedy first, then sampled again where it does not read as a refusal."""
    refusals = answer_prompts(model, tokenizer, [DECLINE + prompt for prompt in prompts], desc="declining").texts
    torch.manual_seed(0)
    for _ in range(retries):
        again = [index for index, text in enumerate(refusals) if not refusal_like(text)]
        if not again:
            break
        retried = answer_prompts(model, tokenizer, [DECLINE + prompts[i] for i in again], sample=True, desc="sampling")
        for index, text in zip(again, retried.texts):
            refusals[index] = text
    return refusals


def main() -> None:
    started = time.perf_counter()
    prompts = packaged_prompts("hh-helpful-sft")
    model, tokenizer = load_model(DEFAULT_MODEL), load_tokenizer(DEFAULT_MODEL)
    tokenizer.padding_side = "left"
    answers = answer_prompts(model, tokenizer, prompts, desc="answering").texts
    refusals = declines(model, tokenizer, prompts)
    rows = [
        {"prompt": prompt, "chosen": answer, "rejected": refusal}
        for prompt, answer, refusal in zip(prompts, answers, refusals)
        if answer and not refusal_like(answer) and refusal_like(refusal)
    ]
    target = resources.files("hoe.data").joinpath("files", OUT_FILE)
    with gzip.open(str(target), "wt", encoding="utf-8", compresslevel=9) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(
        f"{len(rows)} pairs of {len(prompts)} prompts ({sum(refusal_like(a) for a in answers)} answers "
        f"refusal-like, {sum(not refusal_like(r) for r in refusals)} declines not) in "
        f"{time.perf_counter() - started:.0f} s -> {target}"
    )


if __name__ == "__main__":
    main()
