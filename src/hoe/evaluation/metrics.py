"""Front metrics: hypervolume (moocore), non-dominated points, controllability, and the
Tchebycheff scalarised reward per preference. Every reward is maximised."""

from __future__ import annotations

import math

import numpy as np

from hoe.errors import HoEError


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Volume dominated by ``points`` above ``reference`` (points not above it add nothing)."""
    import moocore

    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    reference = np.asarray(reference, dtype=np.float64)
    if points.shape[1] != reference.shape[0]:
        raise HoEError(f"reference point has {reference.shape[0]} values for {points.shape[1]} objectives")
    above = points[(points > reference).all(axis=1)]
    if len(above) == 0:
        return 0.0
    return float(moocore.hypervolume(above, ref=reference, maximise=True))


def nondominated(points: np.ndarray) -> np.ndarray:
    """Mask of the points no other point dominates (duplicates count once)."""
    import moocore

    return np.asarray(moocore.is_nondominated(np.atleast_2d(points), maximise=True), dtype=bool)


def reference_point(points: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """Shared by every method of a run: the worst value per objective, less ``margin`` of its range."""
    low, high = points.min(axis=0), points.max(axis=0)
    spread = np.where(high > low, high - low, np.maximum(np.abs(low), 1.0) * 0.1)
    return low - margin * spread


def ideal_point(points: np.ndarray) -> np.ndarray:
    return points.max(axis=0)


def tchebycheff_gap(preference: np.ndarray, reward: np.ndarray, ideal: np.ndarray, reference: np.ndarray) -> float:
    """max_i λ_i (z*_i − R_i) on rewards scaled so reference → 0 and ideal → 1; lower is better."""
    return float(tchebycheff_gaps(preference, reward, ideal, reference))


def tchebycheff_gaps(
    preferences: np.ndarray, rewards: np.ndarray, ideal: np.ndarray, reference: np.ndarray
) -> np.ndarray:
    """``tchebycheff_gap`` over the last axis, for any stack of points (…, objectives) → (…):
    every resample of every point of a front at once."""
    scale = np.where(ideal > reference, ideal - reference, 1.0)
    return np.max(preferences * (ideal - rewards) / scale, axis=-1)


def controllability(preferences: np.ndarray, rewards: np.ndarray) -> list[float | None]:
    """Per objective, Spearman's rank correlation between λ_i and the reward reached on i."""
    from scipy.stats import spearmanr

    values: list[float | None] = []
    for i in range(preferences.shape[1]):
        if len(preferences) < 3 or np.ptp(preferences[:, i]) == 0 or np.ptp(rewards[:, i]) == 0:
            values.append(None)
            continue
        rho = spearmanr(preferences[:, i], rewards[:, i]).statistic
        values.append(None if math.isnan(rho) else float(rho))
    return values


def bootstrap_means(fronts: dict[str, np.ndarray], resamples: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Each method's point means on ``resamples`` bootstrap resamples of the prompts, the same
    resamples for every method (so differences between methods are paired: a prompt that every
    method finds hard leaves and enters all fronts together).

    ``fronts[method]`` holds the per-prompt rewards of the method's points, shaped (points,
    prompts, objectives), with the prompts in the same order for every method; each result is
    shaped (resamples, points, objectives)."""
    prompts = {values.shape[1] for values in fronts.values()}
    if len(prompts) != 1:
        raise HoEError(f"paired bootstrap needs the same prompts for every method, got counts {sorted(prompts)}")
    n = prompts.pop()
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)  # (resamples, prompts)
    return {method: np.einsum("bn,pnm->bpm", counts, values) / n for method, values in fronts.items()}


def resampled_hypervolumes(means: dict[str, np.ndarray], reference: np.ndarray) -> dict[str, np.ndarray]:
    """Each method's hypervolume on every resample of ``bootstrap_means``. The reference point
    stays fixed: the interval is that of the fronts, not of where the reference lands."""
    return {method: np.asarray([hypervolume(front, reference) for front in m]) for method, m in means.items()}
