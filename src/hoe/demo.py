"""The embedded default run, offline: SmolLM2-135M-Instruct, three short real fine-tunes, their
LoRA experts, a merged expert and a router in one HoE bundle, answers under several preferences.

It grows with the project (rewards, router training, Pareto evaluation are open issues).
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


DEMO_PROMPTS = ["How can I get my neighbour's dog to stop barking at night?", "Write a short note inviting a colleague to lunch."]
DEMO_PREFERENCES = [{"helpful": 1}, {"harmless": 1}, {"instruct": 1}, {"helpful": 0.5, "harmless": 0.5}, {"helpful": 0.2, "harmless": 0.2, "instruct": 0.6}]


def demo_recipe(rank: int) -> str:
    """The demo's bundle: three extracted experts, a PCB merge of helpful and harmless, one router."""
    lines = [f"base: {DEFAULT_MODEL}", f"objectives: [{', '.join(DEMO_EXPERT_DATA)}]", f"rank: {rank}", "experts:"]
    for name in DEMO_EXPERT_DATA:
        lines += [f"  - name: {name}", f"    anchor: {{{name}: 1}}", f"    finetuned: {demo_finetune(name)}"]
    lines += ["merges:", "  - name: helpful-harmless", "    experts: [helpful, harmless]", "    method: pcb",
              "routers:", "  - name: mostly-instruct", "    anchor: [0.2, 0.2, 0.6]"]
    return "\n".join(lines) + "\n"


def run_demo(out: str | Path = "runs/demo", rank: int = 16, progress: bool = True) -> dict:
    """Fine-tune (or reuse) three experts, build the bundle, check one expert's fidelity, and
    answer the demo prompts under several preferences with one model."""
    from hoe.model import HoEModel
    from hoe.model.build import build_bundle

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"[1/5] embedded base model {DEFAULT_MODEL}: {resolve_checkpoint(DEFAULT_MODEL)}")
    for name, data in DEMO_EXPERT_DATA.items():
        print(f"[2/5] full fine-tune '{name}' on {data} ({DEMO_SFT.steps} steps, cached): {demo_finetune(name, progress=progress)}")
    recipe = out / "recipe.yaml"
    recipe.write_text(demo_recipe(rank))
    bundle = build_bundle(recipe, out / "bundle", progress=progress)
    report = json.loads((out / "bundle" / "experts" / "helpful" / "extract_report.json").read_text())
    print(f"[3/5] bundle {out / 'bundle'}: experts {', '.join(e.name for e in bundle.experts)}; router {bundle.routers[0].name}\n"
          f"task-SVD of the 'helpful' fine-tune at rank {rank}:\n{summarise(report)}")
    fidelity = logit_fidelity(DEFAULT_MODEL, demo_finetune("helpful"), out / "bundle" / "experts" / "helpful", held_out_prompts())
    print(
        f"[4/5] held-out prompts ({fidelity['prompts']}, {fidelity['tokens']} tokens): "
        f"KL(fine-tune‖base) {fidelity['kl_ft_base']:.4f}, KL(fine-tune‖base+expert) {fidelity['kl_ft_expert']:.4f}: "
        f"the rank-{rank} expert recovers {100 * fidelity['shift_recovered']:.1f}% of the fine-tune's shift"
    )
    model = HoEModel.from_bundle(out / "bundle")
    answers = []
    print("[5/5] one model, a preference per row (greedy, 40 new tokens):")
    for prompt in DEMO_PROMPTS:
        texts = model.generate([prompt] * len(DEMO_PREFERENCES), preferences=DEMO_PREFERENCES, max_new_tokens=40, do_sample=False)
        print(f"  prompt: {prompt}")
        for preference, text in zip(DEMO_PREFERENCES, texts):
            label = ", ".join(f"{k}={v:g}" for k, v in preference.items())
            routing = model.describe_routing(preference)
            print(f"    [{label}] via {routing}\n      {' '.join(text.split())[:160]}")
            answers.append({"prompt": prompt, "preference": preference, "routing": routing, "response": text})
    summary = {"bundle": str(out / "bundle"), "extract_helpful": report["totals"], "fidelity": fidelity,
               "parameters": model.parameter_counts(), "answers": answers, "total_seconds": round(time.perf_counter() - start, 1)}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(f"artifacts: {out.resolve()} (recipe.yaml, bundle/, demo_summary.json); {summary['total_seconds']} s in all")
    return summary
