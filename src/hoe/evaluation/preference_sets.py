"""Sets of preferences to evaluate: ``grid:K`` (K points per edge of the simplex, K ≥ 2),
``simplex:STEP`` (the lattice of step STEP, 1/STEP a whole number), ``anchors`` (the bundle's
own anchors: experts, merges and routers, so a router is evaluated where it was trained), or a
file (JSON list, JSON lines, or one preference per text line, by name or in objective order).
Sets joined by '+' are united (``grid:6+anchors``)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from hoe.errors import HoEError
from hoe.model.bundle import same_anchor
from hoe.routing import parse_preference


def simplex_lattice(objectives: int, divisions: int) -> list[np.ndarray]:
    """Every λ with entries in multiples of 1/divisions, ordered from objective 0 downward."""
    points = [
        np.asarray(c, dtype=np.float64) / divisions
        for c in itertools.product(range(divisions, -1, -1), repeat=objectives)
        if sum(c) == divisions
    ]
    return points


def preference_set(spec: str, objectives: list[str], anchors: np.ndarray | None = None) -> list[np.ndarray]:
    """The validated preferences of ``spec`` over ``objectives`` (normalised, duplicates dropped,
    in the order the parts name them). ``anchors``: the bundle's anchors, for the ``anchors`` part."""
    points = [point for part in spec.split("+") for point in _part(part.strip(), objectives, anchors)]
    unique: list[np.ndarray] = []
    for point in points:
        if not any(same_anchor(point, seen) for seen in unique):
            unique.append(point)
    if not unique:
        raise HoEError(f"preference set '{spec}' is empty")
    return unique


def _part(spec: str, objectives: list[str], anchors: np.ndarray | None) -> list[np.ndarray]:
    if spec == "anchors":
        if anchors is None:
            raise HoEError("'anchors' names a bundle's anchors: use it where a bundle is evaluated")
        return [np.asarray(anchor, dtype=np.float64) for anchor in anchors]
    if spec.startswith("grid:"):
        count = _number(spec, int)
        if count < 2:
            raise HoEError(f"'{spec}': a grid needs at least 2 points per edge")
        return simplex_lattice(len(objectives), count - 1)
    if spec.startswith("simplex:"):
        step = _number(spec, float)
        divisions = round(1 / step) if step > 0 else 0
        if not 0 < step <= 1 or abs(divisions * step - 1) > 1e-9:
            raise HoEError(f"'{spec}': the step must divide 1 (0.5, 0.25, 0.1, ...)")
        return simplex_lattice(len(objectives), divisions)
    return [parse_preference(value, objectives) for value in _read_file(spec)]


def _number(spec: str, kind):
    text = spec.partition(":")[2]
    try:
        return kind(text)
    except ValueError:
        raise HoEError(f"cannot read '{spec}': expected grid:K or simplex:STEP") from None


def _read_file(spec: str) -> list:
    path = Path(spec)
    if not path.is_file():
        raise HoEError(f"preference file not found: '{spec}' (or use grid:K / simplex:STEP)")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HoEError(f"'{path}' is not valid JSON: {exc.msg} (line {exc.lineno})") from None
        if not isinstance(values, list):
            raise HoEError(f"'{path}' must hold a JSON list of preferences")
        return values
    values = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line[0] in "[{":
            try:
                values.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise HoEError(f"'{path}' line {number}: {exc.msg}") from None
        else:
            values.append(line)
    return values


def preference_label(preference: np.ndarray) -> str:
    """A short, file-name-safe label: ``0.25-0.75``."""
    return "-".join(f"{v:.4g}" for v in preference)
