"""``base``: the base model alone, one point for every preference."""

from __future__ import annotations

import numpy as np

from hoe.evaluation.methods.common import Method, Point, register


@register
class BaseMethod(Method):
    name = "base"
    per_preference = False
    needs_experts = False

    def points(self, preferences: list[np.ndarray]) -> list[Point]:
        return [Point("base", "base", None)]

    def setup(self, point: Point) -> None:
        if self.model is None:
            self.model = self.context.load_base()
