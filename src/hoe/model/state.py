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
    static gates, and the map from router probabilities onto rank columns.

    When every row has the same λ and no router is involved, the gates are constants: they are
    folded into each module's B factor once (``B·diag(g)``), saving a multiply per forward."""

    def __init__(
        self, state: RoutingState, module: MixtureLinear, batch: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        repeat = batch // state.rows
        static = state.static.to(device=device, dtype=dtype).repeat_interleave(repeat, 0)  # (batch, K)
        mix = state.mix.to(device=device, dtype=dtype).repeat_interleave(repeat, 0)  # (batch, J)
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
        self.uniform = not self.routers and bool((static == static[:1]).all())
        self.static_is_zero = not bool(static.any())  # routers alone: no static part to add to their gates
        self.router_sizes = module.router_sizes
        self.router_map = module.router_map(mix, self.columns) if self.routers else None
        self._up: dict[int, torch.Tensor] = {}

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

    def router_gates(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-token gates of the active columns from every router's logits (…, Σ sizes): the
        static part plus each router's softmax times its routing weight, in three kernels."""
        probabilities = router_softmax(logits, self.router_sizes)
        rows = self.router_map.shape[0]
        flat = probabilities.reshape(rows, -1, probabilities.shape[-1])  # (batch, tokens, Σ sizes)
        if self.static_is_zero:
            gates = torch.bmm(flat, self.router_map)
        else:
            gates = torch.baddbmm(self.static_columns, flat, self.router_map)
        return gates.view(*logits.shape[:-1], gates.shape[-1])


def router_softmax(logits: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Each router's softmax over its own experts' logits (…, Σ sizes), taken in float32 at least and
    returned in the logits' dtype; routers of equal size share one softmax kernel."""
    wide = torch.promote_types(logits.dtype, torch.float32)  # bf16/fp16 upcast, float64 kept
    upcast = {"dtype": wide} if wide != logits.dtype else {}  # a dtype argument costs a kernel
    if len(set(sizes)) == 1:
        probabilities = torch.softmax(logits.unflatten(-1, (-1, sizes[0])), dim=-1, **upcast).flatten(-2)
    else:
        probabilities = torch.cat([torch.softmax(part, dim=-1, **upcast) for part in logits.split(sizes, dim=-1)], -1)
    return probabilities.to(logits.dtype)


class RoutingState:
    """Per-row weights on the anchor pool: K LoRA experts, then J router experts."""

    def __init__(self, num_experts: int, router_experts: list[list[int]]) -> None:
        self.num_experts = num_experts
        self.router_experts = router_experts
        self.rows = 0
        self._plans: dict[tuple, LayerPlan] = {}
        self.dense: tuple[torch.Tensor, torch.Tensor] | None = None  # see ``set(..., dense=)``

    @property
    def active(self) -> bool:
        return self.rows > 0

    def set(
        self, pool_weights: list[dict[int, float]], *, dense: tuple[torch.device, torch.dtype] | None = None
    ) -> None:
        """Route a batch: one {pool index: weight} per row.

        With ``dense=(device, dtype)`` every layer takes one code path whatever the routing (all rank
        columns, every router, the weights read from ``self.dense`` as tensors), so a compiled
        decoding step meets a new routing as new input values, not as new Python objects to
        re-trace (``MixtureLinear.dense_forward``). Without it, layers use per-layout plans that
        leave out what the routing does not need, which is faster in eager mode."""
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
        self.dense = None if dense is None else (static.to(*dense), mix.to(*dense))

    def clear(self) -> None:
        self.rows = 0
        self._plans.clear()
        self.dense = None

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
