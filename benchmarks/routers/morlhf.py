"""MORLHF on the embedded model: one LoRA trained by PPO with linear scalarisation at the
router's anchor, against HoE's trained router there, at the same PPO budget.

    .venv/bin/python benchmarks/routers/morlhf.py    # after gain.py trained its routers

MORLHF (the method doc's expensive baseline) trains a fresh LoRA on the base for every λ; HoE
trains one router over experts that exist already. Both get the same PPO budget here (steps,
prompts per step, answer length, KL coefficient), and both answer the same held-out prompts
greedily at the anchor [0.25, 0.75] of ``gain.py``'s bundle. Reported: each method's mean
rewards, the Tchebycheff objective on the router's normalisation and z* with a paired bootstrap
against HoE, trainable parameters and training time. Results: results-morlhf.json, .md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml
from gain import paired_gain, per_prompt_scores, router_training  # benchmarks/routers/gain.py, beside this script
from safetensors import safe_open

from hoe.evaluation import Decoding, EvalSettings, evaluate
from hoe.evaluation.preference_sets import preference_label

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle",
        type=Path,
        default=HERE / "work-gain" / "tchebycheff",
        help="gain.py's bundle with the trained router.",
    )
    parser.add_argument("--work", type=Path, default=HERE / "work-morlhf")
    parser.add_argument("--anchor", default="0.25,0.75")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-tokens", type=int, default=64)
    parser.add_argument(
        "--lr", type=float, default=1e-4, help="LoRA learning rate (make-expert --method ppo's default)."
    )
    parser.add_argument("--kl-coef", type=float, default=0.02)
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    anchor = [float(v) for v in args.anchor.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    config = dict(
        trainable="lora",
        scalarisation="linear",
        steps=args.steps,
        batch_size=args.batch_size,
        max_new_tokens=args.train_tokens,
        prompt_count=args.steps * args.batch_size,
        max_prompt_tokens=128,
        learning_rate=args.lr,
        kl_coef=args.kl_coef,
        calibration_prompts=16,
        checkpoint_every=4,
    )
    (args.work / "morlhf.yaml").write_text(yaml.safe_dump(config))
    (args.work / "preferences.json").write_text(json.dumps([anchor]))
    settings = EvalSettings(
        bundle=str(args.bundle),
        preferences=str(args.work / "preferences.json"),
        methods=["hoe", "morlhf"],
        prompts="packaged:hh-helpful-test+packaged:hh-harmless",
        split="heldout",
        limit=args.prompts,
        device=args.device,
        morlhf_config=str(args.work / "morlhf.yaml"),
        decoding=Decoding(max_new_tokens=args.tokens, batch_size=16, max_prompt_tokens=192),
    )
    start = time.perf_counter()
    evaluation = evaluate(settings, args.work / "eval", overwrite=False)
    wall = time.perf_counter() - start

    spec = json.loads((args.bundle / "hoe.json").read_text())
    objectives = spec["objectives"]
    record = router_training(args.bundle, anchor)
    label = preference_label(anchor)
    norm = [record["normalisation"][o] for o in objectives]
    hoe_scores = per_prompt_scores(args.work / "eval", label, objectives)
    morlhf_scores = per_prompt_scores(args.work / "eval", label, objectives, method="morlhf")
    adapter = args.work / "eval" / "work" / "morlhf" / label
    curve = (adapter / "curve.csv").read_text().splitlines()
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as handle:
        lora_parameters = sum(int(np.prod(handle.get_slice(k).get_shape())) for k in handle.keys())
    results = {
        "objectives": objectives,
        "anchor": anchor,
        "settings": vars(args) | {"bundle": str(args.bundle), "work": str(args.work)},
        "morlhf_config": config,
        "means": {"hoe": hoe_scores.mean(0).tolist(), "morlhf": morlhf_scores.mean(0).tolist()},
        "morlhf_vs_hoe": paired_gain(morlhf_scores, hoe_scores, anchor, norm, record["ideal"]),
        "router": {
            "steps": record["steps"],
            "trainable_parameters": record["trainable_parameters"],
            "config": record["config"],
        },
        "morlhf_steps": len(curve) - 1,
        "morlhf_trainable_parameters": lora_parameters,
        "evaluation_wall_s": wall,
        "costs": {m: evaluation["methods"][m].get("cost_vs_base") for m in ("hoe", "morlhf")},
    }
    (HERE / "results-morlhf.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "results-morlhf.md").write_text(markdown(results) + "\n")
    print(markdown(results))


def markdown(results: dict) -> str:
    o = results["objectives"]
    g = results["morlhf_vs_hoe"]
    lines = [
        f"| method at [{', '.join(f'{v:g}' for v in results['anchor'])}] | {' | '.join(o)} | Tchebycheff objective | "
        "PPO steps | trainable parameters |",
        "|---|" + "---:|" * (len(o) + 3),
        "| HoE, trained router | "
        + " | ".join(f"{v:.4f}" for v in results["means"]["hoe"])
        + f" | {g['untrained']:+.3f} | {results['router']['steps']} | {results['router']['trainable_parameters']:,} |",
        f"| MORLHF (LoRA r{results['morlhf_config'].get('lora_rank', 8)}, linear) | "
        + " | ".join(f"{v:.4f}" for v in results["means"]["morlhf"])
        + f" | {g['trained']:+.3f} | {results['morlhf_steps']} | {results['morlhf_trainable_parameters']:,} |",
        "",
        f"MORLHF − HoE on the Tchebycheff objective: {g['gain']:+.3f} ± {g['bootstrap_se']:.3f} (paired bootstrap SE, "
        f"{g['gain_in_se']:+.1f} SE).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
