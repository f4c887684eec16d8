"""Does router training beat the static mix where the experts really conflict?

    .venv/bin/python benchmarks/routers/gain.py   # after benchmarks/experts/run.py made its experts

The two-objective bundle of ``gain-recipe.yaml``: concision and positivity (within-prompt
Spearman −0.14 on the base's samples), with the DPO experts of benchmarks/experts as the
single-objective models (task-SVD at rank 64), and one router, at [0.25, 0.75]. The DPO
concision expert is strong and costs positivity, so the static mix at an anchor need not sit
where the anchor asks. The router is trained twice (Tchebycheff + OMD, and linear
scalarisation); the untrained bundle (routers = the static mix, which is the soup of the two
LoRA experts) and both trained bundles are evaluated on the same held-out prompts with greedy
decoding. Reported: at each anchor, the Tchebycheff objective min_i λ_i (R̄_i − z*_i) on the
router's own normalisation and z* (from its training record), trained minus untrained with a
paired bootstrap standard error over prompts; each bundle's hypervolume on grid:5 against one
shared reference point; the PPO step's phases. Results: results-gain.json, results-gain.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from run import compact, shared_hypervolumes, step_costs, write_results  # benchmarks/routers/run.py, beside this script

from hoe.evaluation import Decoding, EvalSettings, evaluate
from hoe.evaluation.preference_sets import preference_label
from hoe.pipeline import train_router
from hoe.pipeline.build import build_bundle
from hoe.rl import load_config

HERE = Path(__file__).resolve().parent
KINDS = {"tchebycheff": "tchebycheff-omd", "linear": "linear"}


def train(bundle: Path, anchor: list[float], scalarisation: str, args, work: Path) -> dict:
    """Train the router at ``anchor``; a rerun reuses a router already trained with the same config."""
    config = load_config(
        None,
        scalarisation=scalarisation,
        steps=args.steps,
        batch_size=args.batch_size,
        max_new_tokens=args.train_tokens,
        prompt_count=min(900, args.steps * args.batch_size),
        max_prompt_tokens=128,
        learning_rate=args.lr,
        kl_coef=args.kl_coef,
        calibration_prompts=args.calibration_prompts,
        checkpoint_every=4,
        temperature=args.temperature,
        top_p=args.top_p,
        omd_step=args.omd_step,
        minibatches=args.minibatches,
    )
    summary_file = work / "summary.json"
    if summary_file.is_file() and (saved := json.loads(summary_file.read_text()))["config"] == config.model_dump():
        return saved
    start = time.perf_counter()
    summary = train_router(
        bundle, anchor, config, overwrite=True, work=work, device=args.device, max_minutes=args.train_minutes
    )
    summary = {**summary, "wall_s": time.perf_counter() - start, "config": config.model_dump()}
    summary_file.write_text(json.dumps(summary, indent=2))
    return summary


def per_prompt_scores(evaluation_dir: Path, label: str, objectives: list[str], method: str = "hoe") -> np.ndarray:
    """(prompts, objectives) raw scores of one method's answers at one preference (from the
    evaluation's generations and score cache)."""
    from hoe.rewards import ScoreCache, score_objectives

    rows = [
        json.loads(line)
        for line in (evaluation_dir / "generations" / method / f"{label}.jsonl").read_text().splitlines()
    ]
    rows.sort(key=lambda r: r["index"])
    scores = score_objectives(
        objectives,
        [r["prompt"] for r in rows],
        [r["response"] for r in rows],
        cache=ScoreCache(evaluation_dir / "scores.sqlite"),
    )
    return np.array([scores[o] for o in objectives]).T


def router_training(bundle: Path, anchor: list[float]) -> dict:
    """The training record (normalisation, z*, steps, config) of the router at ``anchor`` in ``bundle``."""
    routers = json.loads((bundle / "hoe.json").read_text())["routers"]
    return next(r["training"] for r in routers if [round(v, 6) for v in r["anchor"]] == [round(v, 6) for v in anchor])


def tchebycheff(raw: np.ndarray, anchor: list[float], norm: list[list[float]], ideal: list[float]) -> float:
    means = (raw.mean(0) - np.array([m for m, _ in norm])) / np.array([s for _, s in norm])
    return float(np.min(np.array(anchor) * (means - np.array(ideal))))


def paired_gain(trained: np.ndarray, untrained: np.ndarray, anchor, norm, ideal, draws: int = 2000) -> dict:
    """Trained minus untrained Tchebycheff objective, with a paired bootstrap over prompts."""
    rng = np.random.default_rng(0)
    n = len(trained)
    gains = [
        tchebycheff(trained[i], anchor, norm, ideal) - tchebycheff(untrained[i], anchor, norm, ideal)
        for i in (rng.integers(0, n, n) for _ in range(draws))
    ]
    gain = tchebycheff(trained, anchor, norm, ideal) - tchebycheff(untrained, anchor, norm, ideal)
    se = float(np.std(gains, ddof=1))
    return {
        "untrained": tchebycheff(untrained, anchor, norm, ideal),
        "trained": tchebycheff(trained, anchor, norm, ideal),
        "gain": gain,
        "bootstrap_se": se,
        "gain_in_se": gain / se if se > 0 else None,
    }


