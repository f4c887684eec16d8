"""Where the serving time goes: the continuous-batching engine alone (no HTTP), against
`HoEModel.generate` on the same rows, and by routing (a random λ per row, one λ through a router, one λ
on a LoRA expert, the base model). Each request decodes exactly --tokens tokens (EOS ignored).

    .venv/bin/python benchmarks/serving/engine_alone.py --bundle runs/demo/2-objectives/bundle --rounds 3

Prints one JSON line per measurement and writes engine_alone.json here.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from pathlib import Path

from run import BaseOnly

from hoe.model.hoe_model import HoEModel
from hoe.serving.engine import Engine, Job

HERE = Path(__file__).resolve().parent
QUESTION = "How do I bake bread? Explain every step in detail."


def engine_rate(model, prompt_ids: list[int], preferences: list, tokens: int, own_thread: bool = False) -> float:
    """Generated tokens/s of one batch of requests submitted together, decoded on this (the main)
    thread as `hoe serve` decodes, or with ``own_thread`` on the engine's own thread."""
    engine = Engine(model, max_batch=len(preferences), thread=own_thread)
    engine.eos = set()  # exactly `tokens` each, like min_new_tokens below
    done = [threading.Event() for _ in preferences]
    jobs = [
        Job(prompt_ids, model.routing(p), tokens, emit=lambda event, d=d: d.set() if event[0] != "delta" else None)
        for p, d in zip(preferences, done)
    ]
    start = time.perf_counter()
    for job in jobs:
        engine.submit(job)
    if own_thread:
        for event in done:
            event.wait()
    else:
        engine.run(until=lambda: all(event.is_set() for event in done))
    rate = sum(len(job.generated) for job in jobs) / (time.perf_counter() - start)
    engine.close()
    return round(rate, 1)


def generate_rate(model: HoEModel, preference, rows: int, tokens: int) -> float:
    start = time.perf_counter()
    model.generate([QUESTION] * rows, preference, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    return round(rows * tokens / (time.perf_counter() - start), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="runs/demo/2-objectives/bundle")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    model = HoEModel.from_bundle(args.bundle).eval()
    text = model.tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, tokenize=False
    )
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    middle = [0.5] * len(model.objectives)  # an expert's anchor in the demo bundles
    skewed = [0.3, 0.7] + [0.0] * (len(model.objectives) - 2)  # between anchors: through a router there
    rng = random.Random(0)
    mixed = [[rng.random() + 1e-3 for _ in model.objectives] for _ in range(16)]
    base = BaseOnly(model)
    rows = []
    for round_ in range(args.rounds):
        for rows_, label, preference in (
            (1, "one λ (expert)", middle),
            (1, "one λ (router)", skewed),
            (16, "one λ (expert)", middle),
            (16, "one λ (router)", skewed),
        ):
            row = {
                "round": round_,
                "rows": rows_,
                "routing": label,
                "engine": engine_rate(model, ids, [preference] * rows_, args.tokens),
                "generate": generate_rate(model, preference, rows_, args.tokens),
            }
            print(json.dumps(row, ensure_ascii=False), flush=True)
            rows.append(row)
        row = {
            "round": round_,
            "rows": 16,
            "routing": "random λ per row",
            "engine": engine_rate(model, ids, mixed, args.tokens),
            "base_engine": engine_rate(base, ids, mixed, args.tokens),
            "engine_own_thread": engine_rate(model, ids, mixed, args.tokens, own_thread=True),
            "base_engine_own_thread": engine_rate(base, ids, mixed, args.tokens, own_thread=True),
        }
        print(json.dumps(row, ensure_ascii=False), flush=True)
        rows.append(row)
    command = f".venv/bin/python benchmarks/serving/engine_alone.py --bundle {args.bundle} --tokens {args.tokens} "
    result = {"rows": rows, "unit": "generated tokens/s", "command": command + f"--rounds {args.rounds}"}
    (HERE / "engine_alone.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
