"""Two evaluations of the same settings compared answer by answer: does a run made elsewhere reproduce another?

    .venv/bin/python benchmarks/results/same_answers.py benchmarks/results/quick-demo \\
        benchmarks/results/quick-demo-rerun-amx --out benchmarks/results/quick-demo-rerun-amx/same-answers.json

Why: a demo run on another machine (another CPU, an empty cache, every expert made again) should give the
committed figures, or say how far it is from them. For each (method, λ) both folders hold, it counts the
prompts whose answers are the same text, and it sets each method's hypervolume and each point's means beside
the other run's. Reads ``generations/``, ``results.json`` and ``run.json``; a folder without them, or two runs of
other prompts or decoding, exits 2 with one line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def answers(folder: Path) -> dict[str, list[str]]:
    """'method/label' -> the answers in prompt order, from an evaluation folder's generations."""
    found = {}
    for path in sorted((folder / "generations").glob("*/*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        found[f"{path.parent.name}/{path.stem}"] = [row["response"] for row in sorted(rows, key=lambda r: r["index"])]
    return found


SETTINGS = ("prompts_sha", "decoding", "task_vectors", "merge_method", "chat", "dtype")  # of run.json's fingerprint


def different_setting(first: Path, second: Path) -> str | None:
    """The first generation setting (prompts, decoding, ...) in which the two runs differ, if any; the bundle
    digests are left out, since a bundle made again elsewhere is what a reproduction compares."""
    prints = [json.loads((folder / "run.json").read_text()).get("fingerprint", {}) for folder in (first, second)]
    return next((key for key in SETTINGS if prints[0].get(key) != prints[1].get(key)), None)


def compare(first: Path, second: Path) -> dict:
    """Identical answers per (method, λ), and the largest differences of hypervolume and of point means."""
    a, b = answers(first), answers(second)
    shared = sorted(a.keys() & b.keys())
    per_job = {job: sum(x == y for x, y in zip(a[job], b[job])) for job in shared}
    results = [json.loads((folder / "results.json").read_text()) for folder in (first, second)]
    volumes = {
        method: [r["methods"][method].get("hypervolume") for r in results]
        for method in results[0]["methods"].keys() & results[1]["methods"].keys()
    }
    means = [{(p["method"], p["label"]): p["mean"] for p in r["points"]} for r in results]
    point_gaps = [abs(x - y) for key in means[0].keys() & means[1].keys() for x, y in zip(means[0][key], means[1][key])]
    return {
        "first": str(first),
        "second": str(second),
        "answers_compared": sum(min(len(a[job]), len(b[job])) for job in shared),
        "answers_identical": sum(per_job.values()),
        "jobs_compared": len(shared),
        "jobs_only_in_one": sorted(a.keys() ^ b.keys()),
        "identical_per_job": per_job,
        "hypervolume": {m: v for m, v in sorted(volumes.items())},
        "largest_hypervolume_difference": max(
            (abs(x - y) for x, y in volumes.values() if x is not None and y is not None), default=None
        ),
        "largest_point_mean_difference": max(point_gaps, default=None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="an evaluation folder (generations/ and results.json)")
    parser.add_argument("second", type=Path, help="another one, of the same settings")
    parser.add_argument("--out", type=Path, help="also write the comparison here (JSON)")
    args = parser.parse_args()
    for folder in (args.first, args.second):
        if not all((folder / name).exists() for name in ("results.json", "run.json", "generations")):
            parser.error(f"'{folder}' has no results.json, run.json and generations/ (an evaluation folder?)")
    differing = different_setting(args.first, args.second)
    if differing:
        parser.error(f"the two runs differ in {differing}: their answers are not answers to the same question")
    result = compare(args.first, args.second)
    if not result["jobs_compared"]:
        parser.error("the two folders share no (method, λ) generations: nothing to compare")
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    print(
        f"{result['answers_identical']} of {result['answers_compared']} answers identical over "
        f"{result['jobs_compared']} (method, λ) jobs; largest hypervolume difference "
        f"{result['largest_hypervolume_difference']:.3g}, largest point-mean difference "
        f"{result['largest_point_mean_difference']:.3g}"
    )


if __name__ == "__main__":
    main()