def paired_fronts(
    work: Path, names: list[str], labels: list[str], objectives: list[str], reference: list[float], draws: int = 1000
) -> dict:
    """Every trained bundle against the untrained one, paired over prompts: per preference, the
    difference of each objective's mean with its standard error; and the hypervolume difference
    (shared reference point) with a bootstrap SE that resamples prompts for all points at once."""
    from hoe.evaluation.metrics import hypervolume

    scores = {
        n: np.stack([per_prompt_scores(work / f"eval-{n}", label, objectives) for label in labels])
        for n in ["untrained", *names]
    }
    prompts = scores["untrained"].shape[1]
    rng = np.random.default_rng(0)
    draws_idx = [rng.integers(0, prompts, prompts) for _ in range(draws)]
    out = {}
    for name in names:
        diff = scores[name] - scores["untrained"]  # (labels, prompts, objectives)
        per_point = {
            label: {"gain": diff[i].mean(0).tolist(), "se": (diff[i].std(0, ddof=1) / np.sqrt(prompts)).tolist()}
            for i, label in enumerate(labels)
        }
        whole = _hypervolume_gain(scores[name], scores["untrained"], np.arange(prompts), reference)
        spread = float(
            np.std([_hypervolume_gain(scores[name], scores["untrained"], idx, reference) for idx in draws_idx], ddof=1)
        )
        base = hypervolume(scores["untrained"].mean(1), np.asarray(reference))
        out[name] = {
            "per_point": per_point,
            "hypervolume_gain": whole,
            "hypervolume_gain_se": spread,
            "hypervolume_gain_relative": whole / base if base > 0 else None,
        }
    return out


