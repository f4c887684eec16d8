"""Cost per token of every method, measured side by side.

Per-job generation walls are taken minutes apart on a machine whose speed drifts, so the
report's cost ratios come from this separate measurement instead: every method at one
representative point (the preference nearest the simplex centre) decodes the same batch
greedily for exactly the same number of new tokens, in interleaved rounds (base, hoe, soup,
…, base, hoe, …); the ratio to the base is taken per round and the median reported.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from hoe.checkpoints.chat import encode_prompts
from hoe.evaluation.methods import METHODS
from hoe.evaluation.report import follows_preference

ROUNDS = 3
FORCED_TOKENS = 32


def representative_points(points) -> dict:
    """Per method, the point whose preference is nearest the simplex centre (the first for experts)."""
    chosen: dict = {}
    for point in points:
        if point.method in chosen and follows_preference(point.method):
            centre = np.full(len(point.preference), 1.0 / len(point.preference))
            old = chosen[point.method]
            if np.linalg.norm(np.asarray(point.preference) - centre) < np.linalg.norm(
                np.asarray(old.preference) - centre
            ):
                chosen[point.method] = point
        chosen.setdefault(point.method, point)
    return chosen


def measure_costs(
    methods: dict,
    points,
    context,
    prompts: list[str],
    *,
    chat: bool = True,
    rounds: int = ROUNDS,
    tokens: int = FORCED_TOKENS,
    progress: bool = False,
) -> dict:
    """{method: {point, seconds per token, ratio to base (median of per-round ratios)}}."""
    chosen = representative_points(points)
    for name in chosen:
        methods.setdefault(name, METHODS[name](context))
    batch = prompts[: context.decoding.batch_size]
    inputs = {k: v.to(context.device) for k, v in encode_prompts(context.tokenizer, batch, chat=chat).items()}
    seconds: dict[str, list[float]] = {name: [] for name in chosen}
    context.forced_length = tokens
    try:
        for name, point in chosen.items():  # setup and one warm-up, untimed
            methods[name].setup(point)
            with torch.no_grad():
                methods[name].generate(inputs, point)
        for _ in tqdm(range(rounds), desc="timing", unit="round", disable=not progress):
            for name, point in chosen.items():
                methods[name].setup(point)
                start = time.perf_counter()
                with torch.no_grad():
                    methods[name].generate(inputs, point)
                seconds[name].append(time.perf_counter() - start)
    finally:
        context.forced_length = None
    generated = tokens * len(batch)
    result = {"rounds": rounds, "batch": len(batch), "new_tokens": tokens, "methods": {}}
    for name, point in chosen.items():
        ratios = [t / b for t, b in zip(seconds[name], seconds["base"])] if "base" in seconds else []
        result["methods"][name] = {
            "label": point.label,
            "s_per_token": statistics.median(seconds[name]) / generated,
            "cost_vs_base": statistics.median(ratios) if ratios else None,
            "round_seconds": [round(t, 4) for t in seconds[name]],
        }
    return result
