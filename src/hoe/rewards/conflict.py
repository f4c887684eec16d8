"""Do two objectives conflict? The mean within-prompt rank correlation of their scores over k
sampled responses per prompt: negative means that, for the same prompt, the response one
objective prefers tends to be one the other dislikes."""

from __future__ import annotations

import itertools
import math

import numpy as np


def within_prompt_correlation(a: list[list[float]], b: list[list[float]]) -> tuple[float, float, int]:
    """Mean Spearman correlation over prompts (each a list of k scores), its standard error, and
    how many prompts counted (prompts where either objective ties everything are skipped)."""
    from scipy.stats import spearmanr

    values = []
    for scores_a, scores_b in zip(a, b):
        if len(set(scores_a)) < 2 or len(set(scores_b)) < 2:
            continue
        rho = spearmanr(scores_a, scores_b).statistic
        if not math.isnan(rho):
            values.append(float(rho))
    if not values:
        return float("nan"), float("nan"), 0
    mean = float(np.mean(values))
    error = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
    return mean, error, len(values)


def conflict_table(scores: dict[str, list[list[float]]]) -> list[dict]:
    """One row per pair of objectives, most conflicting first."""
    rows = []
    for first, second in itertools.combinations(scores, 2):
        mean, error, count = within_prompt_correlation(scores[first], scores[second])
        rows.append(
            {
                "pair": [first, second],
                "spearman": round(mean, 4),
                "stderr": round(error, 4),
                "prompts": count,
                "conflict": bool(mean + 2 * error < 0) if count > 1 else False,
            }
        )
    return sorted(rows, key=lambda r: r["spearman"])
