"""Extraction benchmark: hoe extract (exact, randomized) vs mergekit-extract-lora, side by side.

Pair: the embedded SmolLM2-135M-Instruct and its full fine-tune on HH helpful responses (the
demo's, made once and cached). Each tool runs as its own process, several times; wall time is
the median, peak RSS the child's own (os.wait4). Errors are measured here against the true
delta, on the 7 projections only.

    make bench-extract          # or: .venv/bin/python benchmarks/extract/run.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import torch

from hoe.benchmarking.process import measure_process
from hoe.benchmarking.reference_models import reference_finetune
from hoe.checkpoints import CheckpointTensors, resolve_checkpoint
from hoe.checkpoints.loading import DEFAULT_MODEL
from hoe.experts import read_lora

HERE = Path(__file__).resolve().parent
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def module_errors(adapter_dir: Path, base: CheckpointTensors, ft: CheckpointTensors) -> dict[str, float]:
    """‖τ − scale·B A‖_F / ‖τ‖_F per projection module, from the saved adapter."""
    adapter = read_lora(adapter_dir)
    errors = {}
    for name, module in adapter.modules.items():
        if name.rsplit(".", 1)[-1] not in PROJECTIONS:
            continue
        weight = f"{name}.weight"
        delta = ft.get(weight).double() - base.get(weight).double()
        errors[name] = float((delta - module.delta().double()).norm() / delta.norm())
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    args = parser.parse_args()

    base_dir = resolve_checkpoint(DEFAULT_MODEL)
    ft_dir = reference_finetune()
    bin_dir = Path(sys.executable).parent
    projection_regex = "|".join(PROJECTIONS)
    tools = {
        "mergekit": lambda out: [
            str(bin_dir / "mergekit-extract-lora"),
            "--model",
            str(ft_dir),
            "--base-model",
            str(base_dir),
            "--out-path",
            str(out),
            "--max-rank",
            str(args.rank),
            "--include-regex",
            f".*({projection_regex})",
            "--skip-undecomposable",
            "--no-embed-lora",
        ],
        "hoe-exact": lambda out: [
            str(bin_dir / "hoe"),
            "extract",
            "--base",
            str(base_dir),
            "--finetuned",
            str(ft_dir),
            "--out",
            str(out),
            "--rank",
            str(args.rank),
            "--svd",
            "exact",
            "--device",
            "cpu",
            "--quiet",
            "--overwrite",
        ],
        "hoe-randomized": lambda out: [
            str(bin_dir / "hoe"),
            "extract",
            "--base",
            str(base_dir),
            "--finetuned",
            str(ft_dir),
            "--out",
            str(out),
            "--rank",
            str(args.rank),
            "--svd",
            "randomized",
            "--device",
            "cpu",
            "--quiet",
            "--overwrite",
        ],
    }
    base, ft = CheckpointTensors(base_dir), CheckpointTensors(ft_dir)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, command in tools.items():
        out = args.work / name
        walls, rss = [], []
        for _ in range(args.repeats):  # interleaving would be fairer on a noisy machine; runs are sequential here
            shutil.rmtree(out, ignore_errors=True)
            wall, peak = measure_process(command(out))
            walls.append(wall)
            rss.append(peak)
        errors = module_errors(out, base, ft)
        rows[name] = {
            "wall_s_median": round(statistics.median(walls), 2),
            "wall_s_all": [round(w, 2) for w in walls],
            "peak_rss_mb": round(max(rss), 0),
            "modules": len(errors),
            "mean_relative_error": round(statistics.mean(errors.values()), 6),
            "adapter_mb": round(sum(f.stat().st_size for f in out.iterdir()) / 2**20, 2),
        }
        print(name, rows[name], flush=True)
    reference = rows["mergekit"]
    for row in rows.values():
        row["time_vs_mergekit"] = round(row["wall_s_median"] / reference["wall_s_median"], 3)
        row["rss_vs_mergekit"] = round(row["peak_rss_mb"] / reference["peak_rss_mb"], 3)
        row["error_vs_mergekit"] = round(row["mean_relative_error"] / reference["mean_relative_error"], 5)
    results = {
        "pair": {
            "base": DEFAULT_MODEL,
            "finetuned": "demo full fine-tune (hh-helpful-sft, 30 steps)",
            "rank": args.rank,
        },
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "repeats": args.repeats,
        "tools": rows,
        "randomized_error_vs_exact": round(
            rows["hoe-randomized"]["mean_relative_error"] / rows["hoe-exact"]["mean_relative_error"], 5
        ),
        "command": "make bench-extract",
    }
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"| tool | wall time (s, median of {args.repeats}) | × mergekit | peak RSS (MB) | × mergekit | mean rel. error "
        f"(7 projections, {rows['mergekit']['modules']} modules) | × mergekit |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['wall_s_median']:.2f} | {row['time_vs_mergekit']:.2f} | {row['peak_rss_mb']:.0f} | "
            f"{row['rss_vs_mergekit']:.2f} | {row['mean_relative_error']:.5f} | {row['error_vs_mergekit']:.4f} |"
        )
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
