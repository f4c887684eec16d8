"""What a floor on a second objective leaves of an expert's chosen answers, from the training candidates alone.

`make-expert --floor relevance=X` lets only candidates scoring at least X on relevance be a prompt's
chosen answer. The floor is fixed before any expert is trained, from the training candidates'
floor-objective scores (the README's eighth round used 0.5, their 30th percentile; the tenth their 20th). This
prints, and writes as JSON, those percentiles and for each floor tried: how many prompts it leaves out
and the chosen answers' mean on the floor objective and on the expert's own objective and their share of
refusal-like answers, against no floor. The candidates come from the sampling cache (the same ones
run.py trains on; sampled if absent).

    .venv/bin/python benchmarks/experts/floor_stats.py --objective readability --method distill \\
        --prompt-count 128 --floors 0.5
    .venv/bin/python benchmarks/experts/floor_stats.py --objective harmlessness --method dpo \\
        --contrastive --train-prompts packaged:hh-harmless --prompt-count 128 --floors 0.125

Writes floor-stats-OBJECTIVE-METHOD-pN[-PROMPTS].json beside this file.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

import numpy as np
from run import ASSISTANT_PROMPTS, INSTRUCTIONS, SAMPLING

from hoe.checkpoints.loading import DEFAULT_MODEL
from hoe.data import load_prompts
from hoe.rewards.offline import refusal_like
from hoe.training.make_expert import MakeExpertSettings, best_eligible, scored_candidates, scores_per_row

HERE = Path(__file__).resolve().parent
PERCENTILES = (10, 20, 30, 50)


def chosen_means(groups, floor_scores, floor: float | None, *, last_of_ties: bool) -> dict:
    """The chosen answers' means (own objective, floor objective) under one floor (None: no floor),
    picked as make-expert picks them, and the prompts left with no candidate at the floor."""
    own, on_floor, refusals, left_out = [], [], [], 0
    for (row, group), scores in zip(groups, floor_scores):
        mask = [True] * len(group) if floor is None else [score >= floor for score in scores]
        best = best_eligible(group, mask, last_of_ties=last_of_ties)
        if best is None:
            left_out += 1
            continue
        own.append(group[best])
        on_floor.append(scores[best])
        refusals.append(refusal_like(row["responses"][best]))
    return {
        "left_out": left_out,
        "chosen_own_mean": round(statistics.fmean(own), 4),
        "chosen_floor_objective_mean": round(statistics.fmean(on_floor), 4),
        "chosen_refusal_like": round(statistics.fmean(refusals), 4),  # run.py's phrase heuristic
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", required=True, choices=sorted(INSTRUCTIONS))
    parser.add_argument("--method", choices=["raft", "distill", "dpo"], required=True)
    parser.add_argument("--contrastive", action="store_true", help="dpo: chosen among the instructed candidates")
    parser.add_argument("--train-prompts", default=ASSISTANT_PROMPTS)
    parser.add_argument("--prompt-count", type=int, default=96)
    parser.add_argument("--floor-objective", default="relevance")
    parser.add_argument("--floors", default="", help="comma-separated floors to try, e.g. 0.125,0.5")
    args = parser.parse_args()
    if args.contrastive and args.method != "dpo":
        parser.error("--contrastive is a way of making dpo's pairs: use it with --method dpo")
    floors = [float(value) for value in args.floors.split(",") if value]
    instructed = args.method == "distill" or args.contrastive
    settings = MakeExpertSettings(  # sampled as run.py samples: the same cached candidates
        objective=args.objective,
        method=args.method,
        instruction=INSTRUCTIONS[args.objective] if instructed else None,
        prompts=args.train_prompts,
        prompt_count=args.prompt_count,
        **SAMPLING,
    )
    prompts = load_prompts(settings.prompts, "train", limit=settings.prompt_count)
    groups = scored_candidates(DEFAULT_MODEL, prompts, settings.instruction, settings, device="cpu", progress=True)
    floor_scores = scores_per_row([args.floor_objective], [row for row, _ in groups])[args.floor_objective]
    every = np.array([score for scores in floor_scores for score in scores])
    last_of_ties = args.method == "dpo"  # make-expert: DPO takes the last of tied best ones, RAFT/distill the first
    result = {
        "command": " ".join([".venv/bin/python benchmarks/experts/floor_stats.py", *sys.argv[1:]]),
        "candidates": int(every.size),
        f"{args.floor_objective}_percentiles": {str(p): round(float(np.percentile(every, p)), 4) for p in PERCENTILES},
        "no_floor": chosen_means(groups, floor_scores, None, last_of_ties=last_of_ties),
        "floors": {str(f): chosen_means(groups, floor_scores, f, last_of_ties=last_of_ties) for f in floors},
    }
    prompts_tag = "" if args.train_prompts == ASSISTANT_PROMPTS else "-" + re.sub(r"\W+", "_", args.train_prompts)
    tag = f"{args.objective}-{args.method}{'-contrastive' if args.contrastive else ''}-p{args.prompt_count}"
    out = HERE / f"floor-stats-{tag}{prompts_tag}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"written: {out.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main()
