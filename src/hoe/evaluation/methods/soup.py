"""``soup``: the static λ-mix of the single-objective LoRA experts, served by the same mixture
layers as HoE (one forward pass per token, no router, no merged expert)."""

from __future__ import annotations

from hoe.evaluation.methods.common import Point, RoutedMethod, register
from hoe.experts.lora import read_lora
from hoe.model import HoEModel


@register
class SoupMethod(RoutedMethod):
    """Static λ-mix of the single-objective LoRA experts, served by the same mixture layers as HoE."""

    name = "soup"

    def setup(self, point: Point) -> None:
        if self.model is None:
            experts = []
            for expert in self.context.single_experts():
                modules = read_lora(expert.lora).modules
                factors = {m: (lora.scale * lora.B.float(), lora.A.float()) for m, lora in modules.items()}
                experts.append((expert.name, expert.anchor, factors))
            self.model = HoEModel.from_modules(
                self.context.load_base(), self.context.tokenizer, self.context.bundle.objectives, experts
            )
