"""Which offline objectives conflict on the embedded model's own samples?

k = 4 responses sampled from SmolLM2-135M-Instruct for each of 96 prompts of an offline suite's
train split, scored by every offline scorer of the suite; for each pair of objectives, the mean
within-prompt Spearman correlation with its standard error. Pairs whose correlation is below zero
by more than two standard errors really conflict.

- assistant: HH-RLHF helpful + harmless prompts, 64 new tokens (results.json, results.md);
- learned: the assistant suite's samples, scored also by the learned helpfulness and harmlessness
  heads (results-learned.json, results-learned.md);
- summary: Reddit TL;DR posts, 48 new tokens, with ``summary`` = similarity to the author's own
  TL;DR (reference:packaged:tldr) (results-summary.json, results-summary.md).

    .venv/bin/python benchmarks/conflicts/run.py --suite assistant
    .venv/bin/python benchmarks/conflicts/run.py --suite summary
    .venv/bin/python benchmarks/conflicts/run.py --suite learned
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from hoe.checkpoints.loading import DEFAULT_MODEL, cache_root
from hoe.data import load_prompts
from hoe.rewards import OFFLINE_SCORERS, ScoreCache, score_objectives
from hoe.rewards.conflict import conflict_table
from hoe.training.sampling import sample_candidates
from hoe.training.settings import SamplingSettings

HERE = Path(__file__).resolve().parent
SUITES = {
    # name: (prompt spec, new tokens, objective -> scorer, output stem)
    "assistant": (
        "packaged:hh-helpful-sft+packaged:hh-harmless",
        64,
        {name: name for name in OFFLINE_SCORERS},
        "results",
    ),
    # the same samples as "assistant", with the learned heads of benchmarks/rewards beside the heuristics
    "learned": (
        "packaged:hh-helpful-sft+packaged:hh-harmless",
        64,
        {"helpfulness": "helpfulness", "harmlessness": "harmlessness", **{name: name for name in OFFLINE_SCORERS}},
        "results-learned",
    ),
    "summary": (
        "packaged:tldr",
        48,
        {"summary": "reference:packaged:tldr", **{name: name for name in OFFLINE_SCORERS}},
        "results-summary",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=SUITES, default="assistant")
    args = parser.parse_args()
    spec, new_tokens, scorers, stem = SUITES[args.suite]
    prompts = load_prompts(spec, "train", limit=96)
    settings = SamplingSettings(k=4, max_new_tokens=new_tokens, batch_prompts=8)
    candidates = sample_candidates(DEFAULT_MODEL, prompts, settings)
    flat_prompts = [row["prompt"] for row in candidates for _ in row["responses"]]
    flat_responses = [r for row in candidates for r in row["responses"]]
    raw = score_objectives(
        list(scorers.values()), flat_prompts, flat_responses, cache=ScoreCache(cache_root() / "scores.sqlite")
    )
    grouped = {
        name: [raw[scorer][i : i + settings.k] for i in range(0, len(flat_prompts), settings.k)]
        for name, scorer in scorers.items()
    }
    table = conflict_table(grouped)
    means = {name: round(sum(raw[scorer]) / len(raw[scorer]), 4) for name, scorer in scorers.items()}
    results = {
        "suite": args.suite,
        "model": DEFAULT_MODEL,
        "prompts": len(prompts),
        "prompt_spec": spec,
        "k": settings.k,
        "sampling": settings.__dict__,
        "scorers": scorers,
        "mean_scores": means,
        "pairs": table,
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__},
        "command": f".venv/bin/python benchmarks/conflicts/run.py --suite {args.suite}",
    }
    (HERE / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "| objectives | within-prompt Spearman | std. error | prompts | conflict (< 0 by 2 SE) |",
        "|---|---:|---:|---:|:---:|",
    ]
    lines += [
        f"| {a} – {b} | {r['spearman']:+.3f} | {r['stderr']:.3f} | {r['prompts']} | {'yes' if r['conflict'] else ''} |"
        for r in table
        for a, b in [r["pair"]]
    ]
    (HERE / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
