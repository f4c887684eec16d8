"""``experts``: each single-objective expert alone, at its own anchor."""

from __future__ import annotations

import numpy as np

from hoe.evaluation.methods.common import Method, Point, register


@register
class ExpertsMethod(Method):
    name = "experts"
    per_preference = False

    def points(self, preferences: list[np.ndarray]) -> list[Point]:
        return [Point("experts", e.name, e.anchor) for e in self.context.single_experts()]

    def setup(self, point: Point) -> None:
        names = [e.name for e in self.context.single_experts()]
        self.model = self.context.expert_models()[names.index(point.label)]
