"""Which offline objectives conflict on the embedded model's own samples?

k = 4 responses sampled from SmolLM2-135M-Instruct for each of 96 prompts of each offline suite
(assistant: HH-RLHF helpful + harmless prompts; summary: TL;DR posts are not packaged yet, see
README), scored by every offline scorer; for each pair of objectives, the mean within-prompt
Spearman correlation with its standard error. Pairs whose correlation is below zero by more
than two standard errors really conflict.

    .venv/bin/python benchmarks/conflicts/run.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from hoe.data import load_prompts
from hoe.models.loading import DEFAULT_MODEL, cache_root
from hoe.rewards import OFFLINE_SCORERS, ScoreCache, score_objectives
from hoe.rewards.conflict import conflict_table
from hoe.training.sampling import SamplingSettings, sample_candidates

HERE = Path(__file__).resolve().parent
ASSISTANT_PROMPTS = "packaged:hh-helpful-sft+packaged:hh-harmless"


def main() -> None:
    prompts = load_prompts(ASSISTANT_PROMPTS, "train", limit=96)
    settings = SamplingSettings(k=4, max_new_tokens=64, batch_prompts=8)
    candidates = sample_candidates(DEFAULT_MODEL, prompts, settings)
    flat_prompts = [row["prompt"] for row in candidates for _ in row["responses"]]
    flat_responses = [r for row in candidates for r in row["responses"]]
    scores = score_objectives(list(OFFLINE_SCORERS), flat_prompts, flat_responses, cache=ScoreCache(cache_root() / "scores.sqlite"))
    grouped = {name: [values[i : i + settings.k] for i in range(0, len(values), settings.k)] for name, values in scores.items()}
    table = conflict_table(grouped)
    results = {"model": DEFAULT_MODEL, "prompts": len(prompts), "k": settings.k, "sampling": settings.__dict__,
               "pairs": table, "machine": {"cpus": os.cpu_count(), "torch": torch.__version__},
               "command": ".venv/bin/python benchmarks/conflicts/run.py"}
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| objectives | within-prompt Spearman | std. error | prompts | conflict (< 0 by 2 SE) |", "|---|---:|---:|---:|:---:|"]
    lines += [f"| {a} – {b} | {r['spearman']:+.3f} | {r['stderr']:.3f} | {r['prompts']} | {'yes' if r['conflict'] else ''} |"
              for r in table for a, b in [r["pair"]]]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
