"""Decode throughput, side by side in one run: base, HoE (one λ, routers, a λ per row), peft
with the same experts (mixed-adapter batch, merged weighted adapter) and MOD over 3 models.

Embedded SmolLM2-135M-Instruct, 3 experts of rank 16 on all 7 projections (the demo's), batch 8,
greedy, exactly --new-tokens tokens per row (EOS suppressed), float32 on this CPU.

    .venv/bin/python benchmarks/inference/run.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from hoe.benchmarking.reference_models import reference_experts
from hoe.checkpoints import load_model, load_tokenizer
from hoe.checkpoints.loading import DEFAULT_MODEL
from hoe.data import sft_pairs
from hoe.evaluation.methods.mod import mod_generate
from hoe.model import HoEModel
from hoe.pipeline.build import build_bundle

HERE = Path(__file__).resolve().parent
OBJECTIVES = ["helpful", "harmless", "instruct"]
ONE_LAMBDA = [0.6, 0.3, 0.1]
ROUTER_ANCHOR = [0.5, 0.25, 0.25]
ROW_LAMBDAS = [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
    [0.6, 0.3, 0.1],
    [0.2, 0.5, 0.3],
    [0.1, 0.1, 0.8],
    [0.4, 0.4, 0.2],
    [0.3, 0.0, 0.7],
]


def recipe(experts: dict[str, Path], routers: bool) -> str:
    lines = [f"base: {DEFAULT_MODEL}", f"objectives: [{', '.join(OBJECTIVES)}]", "experts:"]
    for k, name in enumerate(OBJECTIVES):
        anchor = [1 if i == k else 0 for i in range(3)]
        lines += [f"  - name: {name}", f"    anchor: {anchor}", f"    lora: {experts[name]}"]
    if routers:
        lines += ["routers:", "  - name: router", f"    anchor: {ROUTER_ANCHOR}"]
    return "\n".join(lines) + "\n"


def bundle(work: Path, experts, routers: bool) -> Path:
    out = work / ("bundle-routers" if routers else "bundle-static")
    path = work / f"{out.name}.yaml"
    path.write_text(recipe(experts, routers))
    build_bundle(path, out, progress=False)
    return out


def timed_rounds(methods: dict, repeats: int) -> dict[str, list[float]]:
    """Interleaved: every round runs each method once, so drift on the machine hits all alike."""
    for run in methods.values():
        run(short=True)  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, run in methods.items():
            start = time.perf_counter()
            run(short=False)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    args = parser.parse_args()
    torch.manual_seed(0)
    args.work.mkdir(parents=True, exist_ok=True)
    experts = reference_experts(args.work.parent.parent / "merge" / "work" / "experts")
    prompts = [p for p, _ in sft_pairs("hh-helpful-test")[: args.batch]]
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    tokenizer.padding_side = "left"
    static = HoEModel.from_bundle(bundle(args.work, experts, routers=False))
    routed = HoEModel.from_bundle(bundle(args.work, experts, routers=True))
    inputs = static.chat_inputs(prompts)
    prompt_length = inputs["input_ids"].shape[1]
    rows = [ROW_LAMBDAS[i % len(ROW_LAMBDAS)] for i in range(args.batch)]

    def decode_options(short: bool) -> dict:
        n = 4 if short else args.new_tokens
        return {"max_new_tokens": n, "min_new_tokens": n, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}

    base = load_model(DEFAULT_MODEL)
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(load_model(DEFAULT_MODEL), str(experts["helpful"]), adapter_name="helpful")
    for name in ("harmless", "instruct"):
        peft_model.load_adapter(str(experts[name]), adapter_name=name)
    peft_model.add_weighted_adapter(OBJECTIVES, ONE_LAMBDA, "weighted", combination_type="cat")
    mod_models = [
        PeftModel.from_pretrained(load_model(DEFAULT_MODEL), str(experts[n])).merge_and_unload().eval()
        for n in OBJECTIVES
    ]

    def run_base(short):
        base.generate(**inputs, **decode_options(short))

    def run_hoe(short):
        with static.preference(ONE_LAMBDA):
            static.model.generate(**inputs, **decode_options(short))

    def run_router(short):
        with routed.preference(ROUTER_ANCHOR):
            routed.model.generate(**inputs, **decode_options(short))

    def run_mixed(short):
        with static.preference(preferences=rows):
            static.model.generate(**inputs, **decode_options(short))

    def run_peft_mixed(short):
        peft_model.set_adapter("helpful")
        names = [OBJECTIVES[int(torch.tensor(r).argmax())] for r in rows]
        peft_model.generate(**inputs, adapter_names=names, **decode_options(short))

    def run_peft_weighted(short):
        peft_model.set_adapter("weighted")
        peft_model.generate(**inputs, **decode_options(short))

    def run_mod(short):
        options = decode_options(short)
        mod_generate(
            mod_models,
            ONE_LAMBDA,
            inputs["input_ids"],
            inputs["attention_mask"],
            max_new_tokens=options["max_new_tokens"],
            min_new_tokens=options["min_new_tokens"],
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )

    methods = {
        "base": run_base,
        "hoe, one λ": run_hoe,
        "hoe, router": run_router,
        "hoe, λ per row": run_mixed,
        "peft, adapter per row": run_peft_mixed,
        "peft, weighted adapter": run_peft_weighted,
        "MOD, 3 models": run_mod,
    }
    tokens = args.batch * args.new_tokens
    results = {}
    with torch.inference_mode():
        rounds = timed_rounds(methods, args.repeats)
    for name, seconds in rounds.items():
        # paired with the base run of the same round, so drift of this shared machine cancels
        ratios = [b / s for b, s in zip(rounds["base"], seconds)]
        results[name] = {
            "seconds": [round(s, 3) for s in seconds],
            "tokens_per_s": round(tokens / statistics.median(seconds), 1),
            "vs_base": round(statistics.median(ratios), 3),
        }
        print(name, results[name], flush=True)
    summary = {
        "model": DEFAULT_MODEL,
        "experts": "3 × rank 16, all 7 projections",
        "batch": args.batch,
        "new_tokens": args.new_tokens,
        "prompt_tokens": prompt_length,
        "repeats": args.repeats,
        "decoding": "greedy, transformers generate (MOD: own loop, 3 KV caches)",
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "results": results,
        "mixed_vs_one_lambda": round(
            statistics.median(a / b for a, b in zip(rounds["hoe, one λ"], rounds["hoe, λ per row"])), 3
        ),
        "parameters": routed.parameter_counts(),
        "command": ".venv/bin/python benchmarks/inference/run.py --repeats 5",
    }
    (HERE / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["| decoding | tokens/s (median) | × base (median of paired rounds) |", "|---|---:|---:|"]
    lines += [f"| {name} | {row['tokens_per_s']:.1f} | {row['vs_base']:.2f} |" for name, row in results.items()]
    lines.append(
        f"\nλ per row vs one λ: {summary['mixed_vs_one_lambda']:.2f}×. Batch {args.batch}, {args.new_tokens} new "
        "tokens per row."
    )
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
