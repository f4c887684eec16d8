"""Two router training curves compared step by step: the paired difference of one column over a range of steps.

    .venv/bin/python benchmarks/results/curve_difference.py \\
        benchmarks/results/2-objectives-range_units/routers/router-0.75-0.25.curve.csv \\
        benchmarks/results/2-objectives-range_units/omd_step_4/router-0.75-0.25.curve.csv --steps 9-16

Two runs with the same seed draw the same prompts at each step, so a step pairs them: the mean of
(second − first) over the steps, with the standard error of those differences. Reads the CSVs only.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
from pathlib import Path


def read_curve(path: Path) -> dict[int, dict[str, float]]:
    """A curve.csv of hoe train-router: step -> every column's value."""
    with path.open(newline="") as handle:
        rows = csv.DictReader(handle)
        return {int(row["step"]): {k: float(v) for k, v in row.items() if v not in ("", None)} for row in rows}


def column_by_step(path: Path, column: str, parser: argparse.ArgumentParser) -> dict[int, float]:
    """One curve's ``column`` per step; a missing file or column exits 2 with one line."""
    if not path.is_file():
        parser.error(f"no curve at '{path}'")
    with path.open(newline="") as handle:
        header = next(csv.reader(handle), [])
    if column not in header or "step" not in header:
        parser.error(f"'{path}' has no '{column}' column (a curve.csv of hoe train-router?)")
    return {step: row[column] for step, row in read_curve(path).items()}


def paired_difference(first: dict[int, float], second: dict[int, float], steps: range) -> tuple[float, float]:
    """second − first over the steps (which draw the same prompts in both runs): mean and its standard error."""
    differences = [second[step] - first[step] for step in steps]
    return statistics.mean(differences), statistics.stdev(differences) / math.sqrt(len(differences))


def step_range(text: str) -> range:
    first, _, last = text.partition("-")
    try:
        return range(int(first), int(last or first) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"steps are FIRST-LAST, e.g. 9-16, got '{text}'") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--steps", type=step_range, required=True, help="FIRST-LAST, inclusive")
    parser.add_argument("--column", default="tchebycheff")
    args = parser.parse_args()
    first, second = (column_by_step(path, args.column, parser) for path in (args.first, args.second))
    missing = [step for step in args.steps if step not in first or step not in second]
    if missing or len(args.steps) < 2:
        parser.error(f"--steps needs at least two steps that both curves have (missing: {missing})")
    mean, se = paired_difference(first, second, args.steps)
    means = [statistics.mean(curve[step] for step in args.steps) for curve in (first, second)]
    print(
        f"{args.column}, steps {args.steps.start}-{args.steps.stop - 1}: first {means[0]:+.4f}, "
        f"second {means[1]:+.4f}; second − first {mean:+.4f} ± {se:.4f} "
        f"({mean / se if se else float('nan'):+.1f} paired SE over {len(args.steps)} steps)"
    )


if __name__ == "__main__":
    main()
