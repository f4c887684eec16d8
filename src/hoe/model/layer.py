"""The mixture-of-LoRA linear layer: y = W₀x + Σ_k g_k(x) B_k A_k x.

Efficient form: one GEMM of x against the stacked [W₀; A_1; …; A_K] gives the base output and
every expert's rank-r projection at once; the projections are scaled by per-token gates and
one GEMM against the stacked [B_1 … B_K] adds them back. Router experts are one more GEMM
(all routers of the module stacked) followed by a softmax per router. Rank columns of experts
whose gate is zero for the whole batch are left out of the second GEMM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MixtureLinear(nn.Module):
    """A frozen linear layer with K LoRA experts and J router experts (see module docstring).

    ``ranks[k]`` is expert k's rank in this module (0 when the expert does not adapt it);
    ``router_sizes[j]`` is how many experts router j covers.
    """

    def __init__(self, base: nn.Linear, ranks: list[int], router_sizes: list[int], state) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        total_rank = sum(ranks)
        fused = torch.empty(self.out_features + total_rank, self.in_features, dtype=base.weight.dtype, device=base.weight.device)
        fused[: self.out_features].copy_(base.weight.detach())
        self.fused = nn.Parameter(fused, requires_grad=False)  # [W₀; A_1; …; A_K]
        self.bias = None if base.bias is None else nn.Parameter(base.bias.detach().clone(), requires_grad=False)
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, total_rank, dtype=fused.dtype, device=fused.device), requires_grad=False)
        self.ranks = list(ranks)
        self.router_sizes = list(router_sizes)
        total_router = sum(router_sizes)
        self.router_weight = nn.Parameter(torch.zeros(total_router, self.in_features, dtype=fused.dtype, device=fused.device))
        self.router_bias = nn.Parameter(torch.zeros(total_router, dtype=fused.dtype, device=fused.device))
        self.register_buffer("column_expert", torch.repeat_interleave(torch.arange(len(ranks)), torch.tensor(ranks, dtype=torch.long)).to(fused.device), persistent=False)
        self.layout = tuple(ranks)
        self._state = [state]  # a list keeps the shared state out of the module tree

    @property
    def weight(self) -> torch.Tensor:
        return self.fused[: self.out_features]

    @property
    def lora_A(self) -> torch.Tensor:
        return self.fused[self.out_features :]

    def expert_slice(self, k: int) -> slice:
        start = sum(self.ranks[:k])
        return slice(start, start + self.ranks[k])

    def set_expert(self, k: int, B: torch.Tensor, A: torch.Tensor) -> None:
        """Load expert k's factors (delta = B @ A) into the stacked storage."""
        columns = self.expert_slice(k)
        with torch.no_grad():
            self.fused[self.out_features + columns.start : self.out_features + columns.stop].copy_(A)
            self.lora_B[:, columns].copy_(B)

    def router_slice(self, j: int) -> slice:
        start = sum(self.router_sizes[:j])
        return slice(start, start + self.router_sizes[j])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = self._state[0].plan_for(self, x)
        if plan is None or plan.empty:  # no expert active here: the base layer alone
            return F.linear(x, self.weight, self.bias)
        out = F.linear(x, self.fused)
        y, projections = out[..., : self.out_features], out[..., self.out_features :]
        if plan.columns is not None:
            projections = projections.index_select(-1, plan.columns)
        gates = plan.column_gates(self, x)  # (batch, 1 or seq, active columns), or None when folded
        if gates is not None:
            projections = projections * gates
        up = plan.up_projection(self)
        y = torch.addmm(y.reshape(-1, self.out_features), projections.reshape(-1, up.shape[0]), up)
        y = y.view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def router_probabilities(self, x: torch.Tensor, routers: list[int]) -> dict[int, torch.Tensor]:
        """Per-token softmax of each listed router over the experts it covers."""
        logits = F.linear(x, self.router_weight, self.router_bias)
        return {j: torch.softmax(logits[..., self.router_slice(j)].float(), dim=-1).to(x.dtype) for j in routers}
