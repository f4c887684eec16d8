"""Milliseconds per decoding step of a HoE bundle by routing, beside the base model, on the main thread.

One batch of --rows copies of a prompt is prefilled, then each routing decodes --steps greedy steps
(after 3 warm-up steps) with a ``DynamicCache``; the routings are timed in turns, --rounds times,
so the machine's drift hits them alike:

- base: no routing (the mixture layers run their base GEMM alone);
- expert: one λ on one expert's anchor for every row (gates folded into B);
- static: every other row on the other expert (per-row static gates);
- router: one λ between two anchors for every row (through a router);
- random: a random λ per row (every expert and router active);
- second: one λ on the second objective's vertex for every row (the expert anchored there; beside
  ``expert``, two experts of one bundle extracted at different ranks are timed in turns).

    .venv/bin/python benchmarks/inference/decode_step.py --bundle runs/demo/2-objectives/bundle

Prints one JSON line per timing and writes decode_step.json here (or --out).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import time
from pathlib import Path

import torch
from transformers import DynamicCache

from hoe.model.hoe_model import HoEModel

HERE = Path(__file__).resolve().parent
PROMPT = "How do I bake bread? Explain every step in detail."
ROUTINGS = ("base", "expert", "static", "router", "random", "second")


def preferences(model: HoEModel, routing: str, rows: int, rng: random.Random) -> list | None:
    """One λ per row for ``routing`` (None: the base model)."""
    count = len(model.objectives)
    first = [1.0] + [0.0] * (count - 1)
    second = [0.0, 1.0] + [0.0] * (count - 2)
    between = [0.3, 0.7] + [0.0] * (count - 2)  # between anchors: through a router in the demo bundles
    return {
        "base": None,
        "expert": [first] * rows,
        "static": [first if i % 2 else second for i in range(rows)],
        "router": [between] * rows,
        "random": [[rng.random() + 1e-3 for _ in range(count)] for _ in range(rows)],
        "second": [second] * rows,
    }[routing]


@torch.no_grad()
def decode(model: HoEModel, inputs: dict, rows_preferences: list | None, steps: int) -> tuple[float, list[list[int]]]:
    """Mean milliseconds of one greedy decoding step under ``rows_preferences`` (after 3 warm-up
    steps), and every step's tokens (so that another mode of the same routing can be checked)."""
    if rows_preferences is None:
        model.state.clear()
    else:
        model.state.set([model.routing(p) for p in rows_preferences])
    try:
        mask, tokens = inputs["attention_mask"], []
        out = model.model(input_ids=inputs["input_ids"], attention_mask=mask, past_key_values=DynamicCache())
        for step in range(steps + 3):
            if step == 3:
                start = time.perf_counter()
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            tokens.append(token.flatten().tolist())
            mask = torch.cat([mask, torch.ones_like(token)], dim=1)
            out = model.model(input_ids=token, attention_mask=mask, past_key_values=out.past_key_values)
        return (time.perf_counter() - start) / steps * 1000, tokens
    finally:
        model.state.clear()


def step_ms(model: HoEModel, inputs: dict, rows_preferences: list | None, steps: int) -> float:
    """Mean milliseconds of one greedy decoding step under ``rows_preferences``."""
    return decode(model, inputs, rows_preferences, steps)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="runs/demo/2-objectives/bundle")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "decode_step.json")
    args = parser.parse_args()
    model = HoEModel.from_bundle(args.bundle).eval()
    inputs = model.chat_inputs([PROMPT] * args.rows)
    rng = random.Random(0)
    timings: dict[str, list[float]] = {routing: [] for routing in ROUTINGS}
    for round_ in range(args.rounds):
        for routing in ROUTINGS:
            ms = round(step_ms(model, inputs, preferences(model, routing, args.rows, rng), args.steps), 1)
            timings[routing].append(ms)
            print(json.dumps({"round": round_, "routing": routing, "ms_per_step": ms}), flush=True)
    base = statistics.median(timings["base"])
    summary = {
        routing: {
            "ms_per_step": values,
            "median": statistics.median(values),
            "base_over_this": round(base / statistics.median(values), 3),
        }
        for routing, values in timings.items()
    }
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    result = {
        "command": f".venv/bin/python benchmarks/inference/decode_step.py --bundle {args.bundle} --rows {args.rows} "
        f"--steps {args.steps} --rounds {args.rounds}",
        "commit": commit,
        "rows": args.rows,
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "threads": torch.get_num_threads(),
        "routings": summary,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({r: s["base_over_this"] for r, s in summary.items()}))


if __name__ == "__main__":
    main()
