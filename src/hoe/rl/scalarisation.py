"""How per-objective advantages are combined: Tchebycheff solved by online mirror descent (the
paper's), linear Σ λ_i R_i, or one objective alone.

Tchebycheff maximises min_i λ_i (R_i − z*_i), i.e. minimises max_i λ_i (z*_i − R_i), as a
min-max over w on the simplex. Online mirror descent (exponentiated gradient) moves w toward the
objective whose weighted gap λ_i (z*_i − R̄_i) is largest; the policy then follows the combined
advantage Σ_i w_i λ_i A_i (normalised to sum 1, so the KL penalty keeps its scale).
"""

from __future__ import annotations

import numpy as np

from hoe.errors import HoEError


class Scalarisation:
    """State and update rule of one scalarisation; ``coefficients`` weight the advantages."""

    def __init__(
        self,
        kind: str,
        preference: np.ndarray,
        *,
        ideal: np.ndarray | None = None,
        step: float = 1.0,
        smoothing: float = 0.5,
        objective: int | None = None,
    ) -> None:
        self.kind, self.preference = kind, np.asarray(preference, dtype=np.float64)
        self.ideal = None if ideal is None else np.asarray(ideal, dtype=np.float64)
        self.step, self.smoothing, self.objective = step, smoothing, objective
        n = len(self.preference)
        self.w = np.full(n, 1.0 / n)
        if kind == "tchebycheff-omd" and self.ideal is None:
            raise HoEError("Tchebycheff scalarisation needs an ideal point z*")
        if kind == "single" and objective is None:
            raise HoEError("single-objective scalarisation needs the objective")

    def coefficients(self) -> np.ndarray:
        if self.kind == "tchebycheff-omd":
            weighted = self.w * self.preference
            return weighted / weighted.sum() if weighted.sum() > 0 else self.preference
        if self.kind == "linear":
            return self.preference.copy()
        one_hot = np.zeros_like(self.preference)
        one_hot[self.objective] = 1.0
        return one_hot

    def update(self, mean_rewards: np.ndarray) -> None:
        """One OMD step on w from this batch's mean (normalised) rewards; no-op for the others."""
        if self.kind != "tchebycheff-omd":
            return
        gaps = self.preference * (self.ideal - np.asarray(mean_rewards, dtype=np.float64))
        proposal = self.w * np.exp(self.step * (gaps - gaps.max()))  # shifted: same after normalising, no overflow
        proposal /= proposal.sum()
        self.w = self.smoothing * self.w + (1.0 - self.smoothing) * proposal
        self.w /= self.w.sum()

    def objective_value(self, mean_rewards: np.ndarray) -> float:
        """The Tchebycheff scalarised reward min_i λ_i (R̄_i − z*_i) (higher is better)."""
        ideal = self.ideal if self.ideal is not None else np.zeros_like(self.preference)
        return float(np.min(self.preference * (np.asarray(mean_rewards) - ideal)))

    def state(self) -> dict:
        return {"w": self.w.tolist(), "ideal": None if self.ideal is None else self.ideal.tolist()}

    def load_state(self, state: dict) -> None:
        self.w = np.asarray(state["w"], dtype=np.float64)
        if state.get("ideal") is not None:
            self.ideal = np.asarray(state["ideal"], dtype=np.float64)
