"""Router training on the embedded default: does PPO at a router's anchor beat the untrained
(static) router, and what does a PPO step cost?

    .venv/bin/python benchmarks/routers/run.py   # after benchmarks/results/run.py made the bundle

Takes the two-objective bundle of the full-profile demo (civility, concision; LoRA experts
civil and concise, the PCB-merged 'balanced', routers at [0.25, 0.75] and [0.75, 0.25]), trains
the router at [0.25, 0.75] twice (Tchebycheff + OMD, and linear scalarisation), and evaluates
on held-out prompts, same decoding for all: the bundle with that router untrained, trained with
Tchebycheff, trained with linear; plus the ablation LoRA experts only (soup) / + merged expert
(bundle without routers) / + routers. Times each PPO phase and a plain forward+backward of the
LM (every weight trainable) on the same tokens. Results: results.json, results.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import time
from pathlib import Path

import torch

from hoe.evaluation import Decoding, EvalSettings, evaluate
from hoe.evaluation.preference_sets import preference_label
from hoe.pipeline import train_router
from hoe.rl import load_config

HERE = Path(__file__).resolve().parent
ANCHOR = [0.25, 0.75]


def train(bundle: Path, scalarisation: str, steps: int, work: Path, batch_size: int = 8) -> dict:
    config = load_config(
        None,
        scalarisation=scalarisation,
        steps=steps,
        batch_size=batch_size,
        max_new_tokens=32,
        prompt_count=max(128, steps * batch_size),
        max_prompt_tokens=128,
        learning_rate=5e-4,
        kl_coef=0.05,
        calibration_prompts=16,
        checkpoint_every=4,
    )
    start = time.perf_counter()
    summary = train_router(bundle, ANCHOR, config, overwrite=True, work=work)
    summary["wall_s"] = time.perf_counter() - start
    summary["config"] = config.model_dump()
    return summary


def evaluate_bundle(bundle: Path, out: Path, methods: list[str], prompts: int, tokens: int) -> dict:
    settings = EvalSettings(
        bundle=str(bundle),
        preferences="grid:5",
        methods=methods,
        prompts="packaged:hh-helpful-test+packaged:hh-harmless",
        split="heldout",
        limit=prompts,
        decoding=Decoding(max_new_tokens=tokens, batch_size=16, max_prompt_tokens=192),
    )
    return evaluate(settings, out, overwrite=True)


def plain_forward_backward(bundle: Path, rows: int, length: int, repeats: int = 3, device: str = "cpu") -> float:
    """Seconds for one forward+backward of the base LM, every weight trainable, on rows × length tokens."""
    from hoe.checkpoints.loading import load_model
    from hoe.model.bundle import load_bundle

    model = load_model(load_bundle(bundle).spec.base_model, device=device)
    model.train()
    ids = torch.randint(100, 20000, (rows, length), device=device)
    times = []
    for _ in range(repeats + (1 if device != "cpu" else 0)):  # on a GPU the first pass warms the kernels up
        start = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    return statistics.median(times[-repeats:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=HERE.parent / "results" / "work" / "2-objectives" / "bundle")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8, help="Prompts per PPO step.")
    parser.add_argument("--kinds", default="tchebycheff,linear", help="Scalarisations to train (comma-separated).")
    parser.add_argument(
        "--tag", default="", help="Write results-TAG.json/.md (a second configuration beside the first)."
    )
    parser.add_argument("--report-only", action="store_true", help="Rewrite results.md from results.json.")
    args = parser.parse_args()
    stem = f"results-{args.tag}" if args.tag else "results"
    if args.report_only:
        results = shared_hypervolumes(json.loads((HERE / f"{stem}.json").read_text()))
        (HERE / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
        (HERE / f"{stem}.md").write_text(markdown(results) + "\n")
        print(markdown(results))
        return
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    kinds = [k for k in args.kinds.split(",") if k]
    bundles = {
        "untrained": args.work / "untrained",
        **{k: args.work / k for k in kinds},
        "no-routers": args.work / "no-routers",
    }
    for path in bundles.values():
        shutil.copytree(args.bundle, path, ignore=shutil.ignore_patterns("training"))
    spec = json.loads((bundles["no-routers"] / "hoe.json").read_text())
    spec["routers"] = []
    (bundles["no-routers"] / "hoe.json").write_text(json.dumps(spec, indent=2))

    runs = {
        kind: train(
            bundles[kind],
            kind if kind == "linear" else "tchebycheff-omd",
            args.steps,
            args.work / f"train-{kind}",
            args.batch_size,
        )
        for kind in kinds
    }
    evaluations = {}
    for name, path in bundles.items():
        methods = ["hoe", "soup"] if name == "untrained" else ["hoe"]
        evaluations[name] = evaluate_bundle(path, args.work / f"eval-{name}", methods, args.prompts, args.tokens)

    config = runs[kinds[0]]["config"]
    costs = step_costs(
        args.work / f"train-{kinds[0]}" / "curve.csv", args.bundle, config["batch_size"], config["ppo_epochs"]
    )
    results = {"anchor": ANCHOR, "steps": args.steps, "runs": runs, **costs, "evaluations": compact(evaluations)}
    write_results(results, stem, markdown)


def step_costs(curve_file: Path, bundle: Path, rows: int, ppo_epochs: int, device: str = "cpu") -> dict:
    """Median PPO phases over a training curve, and one router forward+backward pass (one epoch
    of the update) against a plain forward+backward of the LM on the same rows and length."""
    curve = list(csv.DictReader(curve_file.open()))
    phases = {
        k: statistics.median(float(r[k]) for r in curve) for k in ("generation_s", "logprob_s", "scoring_s", "update_s")
    }
    length = int(statistics.median(int(r["sequence_length"]) for r in curve))
    plain = plain_forward_backward(bundle, rows, length, device=device)
    per_pass = phases["update_s"] / ppo_epochs
    return {
        "phases_median_s": phases,
        "response_tokens_per_step": statistics.median(float(r["tokens"]) for r in curve),
        "plain_forward_backward_s": plain,
        "plain_shape": [rows, length],
        "router_pass_s": per_pass,
        "router_pass_vs_plain": per_pass / plain,
    }


def compact(evaluations: dict) -> dict:
    """What the results keep of each evaluation run: its methods, points and reference point."""
    return {
        name: {"methods": e["methods"], "points": e["points"], "reference_point": e["reference_point"]}
        for name, e in evaluations.items()
    }


def write_results(results: dict, stem: str, markdown) -> None:
    """Hypervolumes on one shared reference, then ``stem``.json and ``stem``.md beside this script."""
    results = shared_hypervolumes(results)
    (HERE / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / f"{stem}.md").write_text(markdown(results) + "\n")
    print(markdown(results))


def shared_hypervolumes(results: dict) -> dict:
    """Hypervolumes of every (bundle, method) against one reference point: each evaluation run
    picks its own reference from its own points, so their values are not comparable as they are."""
    import numpy as np

    from hoe.evaluation.metrics import hypervolume, reference_point

    evaluations = results["evaluations"]
    everything = np.asarray([p["mean"] for e in evaluations.values() for p in e["points"]])
    reference = reference_point(everything)
    results["shared_reference_point"] = reference.tolist()
    for evaluation in evaluations.values():
        for method, entry in evaluation["methods"].items():
            points = np.asarray([p["mean"] for p in evaluation["points"] if p["method"] == method])
            entry["hypervolume_shared"] = hypervolume(points, reference)
    return results


def at_anchor(evaluation: dict, method: str = "hoe") -> list[float]:
    label = preference_label(ANCHOR)
    return next(p["mean"] for p in evaluation["points"] if p["method"] == method and p["label"] == label)


def markdown(results: dict) -> str:
    ev = results["evaluations"]
    reference = ", ".join(f"{v:.4g}" for v in results["shared_reference_point"])
    lines = [
        f"| model | civility at [0.25, 0.75] | concision | hypervolume (grid:5; shared reference ({reference})) |",
        "|---|---:|---:|---:|",
    ]
    for name, label, method in (
        ("untrained", "LoRA experts only (soup)", "soup"),
        ("no-routers", "+ merged expert (no routers)", "hoe"),
        ("untrained", "+ routers, untrained (static mix)", "hoe"),
        ("tchebycheff", "+ router trained, Tchebycheff + OMD", "hoe"),
        ("linear", "+ router trained, linear", "hoe"),
    ):
        if name not in ev:
            continue
        mean = at_anchor(ev[name], method)
        lines.append(
            f"| {label} | {mean[0]:.4f} | {mean[1]:.4f} | {ev[name]['methods'][method]['hypervolume_shared']:.4g} |"
        )
    phases = results["phases_median_s"]
    lines += [
        "",
        f"PPO step (median over {results['steps']} steps, batch {results['plain_shape'][0]}, 32 new tokens): "
        f"generation {phases['generation_s']:.1f} s, "
        f"policy + reference log-probs {phases['logprob_s']:.1f} s, scoring {phases['scoring_s']:.2f} s, "
        f"PPO update {phases['update_s']:.1f} s; one router forward+backward pass {results['router_pass_s']:.1f} s vs "
        "a plain "
        f"forward+backward of the LM {results['plain_forward_backward_s']:.1f} s: "
        f"{results['router_pass_vs_plain']:.2f}×.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
