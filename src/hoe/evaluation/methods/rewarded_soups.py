"""``rs``: Rewarded Soups (Ramé et al. 2023), θ₀ + Σ λ_i τ_i with the experts' full task vectors
(their LoRA deltas where the bundle records no full model), re-mixed for each λ."""

from __future__ import annotations

from hoe.evaluation.methods.common import Method, Point, load_state, register


@register
class RewardedSoupsMethod(Method):
    """Rewarded Soups: θ₀ + Σ λ_i τ_i over the full task vectors, one model per λ."""

    name = "rs"

    def setup(self, point: Point) -> None:
        if self.model is None:
            self.model = self.context.load_base()
            self._vectors = self.context.task_vectors_of_experts()
        state = {k: v.float().clone() for k, v in self.context.base_state().items()}
        for weight, vector in zip(point.preference, self._vectors):
            if weight > 0:
                for key, delta in vector.items():
                    state[key] += weight * delta
        load_state(self.model, state)
