"""Probe for issue 19: does torch.compile (inductor, CPU) narrow the gap between HoE's decoding step and the base's?

The same setting as ``decode_step.py`` (16 copies of one prompt, greedy, a ``DynamicCache``): the
base routing and a random λ per row are timed in turns in eager mode, then with the model's forward
compiled (``torch.compile(..., dynamic=True)``), each twice. The greedy tokens of every compiled run
are checked against the eager run of the same routing (a compiled step that decodes other tokens
would not count). The ratio is taken over the best of the two rounds. Compile time is recorded:
the first compiled pass of each routing includes it.

This is a probe, not a serving path: the server's batches change rows at every token, and every new
routing rebuilds the per-layer plans, which the compiler meets as a graph break and a recompile.

    .venv/bin/python benchmarks/inference/compiled_step.py --bundle runs/demo/2-objectives/bundle

Writes compiled_step.json here (or --out).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import time
from pathlib import Path

import torch
from decode_step import PROMPT, decode, preferences

from hoe.model.hoe_model import HoEModel

HERE = Path(__file__).resolve().parent
ROUTINGS = ("base", "random")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="runs/demo/2-objectives/bundle")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", type=Path, default=HERE / "compiled_step.json")
    args = parser.parse_args()
    model = HoEModel.from_bundle(args.bundle).eval()
    inputs = model.chat_inputs([PROMPT] * 16)
    rows = {r: preferences(model, r, 16, random.Random(0)) for r in ROUTINGS}  # the same λ in every pass
    result: dict = {"eager": {r: [] for r in ROUTINGS}, "compiled": {r: [] for r in ROUTINGS}, "same_tokens": {}}
    reference = {}
    for mode in ("eager", "compiled"):
        if mode == "compiled":
            model.model.forward = torch.compile(model.model.forward, dynamic=True)
        for round_ in range(2):
            for routing in ROUTINGS:
                start = time.perf_counter()
                ms, tokens = decode(model, inputs, rows[routing], args.steps)
                if mode == "eager":
                    reference.setdefault(routing, tokens)
                else:
                    result["same_tokens"][f"{routing}-{round_}"] = tokens == reference[routing]
                if mode == "compiled" and round_ == 0:
                    result[f"first_pass_seconds_{routing}"] = round(time.perf_counter() - start, 1)
                result[mode][routing].append(round(ms, 1))
                print(json.dumps({"mode": mode, "round": round_, "routing": routing, "ms_per_step": round(ms, 1)}))
    for mode in ("eager", "compiled"):
        result[f"{mode}_base_over_random"] = round(min(result[mode]["base"]) / min(result[mode]["random"]), 3)
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    result["command"] = f".venv/bin/python benchmarks/inference/compiled_step.py --bundle {args.bundle}"
    result.update(commit=commit, torch=torch.__version__, threads=torch.get_num_threads())
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if "over" in k or k == "same_tokens"}))


if __name__ == "__main__":
    main()
