"""The full-profile demo: both offline suites end to end, the numbers the README quotes.

    .venv/bin/python benchmarks/results/run.py            # ~2 h on 2 CPU cores the first time (experts ~1 h)

Runs ``hoe demo --profile full`` into ``benchmarks/results/work`` (not committed: bundles and
cached experts) and copies each suite's evaluation here: report.md, results.json/.csv,
fronts.png, run.json, the recipe, and the generations, so the report regenerates without a model:
``hoe evaluate --out benchmarks/results/2-objectives --report-only``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from hoe.pipeline.demo import PROFILES, run_demo

HERE = Path(__file__).resolve().parent
KEEP = ("report.md", "results.json", "results.csv", "fronts.png", "run.json", "timing.json", "generations")


def copy_evaluation(suite_folder: Path, target: Path) -> None:
    """What the README quotes of one suite's run (``suite_folder``: recipe.yaml and evaluation/), into
    ``target``, replacing it: the report regenerates from the generations without a model."""
    source = suite_folder / "evaluation"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in KEEP:
        path = source / name
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, target / name)
    shutil.copy2(suite_folder / "recipe.yaml", target / "recipe.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--profile", default="full")
    args = parser.parse_args()
    summary = run_demo(args.work, profile=args.profile)
    for suite in PROFILES[args.profile].suites:
        copy_evaluation(args.work / suite, HERE / suite)
    (HERE / "demo_summary.json").write_text((args.work / "demo_summary.json").read_text())
    print(f"copied to {HERE}; {summary['total_seconds']} s in all")


if __name__ == "__main__":
    main()
