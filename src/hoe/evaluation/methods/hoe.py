"""``hoe``: the bundle as built (LoRA experts, merged experts, routers), one forward pass per token."""

from __future__ import annotations

from hoe.evaluation.methods.common import Point, RoutedMethod, register
from hoe.model import HoEModel


@register
class HoEMethod(RoutedMethod):
    name = "hoe"
    needs_experts = False
    uses_routers = True

    def setup(self, point: Point) -> None:
        if self.model is None:
            self.model = HoEModel.from_bundle(
                self.context.bundle.folder,
                device=self.context.device,
                dtype=self.context.dtype,
                trust_remote_code=self.context.trust_remote_code,
            )
