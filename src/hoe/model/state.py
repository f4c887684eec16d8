"""The routing of the current batch, shared by every mixture layer of a HoE model.

Routing (which anchors, with which weights, per row) is decided once per batch by the
preference rule; each layer then only needs gate columns for its own expert layout. Those are
built on the first forward after a change and reused for every decoding step.
"""

from __future__ import annotations

import torch


class LayerPlan:
    """Gates for one (layout, batch size, device, dtype): which rank columns take part, their
    static gates, and the router mixing weights."""

    def __init__(self, state: "RoutingState", module, batch: int, device, dtype) -> None:
        repeat = batch // state.rows
        static = state.static.to(device=device, dtype=dtype).repeat_interleave(repeat, 0)  # (batch, K)
        self.mix = state.mix.to(device=device, dtype=dtype).repeat_interleave(repeat, 0)  # (batch, J)
        self.routers = state.active_routers
        self.static_experts = static[:, None, :]
        column_expert = module.column_expert.to(device)
        active = state.active_experts.to(device)[column_expert]
        self.columns = None if bool(active.all()) else torch.nonzero(active).flatten()
        self.empty = self.columns is not None and self.columns.numel() == 0
        self.column_expert = column_expert if self.columns is None else column_expert[self.columns]
        self.static_columns = static[:, self.column_expert][:, None, :]  # (batch, 1, C)
        self.covered = [torch.tensor(c, device=device) for c in state.router_experts]
        self._lora_B: dict[int, torch.Tensor] = {}

    def lora_B(self, module) -> torch.Tensor:
        if self.columns is None:
            return module.lora_B
        key = id(module)
        if key not in self._lora_B:
            self._lora_B[key] = module.lora_B.index_select(1, self.columns)
        return self._lora_B[key]

    def column_gates(self, module, x: torch.Tensor) -> torch.Tensor:
        if not self.routers:
            return self.static_columns
        gates = self.static_experts.expand(-1, x.shape[1] if x.ndim == 3 else 1, -1).clone()
        for j, probabilities in module.router_probabilities(x, self.routers).items():
            weighted = probabilities * self.mix[:, j, None, None]
            gates.index_add_(-1, self.covered[j], weighted.reshape(gates.shape[0], -1, len(self.covered[j])))
        return gates[..., self.column_expert]


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

    def plan_for(self, module, x: torch.Tensor) -> LayerPlan | None:
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
