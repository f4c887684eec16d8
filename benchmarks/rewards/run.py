"""Train the shipped reward heads and measure them: pair accuracy with a 95% interval on the eval and
held-out prompt splits, beside the length rule and every offline heuristic scorer; which features the
head uses (an ablation on the eval split only); and how the two heads judge each other's pairs.

    .venv/bin/python benchmarks/rewards/run.py     # about 6 minutes on 2 CPU cores

Writes ``src/hoe/rewards/heads/<name>/`` (the heads the package ships, with their data license in
``head.json``) and ``benchmarks/rewards/results.{json,md}``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from hoe.rewards.preference_head import (
    EMBEDDING_SIZE,
    FEATURE_SIZE,
    PreferenceHead,
    accuracy_interval,
    feature_differences,
    fit_bradley_terry,
    read_preference_pairs,
    shipped_head_folder,
    split_pairs,
    train_reward_head,
)
from hoe.rewards.settings import HEAD_REPORT, RewardHeadSettings

HERE = Path(__file__).resolve().parent
HEADS = {
    "harmlessness": {
        "pairs": "packaged:hh-harmless",
        "license": "MIT",
        "data": "Anthropic HH-RLHF harmless-base test pairs (human labels), anthropics/hh-rlhf @354e5c3",
    },
    "helpfulness": {
        "pairs": "packaged:dove-helpful+packaged:alpaca-gpt4",
        "license": "CC BY-NC 4.0 (inherits AlpacaEval's; research and non-commercial use)",
        "data": "DOVE helpful preference pairs (ChatGPT labels, MIT), Hritikbansal/dove @02e53a0; AlpacaEval "
        "alpaca-7b vs text-davinci-003 pairs (GPT-4 labels, CC BY-NC 4.0), tatsu-lab/alpaca_eval @cd543a1",
    },
}
# Column blocks of hoe.rewards.preference_head.pair_features.
BLOCKS = {
    "response": slice(0, EMBEDDING_SIZE),
    "prompt*response": slice(EMBEDDING_SIZE, 2 * EMBEDDING_SIZE),
    "cosine": slice(2 * EMBEDDING_SIZE, 2 * EMBEDDING_SIZE + 1),
    "length": slice(2 * EMBEDDING_SIZE + 1, 2 * EMBEDDING_SIZE + 2),
}
ABLATIONS = {
    "all (shipped)": ["response", "prompt*response", "cosine", "length"],
    "response only": ["response"],
    "response + length": ["response", "length"],
    "prompt*response + cosine": ["prompt*response", "cosine"],
    "length only": ["length"],
}


def train_and_ship(name: str, spec: dict, scratch: Path) -> dict:
    """Train one head through the public API, then install it (with its license) into the package."""
    out = scratch / name
    report = train_reward_head(RewardHeadSettings(pairs=spec["pairs"]), out)
    head = PreferenceHead.load(out)
    head.meta.update({"name": name, "license": spec["license"], "data": spec["data"]})
    target = shipped_head_folder(name)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    head.save(target)
    shutil.copy(out / HEAD_REPORT, target / HEAD_REPORT)
    return report


def ablation(pairs_spec: str) -> dict:
    """Eval-split accuracy of heads fitted on feature subsets (the held-out split is not looked at)."""
    splits = split_pairs(read_preference_pairs(pairs_spec))
    train, evaluation = feature_differences(splits["train"]), feature_differences(splits["eval"])
    results = {}
    for label, blocks in ABLATIONS.items():
        columns = np.r_[tuple(np.arange(FEATURE_SIZE)[BLOCKS[block]] for block in blocks)]
        weights, _ = fit_bradley_terry(train[:, columns], folds=5, seed=0)
        results[label] = accuracy_interval(evaluation[:, columns] @ weights)
    return results


REFUSAL_PAIRS = "packaged:hh-helpful-refusals"


def over_refusal() -> dict:
    """Does a harmlessness head reward refusing a benign request? Held-out accuracy on the benign refusal
    pairs (answer preferred to a refusal; ``refusal_pairs.py``) of the shipped head, and of a head fitted
    the same way on the HH-RLHF harmless pairs plus those pairs, with what that costs on the harmless
    pairs. Only train splits are fitted on; the held-out split is read for these numbers alone."""
    harmless = split_pairs(read_preference_pairs(HEADS["harmlessness"]["pairs"]))
    refusals = split_pairs(read_preference_pairs(REFUSAL_PAIRS))
    with_refusals, strength = fit_bradley_terry(
        feature_differences(harmless["train"] + refusals["train"]), folds=5, seed=0
    )
    heads = {
        "shipped (harmless pairs only)": PreferenceHead.load(shipped_head_folder("harmlessness")).weights,
        "harmless + refusal pairs": with_refusals,
    }
    held_out = {
        "hh-harmless": feature_differences(harmless["heldout"]),
        "hh-helpful-refusals": feature_differences(refusals["heldout"]),
    }
    return {
        "refusal_pairs": {split: len(rows) for split, rows in refusals.items()},
        "l2_c_with_refusals": strength,
        "heldout": {
            head: {name: accuracy_interval(differences @ weights) for name, differences in held_out.items()}
            for head, weights in heads.items()
        },
    }


def cross_accuracy() -> dict:
    """Each shipped head's accuracy on the other objective's held-out pairs: below 0.5 means it prefers
    the reply the other objective rejects, i.e. the two objectives conflict on those pairs."""
    results = {}
    for head_name in HEADS:
        head = PreferenceHead.load(shipped_head_folder(head_name))
        for pairs_name, spec in HEADS.items():
            pairs = split_pairs(read_preference_pairs(spec["pairs"]))["heldout"]
            margins = feature_differences(pairs) @ head.weights
            results[f"{head_name} head on {pairs_name} pairs"] = accuracy_interval(margins)
    return results


def markdown(results: dict) -> str:
    lines = ["# Learned reward heads", "", f"Command: `{results['command']}`; {results['seconds']:.0f} s in all.", ""]
    for name, report in results["heads"].items():
        lines += [f"## {name} (`{report['settings']['pairs']}`)", ""]
        lines += [f"Pairs: {report['pairs']}; L2 C = {report['l2_c']:.3g}; trained in {report['seconds']:.0f} s.", ""]
        lines += ["| split | rule | accuracy | 95% CI | head − rule (paired SE) |", "|---|---|---|---|---|"]
        for split in ("eval", "heldout"):
            head = report[split]["head"]
            interval = f"{head['low']:.3f}–{head['high']:.3f}"
            lines.append(f"| {split} | **head** | **{head['accuracy']:.3f}** | {interval} | |")
            for rule, row in report[split]["baselines"].items():
                gain = row["head_gain"]
                lines.append(
                    f"| {split} | {rule} | {row['accuracy']:.3f} | {row['low']:.3f}–{row['high']:.3f} "
                    f"| {gain['gain']:+.3f} ({gain['se']:.3f}) |"
                )
        lines.append("")
    refusal = results["over_refusal"]
    lines += [
        "## Over-refusal: harmless pairs against benign refusal pairs (held-out split)",
        "",
        f"Benign refusal pairs per split: {refusal['refusal_pairs']}.",
        "",
        "| head | pairs | accuracy | 95% CI |",
        "|---|---|---|---|",
    ]
    for head, sources in refusal["heldout"].items():
        for source, row in sources.items():
            lines.append(f"| {head} | {source} | {row['accuracy']:.3f} | {row['low']:.3f}–{row['high']:.3f} |")
    lines += ["", "## Feature ablation (harmless pairs, eval split only)", "", "| features | accuracy | 95% CI |"]
    lines.append("|---|---|---|")
    for label, row in results["ablation_eval"].items():
        lines.append(f"| {label} | {row['accuracy']:.3f} | {row['low']:.3f}–{row['high']:.3f} |")
    lines += ["", "## Cross accuracy (held-out pairs)", "", "| head on pairs | accuracy | 95% CI |", "|---|---|---|"]
    for label, row in results["cross_heldout"].items():
        lines.append(f"| {label} | {row['accuracy']:.3f} | {row['low']:.3f}–{row['high']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        heads = {name: train_and_ship(name, spec, Path(scratch)) for name, spec in HEADS.items()}
    results = {
        "command": ".venv/bin/python benchmarks/rewards/run.py",
        "heads": heads,
        "over_refusal": over_refusal(),
        "ablation_eval": ablation(HEADS["harmlessness"]["pairs"]),
        "cross_heldout": cross_accuracy(),
    }
    results["seconds"] = time.perf_counter() - started
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
