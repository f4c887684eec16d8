"""The routing of the current batch, shared by every mixture layer of a HoE model.

Routing (which anchors, with which weights, per row) is decided once per batch by the
preference rule; each layer then only needs gate columns for its own expert layout. Those are
built on the first forward after a change and reused for every decoding step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # annotations only
    from hoe.model.layer import MixtureLinear

SKIP_MIN_ELEMENTS = 1 << 18  # inactive B entries (columns × out features) worth a gather


class LayerPlan:
    """Gates for one (layout, batch size, device, dtype): which rank columns take part, their
    static gates, and the router mixing weights.

    When every row has the same λ and no router is involved, the gates are constants: they are
    folded into each module's B factor once (``B·diag(g)``), saving a multiply per forward."""

    def __init__(
        self, state: RoutingState, module: MixtureLinear, batch: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        repeat = batch // state.rows
        static = state.static.to(device=device, dtype=dtype).repeat_interleave(repeat, 0)  # (batch, K)
        self.mix = state.mix.to(device=device, dtype=dtype).repeat_interleave(repeat, 0)  # (batch, J)
        self.routers = state.active_routers
        column_expert = module.column_expert.to(device)
        active = state.active_experts.to(device)[column_expert]
        inactive = int((~active).sum())
        # Leaving columns out costs a gather per forward; it pays only when it saves enough bytes
        # of B (small experts on a CPU: no; rank-256 experts of a 7B model: yes).
        skip = inactive > 0 and (inactive == active.numel() or inactive * module.out_features >= SKIP_MIN_ELEMENTS)
        self.columns = torch.nonzero(active).flatten() if skip else None
        self.empty = inactive == active.numel()
        self.column_expert = column_expert if self.columns is None else column_expert[self.columns]
        self.static_columns = static[:, self.column_expert][:, None, :]  # (batch, 1, C)
        self.covered = [torch.tensor(c, device=device) for c in state.router_experts]
        self.uniform = not self.routers and bool((static == static[:1]).all())
        self.static_is_zero = not bool(static.any())
        self.mix_is_one = [bool((self.mix[:, j] == 1).all()) for j in range(self.mix.shape[1])]
        self._up: dict[int, torch.Tensor] = {}
        self._router_indices: dict[int, tuple[torch.Tensor, bool]] = {}

    def up_projection(self, module: MixtureLinear) -> torch.Tensor:
        """The (active columns × out) matrix the gated projections are multiplied by: Bᵀ, with
        the gates folded in when they are the same constants for every row."""
        key = id(module)
        up = self._up.get(key)
        if up is None:
            B = module.lora_B if self.columns is None else module.lora_B.index_select(1, self.columns)
            if self.uniform:
                B = B * self.static_columns[0]
            up = self._up[key] = B.T.contiguous()
        return up

    def router_gates(self, module: MixtureLinear, logits: torch.Tensor) -> torch.Tensor:
        """Per-token gates of the active columns: static part plus each active router's softmax,
        weighted by its routing weight, gathered straight onto the rank columns."""
        gates = None
        for j in self.routers:
            # softmax in at least float32: bf16/fp16 logits are upcast, float64 ones kept
            wide = torch.promote_types(logits.dtype, torch.float32)
            probabilities = torch.softmax(logits[..., module.router_slice(j)], dim=-1, dtype=wide).to(logits.dtype)
            index, padded = self._router_index(j)
            if padded:
                probabilities = torch.nn.functional.pad(probabilities, (0, 1))
            term = probabilities.index_select(-1, index)
            if not self.mix_is_one[j]:
                term = term * self.mix[:, j, None, None]
            gates = term if gates is None else gates + term
        return gates if self.static_is_zero else gates + self.static_columns

    def _router_index(self, j: int) -> tuple[torch.Tensor, bool]:
        """For each active column, the position of its expert in router j's softmax (or a zero
        pad column when router j does not cover that expert)."""
        cached = self._router_indices.get(j)
        if cached is None:
            covered = self.covered[j].tolist()
            position = {expert: i for i, expert in enumerate(covered)}
            index = [position.get(int(e), len(covered)) for e in self.column_expert]
            padded = any(i == len(covered) for i in index)
            cached = self._router_indices[j] = (torch.tensor(index, device=self.column_expert.device), padded)
        return cached


class RoutingState:
    """Per-row weights on the anchor pool: K LoRA experts, then J router experts."""

    def __init__(self, num_experts: int, router_experts: list[list[int]]) -> None:
        self.num_experts = num_experts
        self.router_experts = router_experts
        self.rows = 0
        self._plans: dict[tuple, LayerPlan] = {}

    @property
    def active(self) -> bool:
        return self.rows > 0

    def set(self, pool_weights: list[dict[int, float]]) -> None:
        """Route a batch: one {pool index: weight} per row."""
        k, j = self.num_experts, len(self.router_experts)
        static = torch.zeros(len(pool_weights), k, dtype=torch.float64)
        mix = torch.zeros(len(pool_weights), j, dtype=torch.float64)
        for row, weights in enumerate(pool_weights):
            for index, weight in weights.items():
                if index < k:
                    static[row, index] += weight
                else:
                    mix[row, index - k] += weight
        active = static.sum(0) > 0
        for router in range(j):
            if mix[:, router].sum() > 0:
                active[self.router_experts[router]] = True
        self.static, self.mix, self.active_experts = static, mix, active
        self.active_routers = [r for r in range(j) if mix[:, r].sum() > 0]
        self.rows = len(pool_weights)
        self._plans.clear()

    def clear(self) -> None:
        self.rows = 0
        self._plans.clear()

    def plan_for(self, module: MixtureLinear, x: torch.Tensor) -> LayerPlan | None:
        if not self.rows:
            return None
        batch = x.shape[0] if x.ndim == 3 else 1
        if batch % self.rows:
            raise RuntimeError(f"batch of {batch} rows routed with {self.rows} preferences")
        key = (module.layout, batch, x.device, x.dtype)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = LayerPlan(self, module, batch, x.device, x.dtype)
        return plan
