"""Preference vectors: parsing, validation and the parameter-free routing of Level 3.

A preference λ weights the bundle's objectives. It may be given by name
(``{"helpful": 0.7, "harmless": 0.3}``, or ``"helpful=0.7,harmless=0.3"``; names left out get 0)
or in the bundle's order (``[0.7, 0.3]`` or ``"0.7,0.3"``). Entries must be finite and
non-negative with a positive sum; a λ that does not sum to 1 is normalised.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence, Union

import numpy as np

from hoe.errors import HoEError

PreferenceLike = Union[str, Mapping[str, float], Sequence[float], np.ndarray]
ON_ANCHOR = 1e-6  # a λ this close to an anchor selects it alone


def parse_preference(value: PreferenceLike, objectives: Sequence[str]) -> np.ndarray:
    """A validated, normalised λ over ``objectives``."""
    n = len(objectives)
    if isinstance(value, str):
        value = _parse_text(value)
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in objectives]
        if unknown:
            raise HoEError(f"unknown objective '{unknown[0]}' in the preference (objectives: {', '.join(objectives)})")
        vector = [_weight(value.get(name, 0.0)) for name in objectives]
    elif isinstance(value, Sequence) or hasattr(value, "tolist"):  # a list, an array or a tensor
        vector = [_weight(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]
        if len(vector) != n:
            raise HoEError(
                f"preference has {len(vector)} values but the bundle has {n} objectives ({', '.join(objectives)})"
            )
    else:
        raise HoEError(f"a preference is 'name=weight,...', a list of weights or an object of weights, got {value!r}")
    if any(math.isnan(v) or math.isinf(v) for v in vector):
        raise HoEError(f"preference values must be finite numbers, got {vector}")
    if any(v < 0 for v in vector):
        raise HoEError(f"preference values must be non-negative, got {vector}")
    total = sum(vector)
    if total <= 0:
        raise HoEError("preference is all zero: at least one objective needs a positive weight")
    return np.asarray(vector, dtype=np.float64) / total


def _weight(value: object) -> float:
    """One weight of a preference: a number (a JSON request may carry anything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise HoEError(f"preference weights must be numbers, got {value!r}")
    return float(value)


def _parse_text(text: str) -> Mapping[str, float] | list[float]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise HoEError("empty preference")
    try:
        if all("=" in p for p in parts):
            return {k.strip(): float(v) for k, v in (p.split("=", 1) for p in parts)}
        return [float(p) for p in parts]
    except ValueError:
        raise HoEError(f"cannot read preference '{text}': use name=weight pairs or numbers, comma-separated") from None


def convex_weights(anchors: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative weights summing to 1 with Σ w_j anchors_j ≈ target, and the residual.

    Barycentric coordinates when the anchors are affinely independent and the target lies in
    their hull; otherwise non-negative least squares with the sum held to 1 by a heavy row.
    """
    from scipy.optimize import nnls

    k = anchors.shape[0]
    system = np.vstack([anchors.T, np.ones((1, k))])
    rhs = np.append(target, 1.0)
    solution, *_ = np.linalg.lstsq(system, rhs, rcond=None)
    residual = float(np.linalg.norm(system @ solution - rhs))
    if np.all(solution >= -1e-12) and residual < 1e-9:
        solution = np.clip(solution, 0.0, None)
        return solution / solution.sum(), float(np.linalg.norm(anchors.T @ (solution / solution.sum()) - target))
    heavy = 1e3
    weights, _ = nnls(np.vstack([anchors.T, heavy * np.ones((1, k))]), np.append(target, heavy))
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(k, 1.0 / k)
    return weights, float(np.linalg.norm(anchors.T @ weights - target))


def route(pool: np.ndarray, preference: np.ndarray, neighbours: int) -> dict[int, float]:
    """Level 3 routing: pool index -> weight for one λ.

    λ on an anchor selects it alone. Otherwise the ``neighbours`` nearest anchors (Euclidean)
    get convex weights reproducing λ, so at most ``neighbours`` anchors take part; if λ lies
    outside their hull, the whole pool is used, so any λ inside the pool's hull is reproduced
    exactly (with one single-objective expert per objective, about a quarter of random λ in a
    3-objective pool take this fallback; tests/model/test_routing.py).
    """
    distances = np.linalg.norm(pool - preference, axis=1)
    nearest = int(np.argmin(distances))
    if distances[nearest] <= ON_ANCHOR:
        return {nearest: 1.0}
    chosen = np.argsort(distances, kind="stable")[: min(neighbours, len(pool))]
    weights, residual = convex_weights(pool[chosen], preference)
    if residual > 1e-6 and len(chosen) < len(pool):
        everyone = np.arange(len(pool))
        all_weights, all_residual = convex_weights(pool, preference)
        if all_residual < residual:
            chosen, weights = everyone, all_weights
    return {int(j): float(w) for j, w in zip(chosen, weights) if w > 1e-12}


def nearest(anchors: np.ndarray, point: np.ndarray, count: int) -> list[int]:
    """Indices of the ``count`` anchors nearest ``point`` (ties broken by order)."""
    order = np.argsort(np.linalg.norm(anchors - point, axis=1), kind="stable")
    return [int(i) for i in order[:count]]
