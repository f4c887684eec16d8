"""The embedded default run: SmolLM2-135M-Instruct, a short real fine-tune, its LoRA expert.

It grows with the project (merging, routers, evaluation); today it shows Level 1 end to end.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

from hoe.data import sft_pairs
from hoe.experts import ExtractSettings, extract_expert
from hoe.experts.fidelity import logit_fidelity
from hoe.models.loading import DEFAULT_MODEL, cache_root, resolve_checkpoint
from hoe.training import SFTSettings, supervised_finetune

DEMO_SFT = SFTSettings(steps=30, batch_size=8, max_length=128, learning_rate=5e-5)
HELD_OUT_PROMPTS = 16


# expert name -> packaged dataset its fine-tune learns from
DEMO_EXPERT_DATA = {"helpful": "hh-helpful-sft", "harmless": "hh-harmless", "instruct": "alpaca-davinci"}


def demo_finetune(expert: str = "helpful", base: str = DEFAULT_MODEL, settings: SFTSettings = DEMO_SFT, progress: bool = True) -> Path:
    """A full fine-tune of the embedded model on one packaged dataset; made once, then cached."""
    data = DEMO_EXPERT_DATA[expert]
    key = hashlib.sha1(json.dumps([base, data, asdict(settings)], sort_keys=True).encode()).hexdigest()[:10]
    out = cache_root() / "finetunes" / f"{expert}-sft-{key}"
    if not (out / "sft_log.json").is_file():
        supervised_finetune(base, sft_pairs(data), out, settings, progress=progress)
    return out


def demo_experts(root: str | Path, rank: int = 16, progress: bool = True) -> dict[str, Path]:
    """Rank-``rank`` LoRA experts of the three demo fine-tunes under ``root`` (made once)."""
    experts = {}
    for name in DEMO_EXPERT_DATA:
        folder = Path(root) / name
        if not (folder / "adapter_config.json").is_file():
            extract_expert(DEFAULT_MODEL, demo_finetune(name, progress=progress), folder, ExtractSettings(rank=rank), overwrite=True, progress=progress)
        experts[name] = folder
    return experts


def held_out_prompts(count: int = HELD_OUT_PROMPTS) -> list[str]:
    return [prompt for prompt, _ in sft_pairs("hh-helpful-test")[:count]]


def summarise(report: dict) -> str:
    """A short table of an extraction report, grouped by projection."""
    groups: dict[str, list[dict]] = {}
    for module in report["modules"]:
        groups.setdefault(module["module"].rsplit(".", 1)[-1], []).append(module)
    lines = [f"{'projection':<12} {'modules':>7} {'rank':>5} {'energy kept':>12} {'rel. error':>11}"]
    for name, modules in groups.items():
        ranks = sorted({m["rank"] for m in modules})
        energy = sum(m["retained_energy"] for m in modules) / len(modules)
        error = sum(m["relative_error"] for m in modules) / len(modules)
        rank_text = str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]}-{ranks[-1]}"
        lines.append(f"{name:<12} {len(modules):>7} {rank_text:>5} {energy:>12.3f} {error:>11.3f}")
    totals = report["totals"]
    lines.append(
        f"total: {totals['modules']} modules, {totals['adapter_parameters']:,} adapter parameters, "
        f"overall relative error {totals['overall_relative_error']:.3f}, "
        f"{totals['wall_time_s']:.1f} s, peak RSS {totals['peak_rss_mb']:.0f} MB"
    )
    return "\n".join(lines)


def run_demo(out: str | Path = "runs/demo", rank: int = 16, progress: bool = True) -> dict:
    """Load the embedded model, make (or reuse) its fine-tune, extract the expert, report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"[1/4] embedded base model {DEFAULT_MODEL}: {resolve_checkpoint(DEFAULT_MODEL)}")
    finetuned = demo_finetune(progress=progress)
    print(f"[2/4] full fine-tune on HH helpful responses ({DEMO_SFT.steps} steps): {finetuned}")
    expert = out / f"expert-helpful-r{rank}"
    report = extract_expert(DEFAULT_MODEL, finetuned, expert, ExtractSettings(rank=rank), overwrite=True, progress=progress)
    print(f"[3/4] task-SVD expert (rank {rank}) in {expert}\n{summarise(report)}")
    fidelity = logit_fidelity(DEFAULT_MODEL, finetuned, expert, held_out_prompts())
    print(
        f"[4/4] held-out prompts ({fidelity['prompts']}, {fidelity['tokens']} tokens): "
        f"KL(fine-tune‖base) {fidelity['kl_ft_base']:.4f}, KL(fine-tune‖base+expert) {fidelity['kl_ft_expert']:.4f}: "
        f"the rank-{rank} expert recovers {100 * fidelity['shift_recovered']:.1f}% of the fine-tune's shift"
    )
    summary = {"expert": str(expert), "finetuned": str(finetuned), "extract": report["totals"], "fidelity": fidelity,
               "total_seconds": round(time.perf_counter() - start, 1)}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"artifacts: {out.resolve()} (demo_summary.json, {expert.name}/extract_report.json); {summary['total_seconds']} s in all")
    return summary