def _hypervolume_gain(trained: np.ndarray, untrained: np.ndarray, prompts: np.ndarray, reference: list[float]) -> float:
    from hoe.evaluation.metrics import hypervolume

    return hypervolume(trained[:, prompts].mean(1), np.asarray(reference)) - hypervolume(
        untrained[:, prompts].mean(1), np.asarray(reference)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE / "work-gain")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-tokens", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--kl-coef", type=float, default=0.02)
    parser.add_argument("--prompts", type=int, default=96, help="Held-out prompts in the evaluation.")
    parser.add_argument("--tokens", type=int, default=64, help="New tokens per answer in the evaluation.")
    parser.add_argument("--kinds", default="tchebycheff,linear")
    parser.add_argument(
        "--anchors", default="0.25,0.75", help="Anchors to train, ';'-separated (new ones get a router)."
    )
    parser.add_argument("--tag", default="gain")
    parser.add_argument("--recipe", type=Path, default=HERE / "gain-recipe.yaml")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--train-minutes",
        type=float,
        default=None,
        help="Stop each router's PPO after the step that crosses this wall time (the steps done are reported).",
    )
    parser.add_argument("--temperature", type=float, default=1.0, help="Sampling temperature of the PPO rollouts.")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--omd-step", type=float, default=1.0)
    parser.add_argument("--minibatches", type=int, default=2)
    parser.add_argument("--calibration-prompts", type=int, default=16)
    parser.add_argument("--eval-batch", type=int, default=16)
    parser.add_argument(
        "--report-only", action="store_true", help="Redo the paired analysis and results-TAG.md from the work folder."
    )
    args = parser.parse_args()
    if args.report_only:
        results = json.loads((HERE / f"results-{args.tag}.json").read_text())
        results["paired"] = paired_fronts(
            args.work,
            [k for k in KINDS if k in results["evaluations"]],
            [p["label"] for p in results["evaluations"]["untrained"]["points"]],
            results["objectives"],
            results["shared_reference_point"],
        )
        write_results(results, f"results-{args.tag}", markdown)
        return
    kinds = [k for k in args.kinds.split(",") if k]
    anchors = [[float(v) for v in a.split(",")] for a in args.anchors.split(";")]

    base_bundle = args.work / "bundle"
    if not (base_bundle / "hoe.json").is_file():
        build_bundle(args.recipe, base_bundle)
    bundles = {"untrained": base_bundle, **{k: args.work / k for k in kinds}}
    runs: dict = {}
    for kind in kinds:
        if not (bundles[kind] / "hoe.json").is_file():
            shutil.copytree(base_bundle, bundles[kind], ignore=shutil.ignore_patterns("training"))
        for anchor in anchors:
            label = preference_label(anchor)
            runs[f"{kind}@{label}"] = train(
                bundles[kind], anchor, KINDS[kind], args, args.work / f"train-{kind}-{label}"
            )
    evaluations = {}
    for name, path in bundles.items():
        settings = EvalSettings(
            bundle=str(path),
            preferences="grid:5",
            methods=["hoe"],
            prompts="packaged:hh-helpful-test+packaged:hh-harmless",
            split="heldout",
            limit=args.prompts,
            device=args.device,
            decoding=Decoding(max_new_tokens=args.tokens, batch_size=args.eval_batch, max_prompt_tokens=192),
        )
        evaluations[name] = evaluate(settings, args.work / f"eval-{name}", overwrite=True)

    spec = json.loads((bundles[kinds[0]] / "hoe.json").read_text())
    objectives = spec["objectives"]
    at_anchor = {}
    for anchor in anchors:
        label = preference_label(anchor)
        record = router_training(bundles[kinds[0]], anchor)
        untrained = per_prompt_scores(args.work / "eval-untrained", label, objectives)
        norm = [record["normalisation"][o] for o in objectives]
        at_anchor[label] = {
            "normalisation": norm,
            "ideal": record["ideal"],
            "means": {
                name: per_prompt_scores(args.work / f"eval-{name}", label, objectives).mean(0).tolist()
                for name in bundles
            },
        }
        for kind in kinds:
            trained = per_prompt_scores(args.work / f"eval-{kind}", label, objectives)
            at_anchor[label][kind] = paired_gain(trained, untrained, anchor, norm, record["ideal"])
    last = runs[list(runs)[-1]]  # the last run's curve: the one least likely to share the machine with another job
    costs = step_costs(
        Path(last["work"]) / "curve.csv", base_bundle, args.batch_size, last["config"]["ppo_epochs"], device=args.device
    )
    results = {
        "objectives": objectives,
        "anchors": anchors,
        "runs": runs,
        "at_anchor": at_anchor,
        **costs,
        "device": device_name(args.device),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "evaluations": compact(evaluations),
    }
    results = shared_hypervolumes(results)
    results["paired"] = paired_fronts(
        args.work,
        kinds,
        [p["label"] for p in results["evaluations"]["untrained"]["points"]],
        objectives,
        results["shared_reference_point"],
    )
    write_results(results, f"results-{args.tag}", markdown)


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def markdown(results: dict) -> str:
    kinds = [k for k in KINDS if k in results["evaluations"]]
    objectives = results["objectives"]
    lines = [
        f"| anchor | bundle | {' | '.join(objectives)} | Tchebycheff objective | trained − untrained (paired bootstrap "
        "SE) |",
        "|---|---|" + "---:|" * (len(objectives) + 2),
    ]
    for label, entry in results["at_anchor"].items():
        first = entry[kinds[0]]
        lines.append(
            f"| [{label.replace('-', ', ')}] | untrained (static mix) | "
            + " | ".join(f"{v:.4f}" for v in entry["means"]["untrained"])
            + f" | {first['untrained']:+.3f} | |"
        )
        for kind in kinds:
            g = entry[kind]
            lines.append(
                f"| | trained, {kind} | "
                + " | ".join(f"{v:.4f}" for v in entry["means"][kind])
                + f" | {g['trained']:+.3f} | {g['gain']:+.3f} ± {g['bootstrap_se']:.3f} ({g['gain_in_se']:+.1f} SE) |"
            )
    reference = ", ".join(f"{v:.4g}" for v in results["shared_reference_point"])
    lines += ["", f"| bundle | hypervolume (grid:5, shared reference ({reference})) |", "|---|---:|"]
    for name, evaluation in results["evaluations"].items():
        lines.append(f"| {name} | {evaluation['methods']['hoe']['hypervolume_shared']:.4g} |")
    if "paired" in results:
        lines += [
            "",
            "| bundle | preference | " + " | ".join(f"Δ {o} (± SE)" for o in objectives) + " |",
            "|---|---|" + "---:|" * len(objectives),
        ]
        for kind, entry in results["paired"].items():
            for label, point in entry["per_point"].items():
                lines.append(
                    f"| {kind} − untrained | [{label.replace('-', ', ')}] | "
                    + " | ".join(f"{g:+.4f} ± {e:.4f}" for g, e in zip(point["gain"], point["se"]))
                    + " |"
                )
            lines.append(
                f"| {kind} − untrained | hypervolume | {entry['hypervolume_gain']:+.4g} ± "
                f"{entry['hypervolume_gain_se']:.2g} "
                f"(bootstrap SE; {100 * (entry['hypervolume_gain_relative'] or 0):+.0f}%) |"
                + " |"
                * (len(objectives) - 1)
            )
    phases = results["phases_median_s"]
    run = results["runs"][next(iter(results["runs"]))]
    lines += [
        "",
        f"PPO step (median, batch {results['plain_shape'][0]}, up to {run['config']['max_new_tokens']} new tokens): "
        "generation "
        f"{phases['generation_s']:.1f} s, policy + reference log-probs {phases['logprob_s']:.1f} s, scoring "
        f"{phases['scoring_s']:.2f} s, "
        f"PPO update {phases['update_s']:.1f} s; one router forward+backward pass {results['router_pass_s']:.1f} s vs "
        "a plain "
        f"forward+backward of the LM {results['plain_forward_backward_s']:.1f} s: "
        f"{results['router_pass_vs_plain']:.2f}×; "
        f"{run['trainable_parameters']:,} trainable parameters per router; training took "
        + ", ".join(
            f"{r['wall_s'] / 60:.1f} min for {r['steps']} steps of {r['config']['batch_size']} prompts ({name})"
            for name, r in results["runs"].items()
        )
        + f". Device: {results.get('device', 'CPU')}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
