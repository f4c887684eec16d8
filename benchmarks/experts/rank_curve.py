"""How much of a full fine-tune's own-objective gain its LoRA expert keeps, by rank (issue 16, part 3).

For the expert of each objective with the largest effect among `run.py`'s results whose own gain
is at least 3 paired SE (a gain too small to measure cannot be said to be kept or lost), the task
vector of the full fine-tune is extracted by task-SVD at ranks 8, 16, 32 and 64 (`hoe extract`),
the base with each LoRA (peft, unmerged, as a HoE expert runs) answers the same 256 held-out
prompts greedily, and the own objective is scored.

    retained = mean(LoRA − base) / mean(full − base), paired over prompts,
    with a 95% bootstrap interval (2,000 resamples of the prompts).

Cost: milliseconds per decoding step at batch 16 (the LoRA's extra matmuls), measured side by
side on the first 32 prompts for the base, the full fine-tune and every rank, in one process.

    .venv/bin/python benchmarks/experts/rank_curve.py --suite helpful-harmless
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
from pathlib import Path

from peft import PeftModel

from hoe.benchmarking.generation import answer_prompts
from hoe.checkpoints import load_model, load_tokenizer
from hoe.checkpoints.loading import DEFAULT_MODEL, cache_root
from hoe.experts import ExtractSettings, extract_expert
from hoe.rewards import ScoreCache, score_objectives
from hoe.training.sampling import weights_stamp

HERE = Path(__file__).resolve().parent
RANKS = (8, 16, 32, 64)
BATCH, NEW_TOKENS, TIMED_PROMPTS = 16, 64, 32


def answer(model, tokenizer, prompts: list[str]) -> tuple[list[str], float]:
    """Greedy answers and the milliseconds per decoding step (batch of 16)."""
    return answer_prompts(model, tokenizer, prompts, new_tokens=NEW_TOKENS, batch=BATCH)


def share_of_gain(high: list[float], low: list[float], full: list[float], base: list[float], seed: int = 0) -> tuple:
    """(mean(high) − mean(low)) / mean(full − base), paired over prompts, and its 95% bootstrap interval
    (2,000 resamples of the prompts)."""
    n = len(base)
    value = (statistics.mean(high) - statistics.mean(low)) / (statistics.mean(full) - statistics.mean(base))
    rng, draws = random.Random(seed), []
    for _ in range(2000):
        index = [rng.randrange(n) for _ in range(n)]
        full_gain = sum(full[i] - base[i] for i in index)
        if full_gain != 0:
            draws.append(sum(high[i] - low[i] for i in index) / full_gain)
    draws.sort()
    return round(value, 3), [round(draws[int(0.025 * len(draws))], 3), round(draws[int(0.975 * len(draws)) - 1], 3)]


def retained(lora: list[float], full: list[float], base: list[float], seed: int = 0) -> dict:
    """The share of the full fine-tune's mean paired gain that the LoRA keeps, with a paired bootstrap interval."""
    value, interval = share_of_gain(lora, base, full, base, seed)
    return {"retained": value, "ci95": interval}


def retained_difference(high: list[float], low: list[float], full: list[float], base: list[float]) -> dict:
    """How much more of the full fine-tune's gain one LoRA keeps than another (e.g. rank 128 against 64),
    as a share of the full gain, paired over prompts, with a 95% bootstrap interval."""
    value, interval = share_of_gain(high, low, full, base)
    return {"difference": value, "ci95": interval}


