"""How often experts' answers look like refusals or loops, one expert against another, paired over the same prompts.

    .venv/bin/python benchmarks/experts/refusals.py --validation --against A=FOLDER --expert B=FOLDER [--expert ...]

Why: run.py reports each candidate's share of refusal-like and repetitive answers per subset, but two candidates
scored in two runs are only compared by those shares, not paired. Both runs save their greedy answers to the same
prompts (``work/answers[-validation]/<folder>.json``), so the difference can be taken prompt by prompt, which is
what says whether a gap of ten points is noise. Reads the saved answers only: no model loads, no scoring; an
expert whose answers are missing or were made for other prompts exits 2 naming it (run run.py for it first).
Each expert minus the reference: mean per-prompt difference, paired SE and 95% normal interval, per subset.
Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from run import heldout_subsets, repetitive, validation_subsets
from xstest import difference_cell, labelled_pairs, paired_by_rule, rate

from hoe.rewards.offline import refusal_like

HERE = Path(__file__).resolve().parent
RULES = {"refusal_like": refusal_like, "repetitive": repetitive}


def labelled_folders(pairs: list[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    """``LABEL=FOLDER`` pairs: a label per model folder (its name finds its saved answers)."""
    return {label: Path(folder).name for label, folder in labelled_pairs(pairs, parser, "--against/--expert").items()}


def saved_responses(folder: Path, name: str, prompts: list[str]) -> list[str] | str:
    """One model's saved greedy answers to exactly ``prompts``, or why there are none (a one-line reason)."""
    path = folder / f"{name}.json"
    if not path.is_file():
        return f"no saved answers for {name} in {folder}"
    saved = json.loads(path.read_text())
    if saved.get("prompts") != prompts:
        return f"{path.name}: answers to other prompts than these (another --per-subset or prompt set?)"
    return saved["responses"]


def flags_by_subset(responses: list[str], subsets: dict[str, list[str]]) -> dict[str, dict[str, list[bool]]]:
    """Per rule and subset, each answer's flag (the subsets' prompts follow each other in ``responses``)."""
    flags: dict[str, dict[str, list[bool]]] = {rule: {} for rule in RULES}
    start = 0
    for name, prompts in subsets.items():
        for rule, test in RULES.items():
            flags[rule][name] = [test(text) for text in responses[start : start + len(prompts)]]
        start += len(prompts)
    return flags


def summary(folders: dict[str, str], reference: str, flags: dict, prompt_set: str) -> dict:
    """Rates per model, rule and subset, and every other model minus the reference paired over prompts."""
    return {
        "prompt_set": prompt_set,
        "models": folders,
        "reference": reference,
        "prompts": {name: len(values) for name, values in flags[reference]["refusal_like"].items()},
        "rates": {
            label: {rule: {name: rate(v) for name, v in by_subset.items()} for rule, by_subset in by_rule.items()}
            for label, by_rule in flags.items()
        },
        "against_reference": {
            label: paired_by_rule(by_rule, flags[reference]) for label, by_rule in flags.items() if label != reference
        },
    }


def markdown(report: dict) -> str:
    subsets = list(report["prompts"])
    columns = [(rule, name) for rule in RULES for name in subsets]
    header = "| model | " + " | ".join(f"{name}, {rule.replace('_', '-')}" for rule, name in columns) + " |"
    lines = [
        f"Saved greedy answers to the {report['prompt_set']} prompts ("
        + ", ".join(f"{n} {name}" for name, n in report["prompts"].items())
        + "). Rate ± SE:",
        "",
        header,
        "|---|" + "---:|" * len(columns),
    ]
    for label, rates in report["rates"].items():
        cells = [f"{rates[rule][name]['rate']:.1%} ± {rates[rule][name]['se']:.1%}" for rule, name in columns]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    lines += ["", f"Each model minus {report['reference']}, paired over the same prompts (difference [95% interval]):"]
    lines += ["", header, "|---|" + "---:|" * len(columns)]
    for label, by_rule in report["against_reference"].items():
        lines.append(f"| {label} | {' | '.join(difference_cell(by_rule[rule][name]) for rule, name in columns)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="LABEL=FOLDER: the reference every other model is minus")
    parser.add_argument("--expert", action="append", required=True, help="LABEL=FOLDER (repeatable)")
    parser.add_argument("--validation", action="store_true", help="run.py --validation's prompts and answers")
    parser.add_argument("--per-subset", type=int, default=128, help="as run.py's --per-subset")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument(
        "--out", type=Path, required=True, help="results stem, relative to this directory: OUT.json, OUT.md"
    )
    args = parser.parse_args()
    folders = labelled_folders([args.against, *args.expert], parser)
    reference = next(iter(folders))
    subsets = (validation_subsets if args.validation else heldout_subsets)(args.per_subset)
    prompts = [p for group in subsets.values() for p in group]
    answers_folder = args.work / ("answers-validation" if args.validation else "answers")
    flags = {}
    for label, name in folders.items():
        responses = saved_responses(answers_folder, name, prompts)
        if isinstance(responses, str):
            parser.exit(2, f"refusals.py: error: {responses}\n")
        flags[label] = flags_by_subset(responses, subsets)
    prompt_set = "validation (end of the train split)" if args.validation else "held-out"
    report = summary(folders, reference, flags, prompt_set)
    out = HERE / args.out  # an absolute --out stays as given
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
