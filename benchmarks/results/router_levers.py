"""One router trained under variants of its config, compared step by step on its own training batches.

    .venv/bin/python benchmarks/results/router_levers.py --bundle /tmp/demo-out/2-objectives/bundle \\
        --anchor 0.75,0.25 --variant static:learning_rate=1e-12 --variant kl0.2:kl_coef=0.2 \\
        --variant lr_half:learning_rate=0.0025 --out benchmarks/results/router-levers-quick     # ~25 min here

Why: on the demo's two-objective suite the trained [0.75, 0.25] router answers like the concise expert, a
hole in HoE's front that its static mix does not have (``2-objectives-static_routers/``). Which change to
router training keeps it off that end is to be chosen on training batches, never on the held-out prompts.
Each arm trains the router at ``--anchor`` in a copy of the bundle under the full profile's router config
(``router_config``) with its ``KEY=VALUE`` changes (``default``: none); a learning rate of 1e-12 keeps the
static mix, answering the same batches. One seed, so step k draws the same prompts in every arm: each
column's mean over ``--steps`` and each arm's paired difference to ``default`` (mean ± SE over the steps).
Writes ARM.curve.csv per arm and levers.json to ``--out``; an arm whose curve is there is not trained again.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from curve_difference import paired_difference, read_curve, step_range
from retrain_routers import varied_config

from hoe.errors import HoEError
from hoe.pipeline.demo import PROFILES
from hoe.routing import parse_preference

COLUMNS = ("tchebycheff", "kl", "tokens")  # and every objective's raw reward (raw_NAME)


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME:KEY=VALUE[,KEY=VALUE]`` as (name, pairs); the name is an identifier (it names files)."""
    name, _, pairs = text.partition(":")
    if not name.isidentifier() or name == "default" or not pairs:
        raise argparse.ArgumentTypeError(
            f"a variant is NAME:KEY=VALUE[,KEY=VALUE] with NAME an identifier, got {text!r}"
        )
    return name, pairs.split(",")


def paired(first: dict, second: dict, steps: range, column: str) -> dict:
    """second − first in ``column`` over the steps, mean ± SE (the steps draw the same prompts in both)."""
    mean, se = paired_difference(*({step: curve[step][column] for step in steps} for curve in (first, second)), steps)
    return {"difference": round(mean, 4), "se": round(se, 4), "in_se": round(mean / se, 1) if se else None}


def train_arm(bundle: Path, anchor: list[float], config, target: Path) -> None:
    """The router at ``anchor`` trained in a throwaway copy of the bundle; its curve kept as ``target``."""
    from hoe.pipeline.train_router import train_router

    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "bundle"
        shutil.copytree(bundle, copy)
        train_router(copy, anchor, config, work=Path(scratch) / "work", overwrite=True, progress=True)
        shutil.copy2(Path(scratch) / "work" / "curve.csv", target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--anchor", required=True, help="the router's anchor, e.g. 0.75,0.25")
    parser.add_argument("--variant", type=parse_variant, action="append", required=True, help="NAME:KEY=VALUE,...")
    parser.add_argument("--steps", type=step_range, default=step_range("9-16"), help="compared steps, FIRST-LAST")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not (args.bundle / "hoe.json").is_file():
        parser.error(f"'{args.bundle}' is not a bundle (no hoe.json)")
    profile = PROFILES["full"]
    try:
        anchor = [
            float(v)
            for v in parse_preference(args.anchor, json.loads((args.bundle / "hoe.json").read_text())["objectives"])
        ]
        configs = {n: varied_config(profile, p, "--variant") for n, p in [("default", []), *args.variant]}
    except (ValueError, HoEError) as exc:  # a bad anchor or key: one line, before anything trains
        parser.error(str(exc))
    fewest = min(config.steps for config in configs.values())
    if args.steps.stop - 1 > fewest or len(args.steps) < 2:
        parser.error(f"--steps must lie within every arm's steps ({fewest} in the shortest), two at least")
    args.out.mkdir(parents=True, exist_ok=True)
    curves = {}
    for name, config in configs.items():
        target = args.out / f"{name}.curve.csv"
        if not target.is_file() or len(read_curve(target)) < config.steps:
            train_arm(args.bundle, anchor, config, target)
        curves[name] = read_curve(target)
    first_row = next(iter(curves["default"].values()))
    columns = [*COLUMNS, *(c for c in first_row if c.startswith("raw_"))]
    summary = {
        "bundle": str(args.bundle),
        "anchor": anchor,
        "steps": [args.steps.start, args.steps.stop - 1],
        "variants": {name: pairs for name, pairs in args.variant},
        "means": {
            name: {c: round(statistics.mean(curve[s][c] for s in args.steps), 4) for c in columns}
            for name, curve in curves.items()
        },
        "minus_default": {
            name: {c: paired(curves["default"], curve, args.steps, c) for c in columns}
            for name, curve in curves.items()
            if name != "default"
        },
    }
    (args.out / "levers.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name, means in summary["means"].items():
        print(name, means, summary["minus_default"].get(name, ""))


if __name__ == "__main__":
    main()