def extraction(full: Path, rank: int, work: Path) -> Path:
    """The full fine-tune's task-SVD at ``rank``, made once per build of it: the source's weight stamp is kept
    beside the adapter, and an adapter of an earlier build at the same path is made again."""
    adapter = work / "rank-curve" / f"{full.name}-r{rank}"
    source = adapter.parent / f"{adapter.name}-source.json"
    stamp = weights_stamp(full)
    made = (adapter / "adapter_config.json").is_file() and source.is_file()
    if not made or json.loads(source.read_text()) != stamp:
        extract_expert(DEFAULT_MODEL, full, adapter, ExtractSettings(rank=rank), overwrite=True, progress=False)
        source.write_text(json.dumps(stamp))
    return adapter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="helpful-harmless")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--experts", help="labels, comma-separated (default: per objective, the largest effect)")
    args = parser.parse_args()
    stem = "results" if args.suite == "assistant" else f"results-{args.suite}"
    results = json.loads((HERE / f"{stem}.json").read_text())
    count, steps = (re.search(rf"--{flag} (\d+)", results["command"]).group(1) for flag in ("prompt-count", "steps"))
    measurable = {label: v for label, v in results["verdicts"].items() if (v["gain_in_paired_se"] or 0) >= 3}
    best: dict[str, str] = {}  # per objective, the expert with the largest effect (the one a bundle would use)
    for label, verdict in measurable.items():
        objective = label.split(" (")[0]
        if objective not in best or verdict["effect_size_d"] > measurable[best[objective]]["effect_size_d"]:
            best[objective] = label
    chosen = {label: measurable[label] for label in (args.experts.split(",") if args.experts else best.values())}
    answers_dir = args.work / "answers"
    base_saved = json.loads((answers_dir / "base.json").read_text())
    prompts = base_saved["prompts"]
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    tokenizer.padding_side = "left"
    cache = ScoreCache(cache_root() / "scores.sqlite")
    base = load_model(DEFAULT_MODEL)
    _, base_ms = answer(base, tokenizer, prompts[:TIMED_PROMPTS])
    report = {"suite": args.suite, "prompts": len(prompts), "base_ms_per_step": round(base_ms, 2), "experts": {}}
    for label, verdict in chosen.items():
        objective, method = label.rstrip(")").split(" (")
        folder = args.work / f"{objective}-{method}-p{count}-s{steps}"
        saved = answers_dir / f"{label.replace(' ', '_').replace('(', '').replace(')', '')}.json"
        full_answers = json.loads(saved.read_text())["responses"]

        def score(texts: list[str], objective: str = objective) -> list[float]:
            return score_objectives([objective], prompts, texts, cache=cache)[objective]

        base_scores, full_scores = score(base_saved["responses"]), score(full_answers)
        _, full_ms = answer(load_model(folder), tokenizer, prompts[:TIMED_PROMPTS])
        rows = {}
        for rank in RANKS:
            adapter = extraction(folder, rank, args.work)
            model = PeftModel.from_pretrained(load_model(DEFAULT_MODEL), adapter).eval()
            texts, _ = answer(model, tokenizer, prompts)
            _, ms = answer(model, tokenizer, prompts[:TIMED_PROMPTS])
            rows[rank] = {
                **retained(score(texts), full_scores, base_scores),
                "own_mean": round(statistics.mean(score(texts)), 4),
                "ms_per_step": round(ms, 2),
                "adapter_mb": round(sum(p.stat().st_size for p in adapter.glob("*.safetensors")) / 2**20, 2),
            }
            print(label, rank, rows[rank], flush=True)
        report["experts"][label] = {
            "base_mean": round(statistics.mean(base_scores), 4),
            "full_mean": round(statistics.mean(full_scores), 4),
            "full_gain_in_paired_se": verdict["gain_in_paired_se"],
            "full_ms_per_step": round(full_ms, 2),
            "ranks": rows,
        }
    report["command"] = f".venv/bin/python benchmarks/experts/rank_curve.py --suite {args.suite}"
    (HERE / f"rank-curve-{args.suite}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, HERE / f"rank-curve-{args.suite}.png")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for label, expert in report["experts"].items():
        ranks = [int(r) for r in expert["ranks"]]
        values = [expert["ranks"][r]["retained"] for r in expert["ranks"]]
        low = [v - expert["ranks"][r]["ci95"][0] for v, r in zip(values, expert["ranks"])]
        high = [expert["ranks"][r]["ci95"][1] - v for v, r in zip(values, expert["ranks"])]
        left.errorbar(ranks, values, yerr=[low, high], marker="o", capsize=3, label=label)
        right.plot(ranks, [expert["ranks"][r]["ms_per_step"] for r in expert["ranks"]], marker="o", label=label)
        right.axhline(expert["full_ms_per_step"], linestyle=":", color="grey")
    left.axhline(0.9, linestyle="--", color="grey", label="90% goal")
    left.set(xscale="log", xticks=list(RANKS), xticklabels=list(RANKS), xlabel="LoRA rank", ylabel="gain retained")
    right.axhline(report["base_ms_per_step"], linestyle="--", color="black", label="base")
    right.set(xscale="log", xticks=list(RANKS), xticklabels=list(RANKS), xlabel="LoRA rank", ylabel="ms per step")
    for axis in (left, right):
        axis.minorticks_off()
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
