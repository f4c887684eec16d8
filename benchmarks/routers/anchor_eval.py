"""The trained router against the untrained one at its anchor, on every held-out prompt there is.

    .venv/bin/python benchmarks/routers/anchor_eval.py --work benchmarks/routers/work-gain-gpu --tag gain-gpu

``gain.py`` evaluates a whole grid on 134 held-out prompts, which leaves the anchor's paired
standard error wide. This script answers at the anchor alone, greedily, on 574 prompts no router
was trained on: the 500 prompts of the HH-RLHF helpful test set (routers train on the helpful SFT
and harmless sets) and the held-out split of the harmless set. Both bundles of ``gain.py``'s work
folder answer the same prompts on the same device; reported is the Tchebycheff objective on the
router's normalisation and z* with a paired bootstrap over prompts, and each objective's paired
difference. Results: results-TAG-anchor.json and .md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from gain import (
    KINDS,
    paired_gain,
    per_prompt_scores,
    router_training,
)  # benchmarks/routers/gain.py, beside this script

from hoe.evaluation import Decoding, EvalSettings, evaluate
from hoe.evaluation.preference_sets import preference_label

HERE = Path(__file__).resolve().parent
SOURCES = {"helpful-test": ("packaged:hh-helpful-test", "all"), "harmless-heldout": ("packaged:hh-harmless", "heldout")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE / "work-gain")
    parser.add_argument("--tag", default="gain")
    parser.add_argument("--anchor", default="0.25,0.75")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    anchor = [float(v) for v in args.anchor.split(",")]
    label = preference_label(anchor)
    preference_file = args.work / "anchor.json"
    preference_file.write_text(json.dumps([anchor]))
    names = ["untrained", *[k for k in KINDS if (args.work / k / "hoe.json").is_file()]]
    bundles = {"untrained": args.work / "bundle", **{k: args.work / k for k in names[1:]}}
    spec = json.loads((bundles[names[1]] / "hoe.json").read_text())
    objectives = spec["objectives"]
    scores: dict[str, list[np.ndarray]] = {n: [] for n in names}
    counts = {}
    for source, (prompts, split) in SOURCES.items():
        for name in names:
            out = args.work / f"anchor-{name}-{source}"
            settings = EvalSettings(
                bundle=str(bundles[name]),
                preferences=str(preference_file),
                methods=["hoe"],
                prompts=prompts,
                split=split,
                limit=None,
                device=args.device,
                decoding=Decoding(max_new_tokens=args.tokens, batch_size=16, max_prompt_tokens=192),
            )
            evaluate(settings, out, overwrite=False)
            scores[name].append(per_prompt_scores(out, label, objectives))
        counts[source] = len(scores["untrained"][-1])
    pooled = {n: np.concatenate(v) for n, v in scores.items()}
    results = {
        "objectives": objectives,
        "anchor": anchor,
        "prompts": counts,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "means": {n: v.mean(0).tolist() for n, v in pooled.items()},
        "kinds": {},
    }
    for kind in names[1:]:
        record = router_training(bundles[kind], anchor)
        norm = [record["normalisation"][o] for o in objectives]
        diff = pooled[kind] - pooled["untrained"]
        results["kinds"][kind] = {
            "tchebycheff": paired_gain(pooled[kind], pooled["untrained"], anchor, norm, record["ideal"]),
            "objective_gain": diff.mean(0).tolist(),
            "objective_se": (diff.std(0, ddof=1) / np.sqrt(len(diff))).tolist(),
            "router_steps": record["steps"],
        }
    (HERE / f"results-{args.tag}-anchor.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / f"results-{args.tag}-anchor.md").write_text(markdown(results) + "\n")
    print(markdown(results))


def markdown(results: dict) -> str:
    o = results["objectives"]
    total = sum(results["prompts"].values())
    lines = [
        f"At [{', '.join(f'{v:g}' for v in results['anchor'])}], {total} held-out prompts "
        f"({', '.join(f'{n} {c}' for n, c in results['prompts'].items())}), greedy:",
        "",
        f"| bundle | {' | '.join(o)} | Tchebycheff objective | trained − untrained (paired bootstrap SE) |",
        "|---|" + "---:|" * (len(o) + 2),
    ]
    first = next(iter(results["kinds"].values()))["tchebycheff"]
    lines.append(
        "| untrained (static mix) | "
        + " | ".join(f"{v:.4f}" for v in results["means"]["untrained"])
        + f" | {first['untrained']:+.3f} | |"
    )
    for kind, entry in results["kinds"].items():
        g = entry["tchebycheff"]
        lines.append(
            f"| trained, {kind} ({entry['router_steps']} steps) | "
            + " | ".join(
                f"{v:.4f} ({d:+.4f} ± {e:.4f})"
                for v, d, e in zip(results["means"][kind], entry["objective_gain"], entry["objective_se"])
            )
            + f" | {g['trained']:+.3f} | {g['gain']:+.3f} ± {g['bootstrap_se']:.3f} ({g['gain_in_se']:+.1f} SE) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
