"""Merge benchmark: three rank-16 experts of the embedded model merged with every method.

Experts: task-SVD (rank 16) of three real full fine-tunes of SmolLM2-135M-Instruct, on HH-RLHF
helpful responses, HH-RLHF harmless responses and AlpacaEval davinci-003 answers (the demo's
fine-tunes, cached). Each merge (equal weights, rank 16) runs as its own `hoe merge` process,
several times: wall time is the median, peak RSS the child's own.

Quality, until reward models land: how far the merged expert's next-token distributions are
from each source's on held-out prompts, as mean per-token KL(source ‖ merged), beside the
distances between the sources themselves. A merge that sits between its sources is closer to
each source than the other sources are.

    .venv/bin/python benchmarks/merge/run.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch

from hoe.benchmarking.process import measure_process
from hoe.benchmarking.reference_models import reference_experts
from hoe.checkpoints import load_model, load_tokenizer, resolve_checkpoint
from hoe.checkpoints.loading import DEFAULT_MODEL
from hoe.data import sft_pairs
from hoe.experts.fidelity import chat_batch, mean_kl, next_token_log_probs
from hoe.merging import MERGE_METHODS

HERE = Path(__file__).resolve().parent
SOURCES = ("helpful", "harmless", "instruct")


def held_out_prompts(count: int) -> list[str]:
    """Prompts none of the fine-tunes saw: half HH helpful test, half AlpacaEval's tail."""
    helpful = [p for p, _ in sft_pairs("hh-helpful-test")[: count // 2]]
    alpaca = [p for p, _ in sft_pairs("alpaca-davinci")[-(count - count // 2) :]]
    return helpful + alpaca


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    args = parser.parse_args()

    base_dir = resolve_checkpoint(DEFAULT_MODEL)
    experts = reference_experts(args.work / "experts", rank=args.rank)
    hoe = str(Path(sys.executable).parent / "hoe")
    timings = {}
    for method in MERGE_METHODS:
        out = args.work / "merged" / method
        command = [
            hoe,
            "merge",
            "--base",
            str(base_dir),
            "--experts",
            *map(str, experts.values()),
            "--method",
            method,
            "--rank",
            str(args.rank),
            "--objectives",
            ",".join(SOURCES),
            "--device",
            "cpu",
            "--out",
            str(out),
            "--overwrite",
            "--quiet",
        ]
        runs = [measure_process(command) for _ in range(args.repeats)]
        report = json.loads((out / "merge_report.json").read_text())
        timings[method] = {
            "wall_s_median": round(statistics.median(w for w, _ in runs), 2),
            "wall_s_all": [round(w, 2) for w, _ in runs],
            "peak_rss_mb": round(max(r for _, r in runs)),
            "compression_error": report["totals"]["mean_relative_error"],
            "parameters": report["parameters"],
        }
        print(method, timings[method], flush=True)

    from peft import PeftModel

    tokenizer = load_tokenizer(DEFAULT_MODEL)
    tokenizer.padding_side = "right"
    batch = chat_batch(tokenizer, held_out_prompts(args.prompts), max_length=128)
    mask = batch["attention_mask"].bool()
    base = load_model(DEFAULT_MODEL)
    log_probs = {"base": next_token_log_probs(base, batch)}
    model = None
    adapters = {
        **{f"source:{n}": p for n, p in experts.items()},
        **{m: args.work / "merged" / m for m in MERGE_METHODS},
    }
    for label, path in adapters.items():
        if model is None:
            model = PeftModel.from_pretrained(base, str(path), adapter_name=label)
        else:
            model.load_adapter(str(path), adapter_name=label)
        model.set_adapter(label)
        log_probs[label] = next_token_log_probs(model.eval(), batch)
    distances = {
        label: {source: round(mean_kl(log_probs[f"source:{source}"], log_probs[label], mask), 4) for source in SOURCES}
        for label in log_probs
    }
    for row in distances.values():
        row["mean"] = round(statistics.mean(row[s] for s in SOURCES), 4)
    source_gap = statistics.mean(distances[f"source:{a}"][b] for a in SOURCES for b in SOURCES if a != b)
    results = {
        "base": DEFAULT_MODEL,
        "rank": args.rank,
        "weights": "equal (1/3 each)",
        "repeats": args.repeats,
        "prompts": args.prompts,
        "tokens": int(mask.sum()),
        "timings": timings,
        "kl_source_to_model": distances,
        "mean_kl_between_sources": round(source_gap, 4),
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__},
        "command": ".venv/bin/python benchmarks/merge/run.py --repeats 3",
    }
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "| model | merge time (s) | peak RSS (MB) | rank-16 compression error | KL to helpful | KL to harmless | KL to "
        "instruct | mean KL |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, row in distances.items():
        timing = timings.get(label)
        time_cell = f"{timing['wall_s_median']:.2f}" if timing else "–"
        rss_cell = f"{timing['peak_rss_mb']}" if timing else "–"
        error_cell = f"{timing['compression_error']:.3f}" if timing else "–"
        lines.append(
            f"| {label} | {time_cell} | {rss_cell} | {error_cell} | {row['helpful']:.4f} | {row['harmless']:.4f} | "
            f"{row['instruct']:.4f} | {row['mean']:.4f} |"
        )
    lines.append(f"\nMean KL between two different sources: {source_gap:.4f}.")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
