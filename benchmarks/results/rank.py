"""One suite rebuilt (at another expert rank, or its recipe's own) and evaluated on all held-out prompts.

    .venv/bin/python benchmarks/results/rank.py --suite 2-objectives --rank 64     # 68 min on 2 CPU cores
    .venv/bin/python benchmarks/results/rank.py --suite helpful-harmless  # the recipe's ranks (64; harmless 128)

Why: with two objectives HoE's hypervolume is below Rewarded Soups' beyond noise at the recipe's
rank 32 (``2-objectives-concise-informative-134-prompts/``), and the first suspect was compression:
HoE's LoRA experts keep 85-89% of the full experts' gains at the front's ends, where RS uses the full
task vectors (at rank 64 the hypervolume did not move: README.md, front_gaps.py). This rebuilds the
suite under the demo's full profile (same experts from the cache, same routers' PPO settings, same
prompts and decoding) at ``--rank`` and evaluates every method again, so the comparison is paired
within one run. Work goes to ``benchmarks/results/work/SUITE-rRANK`` (not committed); the
evaluation's report, results, fronts, timing and generations are copied to
``benchmarks/results/SUITE-rRANK-PROMPTS-prompts/``. Without ``--rank`` the suite keeps its recipe's rank
(work in ``work/SUITE``, results in ``SUITE-PROMPTS-prompts/``): how helpful-harmless, which the demo does
not run, is evaluated under the demo's full profile.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from run import copy_evaluation

from hoe.pipeline.demo import PROFILES, SUITES, run_suite

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="2-objectives")
    parser.add_argument("--rank", type=int, help="the experts' rank (default: the recipe's own)")
    parser.add_argument("--limit", type=int, default=256, help="held-out prompts at most (134 exist)")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    args = parser.parse_args()
    if args.rank is not None and args.rank <= 0:
        parser.error(f"--rank must be positive, got {args.rank}")
    profile = dataclasses.replace(PROFILES["full"], eval_prompts=args.limit, suites=(args.suite,))
    rank_tag = f"-r{args.rank}" if args.rank else ""
    work = args.work / f"{args.suite}{rank_tag}"
    # run_suite writes under OUT/SUITE; keep each rank's bundle apart from the demo's own
    summary = run_suite(args.suite, profile, work, args.rank, progress=True)
    results = json.loads((work / args.suite / "evaluation" / "results.json").read_text())
    target = HERE / f"{args.suite}{rank_tag}-{results['settings']['prompts']['count']}-prompts"
    copy_evaluation(work / args.suite, target)
    (target / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"copied to {target}")


if __name__ == "__main__":
    main()
