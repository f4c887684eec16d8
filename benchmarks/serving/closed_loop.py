"""Where the served throughput goes, without HTTP: the continuous-batching engine in a closed loop, in
this process, as `run.py`'s clients load it over HTTP (16 clients, a held-out prompt and a random λ
each, 64 new tokens, a new request as soon as one ends), for HoE and the base, eager and compiled.

Besides tokens/s it splits the time: the prefill forwards (per request) and the decoding steps (per
step). It also records how long each engine took to start, which for a compiled one is the compile
(``Engine.warm_up``); run it with an empty inductor cache to time a cold start:

    TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) .venv/bin/python benchmarks/serving/closed_loop.py \
        --bundle runs/demo/2-objectives/bundle

Writes closed_loop.json here.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from run import BaseOnly

from hoe.checkpoints.chat import encode_prompts
from hoe.data import load_prompts
from hoe.model.hoe_model import HoEModel
from hoe.serving.engine import Engine, Job

HERE = Path(__file__).resolve().parent
ENGINES = ("base", "hoe-compiled", "base-compiled", "hoe")


def chat_ids(model, prompt: str) -> list[int]:
    """The prompt's tokens as the server encodes a chat request (template, no padding: one prompt)."""
    return encode_prompts(model.tokenizer, [prompt])["input_ids"][0].tolist()


class ClosedLoop:
    """``clients`` requests in flight until ``seconds`` have passed; each one that ends starts the next."""

    def __init__(self, engine: Engine, model, prompts: list[list[int]], clients: int, seconds: float) -> None:
        self.engine, self.model, self.prompts = engine, model, prompts
        self.clients, self.seconds = clients, seconds
        self.rng = random.Random(0)
        self.sent = self.ended = self.tokens = 0
        self.prefill_seconds = self.decode_seconds = 0.0
        self.decode_steps = 0
        forward = engine._forward

        def timed(jobs, ids, mask, cache):  # the engine's forward, timed by kind
            start = time.perf_counter()
            logits = forward(jobs, ids, mask, cache)
            if ids.shape[1] > 1:
                self.prefill_seconds += time.perf_counter() - start
            else:
                self.decode_seconds += time.perf_counter() - start
                self.decode_steps += 1
            return logits

        engine._forward = timed

    def submit(self) -> None:
        preference = [self.rng.random() + 1e-3 for _ in self.model.objectives]
        job = Job(self.prompts[(self.sent * 997) % len(self.prompts)], self.model.routing(preference), 64, None)
        job.emit = lambda event, job=job: self.on_event(event, job)
        self.sent += 1
        self.engine.submit(job)

    def on_event(self, event: tuple, job: Job) -> None:
        if event[0] in ("done", "error"):
            self.ended += 1
            self.tokens += len(job.generated)
            if time.perf_counter() < self.deadline:
                self.submit()

    def run(self) -> dict:
        start = time.perf_counter()
        self.deadline = start + self.seconds
        for _ in range(self.clients):
            self.submit()
        self.engine.run(until=lambda: self.ended == self.sent)
        wall = time.perf_counter() - start
        return {
            "tokens_per_s": round(self.tokens / wall, 1),
            "requests": self.ended,
            "seconds": round(wall, 1),
            "prefill_share": round(self.prefill_seconds / wall, 3),
            "prefill_ms_per_request": round(self.prefill_seconds / self.ended * 1000, 1),
            "decode_ms_per_step": round(self.decode_seconds / max(1, self.decode_steps) * 1000, 1),
            "decode_steps": self.decode_steps,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="runs/demo/2-objectives/bundle")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    model = HoEModel.from_bundle(args.bundle).eval()
    base = BaseOnly(model)
    prompts = [chat_ids(model, p) for p in load_prompts("packaged:hh-helpful-test", "heldout")]
    engines, startup = {}, {}
    for name in ENGINES:
        start = time.perf_counter()
        served = base if name.startswith("base") else model
        engines[name] = Engine(served, max_batch=args.clients, thread=False, compile=name.endswith("compiled"))
        startup[name] = round(time.perf_counter() - start, 1)
    rows = []
    for round_ in range(args.rounds):
        for name, engine in engines.items():
            served = base if name.startswith("base") else model
            loop = ClosedLoop(engine, served, prompts, args.clients, args.seconds)
            row = {"round": round_, "engine": name, **loop.run()}
            engine.stopped = False  # ``run`` stops once the loop is drained; the next round runs it again
            print(json.dumps(row), flush=True)
            rows.append(row)
    command = f".venv/bin/python benchmarks/serving/closed_loop.py --bundle {args.bundle} --clients {args.clients} "
    result = {
        "rows": rows,
        "startup_seconds": startup,
        "command": f"TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) {command}--seconds {args.seconds:g} --rounds {args.rounds}",
    }
    (HERE / "closed_loop.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
