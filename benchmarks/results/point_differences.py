"""HoE against each peer at one preference: the paired difference per objective, over the prompts.

The report compares whole fronts (hypervolume, mean Tchebycheff gap); this looks at a single λ,
e.g. a router's anchor, where a trained router should make the difference. It reads a committed
run's generations (no model loads) and scores them with the run's scorers.

    .venv/bin/python benchmarks/results/point_differences.py --run benchmarks/results/3-objectives --label 0.2-0.4-0.4

Writes ``point-<label>.json`` into the run folder and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from hoe.evaluation.report import scored_point
from hoe.utils.io import write_json


def per_prompt(run: Path, method: str, label: str, settings: dict) -> tuple[list[str], np.ndarray]:
    """The prompts and rewards (prompts × objectives) of one point, as the report scores them."""
    rows, _, values = scored_point(run, {"method": method, "label": label}, settings)
    return [r["prompt"] for r in rows], values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="an evaluation folder (run.json + generations/)")
    parser.add_argument("--label", required=True, help="the preference's label, e.g. 0.2-0.4-0.4")
    parser.add_argument("--peers", default="soup,merged,rs,mod")
    args = parser.parse_args()
    run = json.loads((args.run / "run.json").read_text())
    objectives = run["objectives"]
    prompts, hoe = per_prompt(args.run, "hoe", args.label, run)
    result = {"label": args.label, "prompts": len(prompts), "objectives": objectives, "peers": {}}
    for peer in args.peers.split(","):
        theirs, values = per_prompt(args.run, peer, args.label, run)
        if theirs != prompts:
            raise SystemExit(f"{peer} answered other prompts than hoe at {args.label}: nothing pairs")
        gain = hoe - values
        se = gain.std(0, ddof=1) / math.sqrt(len(gain))
        result["peers"][peer] = {
            o: {"hoe_minus_peer": float(m), "paired_se": float(s), "in_se": float(m / s) if s > 0 else None}
            for o, m, s in zip(objectives, gain.mean(0), se)
        }
        cells = [f"{m:+.3f} ± {s:.3f} ({m / s:+.1f} SE)" if s > 0 else f"{m:+.3f}" for m, s in zip(gain.mean(0), se)]
        print(f"| {peer} | " + " | ".join(cells) + " |")
    result["command"] = (
        f".venv/bin/python benchmarks/results/point_differences.py --run {args.run} --label {args.label}"
        + (f" --peers {args.peers}" if args.peers != "soup,merged,rs,mod" else "")
    )
    write_json(args.run / f"point-{args.label}.json", result)


if __name__ == "__main__":
    main()
