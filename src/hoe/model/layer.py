"""The mixture-of-LoRA linear layer: y = W₀x + Σ_k g_k(x) B_k A_k x.

Efficient form: one GEMM of x against the stacked [W₀; A_1; …; A_K; R_1; …; R_J] (with the stacked
bias [b; 0; r]) gives the base output, every expert's rank-r projection and every router's logits
at once; the projections are scaled by per-token gates and one GEMM against the stacked
[B_1 … B_K] adds them back. On a small model each extra kernel costs about as much as the extra
bytes, so the gates take three: one softmax over all routers, one batched GEMM that spreads
them onto the rank columns (see ``LayerPlan.router_gates``), one multiply.
Rank columns of experts whose gate is zero for the whole batch are left out of the second GEMM
when that saves enough bytes to pay for the gather.

The router rows inside the stacked matrix are an inference copy of the trainable
``router_weight`` parameter (``sync_routers`` refreshes it); while routers are being trained
their logits come from ``router_weight`` itself so gradients reach it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from hoe.model.state import router_softmax

if TYPE_CHECKING:  # annotations only: the state imports nothing of the layer at run time
    from hoe.model.state import RoutingState


class MixtureLinear(nn.Module):
    """A frozen linear layer with K LoRA experts and J router experts (see module docstring).

    ``ranks[k]`` is expert k's rank in this module (0 when the expert does not adapt it);
    ``router_sizes[j]`` is how many experts router j covers.
    """

    def __init__(self, base: nn.Linear, ranks: list[int], router_sizes: list[int], state: RoutingState) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.ranks, self.router_sizes = list(ranks), list(router_sizes)
        self.total_rank, total_router = sum(ranks), sum(router_sizes)
        dtype, device = base.weight.dtype, base.weight.device
        fused = torch.zeros(
            self.out_features + self.total_rank + total_router, self.in_features, dtype=dtype, device=device
        )
        fused[: self.out_features].copy_(base.weight.detach())
        self.fused = nn.Parameter(fused, requires_grad=False)  # [W₀; A_1; …; A_K; R_1; …; R_J]
        self.bias = None if base.bias is None else nn.Parameter(base.bias.detach().clone(), requires_grad=False)
        self.lora_B = nn.Parameter(
            torch.zeros(self.out_features, self.total_rank, dtype=dtype, device=device), requires_grad=False
        )
        self.router_weight = nn.Parameter(torch.zeros(total_router, self.in_features, dtype=dtype, device=device))
        self.router_bias = nn.Parameter(torch.zeros(total_router, dtype=dtype, device=device))
        fused_bias = torch.zeros(len(fused), dtype=dtype, device=device)
        if base.bias is not None:
            fused_bias[: self.out_features].copy_(base.bias.detach())
        self.register_buffer("fused_bias", fused_bias, persistent=False)  # [b; 0; r], refreshed by sync_routers
        experts = torch.repeat_interleave(torch.arange(len(ranks)), torch.tensor(ranks, dtype=torch.long))
        self.register_buffer("column_expert", experts.to(device), persistent=False)
        # for ``router_map``: which router each router row belongs to, and which rank columns its expert owns
        covered = [(j, expert) for j, experts_ in enumerate(state.router_experts) for expert in experts_]
        self.register_buffer(
            "router_of_row", torch.tensor([j for j, _ in covered], dtype=torch.long, device=device), persistent=False
        )
        owns = torch.tensor([e for _, e in covered], dtype=torch.long).reshape(-1, 1) == experts.reshape(1, -1)
        self.register_buffer("router_columns", owns.to(device=device, dtype=dtype), persistent=False)
        self.layout = tuple(ranks)
        self._state = [state]  # a list keeps the shared state out of the module tree

    @property
    def weight(self) -> torch.Tensor:
        return self.fused[: self.out_features]

    @property
    def lora_A(self) -> torch.Tensor:
        return self.fused[self.out_features : self.out_features + self.total_rank]

    def expert_slice(self, k: int) -> slice:
        start = sum(self.ranks[:k])
        return slice(start, start + self.ranks[k])

    def router_slice(self, j: int) -> slice:
        start = sum(self.router_sizes[:j])
        return slice(start, start + self.router_sizes[j])

    def set_expert(self, k: int, B: torch.Tensor, A: torch.Tensor) -> None:
        """Load expert k's factors (delta = B @ A) into the stacked storage."""
        columns = self.expert_slice(k)
        with torch.no_grad():
            self.lora_A[columns].copy_(A)
            self.lora_B[:, columns].copy_(B)

    def sync_routers(self) -> None:
        """Copy the router parameters into the stacked matrix and bias used at inference."""
        with torch.no_grad():
            self.fused[self.out_features + self.total_rank :].copy_(self.router_weight)
            self.fused_bias[self.out_features + self.total_rank :].copy_(self.router_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self._state[0]
        if state.dense is not None:
            return self.dense_forward(x, *state.dense)
        plan = state.plan_for(self, x)
        if plan is None or plan.empty:  # no expert active here: the base layer alone
            return F.linear(x, self.weight, self.bias)
        # the stacked bias carries b and the router biases; without either the GEMM needs none
        out = F.linear(x, self.fused, self.fused_bias if plan.routers or self.bias is not None else None)
        y = out[..., : self.out_features]
        projections = out[..., self.out_features : self.out_features + self.total_rank]
        if plan.columns is not None:
            projections = projections.index_select(-1, plan.columns)
        if plan.routers:
            projections = projections * plan.router_gates(self.router_logits(x, out))
        elif not plan.uniform:
            projections = projections * plan.static_columns
        up = plan.up_projection(self)
        y = torch.addmm(y.reshape(-1, self.out_features), projections.reshape(-1, up.shape[0]), up)
        return y.view(*x.shape[:-1], self.out_features)

    def dense_forward(self, x: torch.Tensor, static: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        """The same output as ``forward`` with every rank column and every router taking part, the
        routing given as tensors: ``static`` (rows, K) weights on the LoRA experts, ``mix`` (rows, J)
        on the routers. One code path for any routing, for ``torch.compile`` (see ``RoutingState.set``)."""
        if x.ndim == 2:  # one row's tokens
            return self.dense_forward(x[None], static, mix)[0]
        out = F.linear(x, self.fused, self.fused_bias)
        y = out[..., : self.out_features]
        projections = out[..., self.out_features : self.out_features + self.total_rank]
        gates = static[:, self.column_expert]  # (rows, C)
        if self.router_sizes:
            probabilities = router_softmax(self.router_logits(x, out), self.router_sizes)  # (rows, tokens, Σ sizes)
            gates = torch.baddbmm(
                gates[:, None, :], probabilities.reshape(len(mix), -1, len(self.router_of_row)), self.router_map(mix)
            ).view(*projections.shape)
        else:
            gates = gates.view(len(static), *([1] * (projections.ndim - 2)), -1)
        return y + F.linear(projections * gates, self.lora_B)

    def router_map(self, mix: torch.Tensor, columns: torch.Tensor | None = None) -> torch.Tensor:
        """(rows, Σ router sizes, C) for the routers' weights ``mix`` (rows, J): entry [b, (j, i), c]
        is row b's weight on router j when rank column c (of ``columns``, default all) belongs to
        router j's i-th expert, else 0. Multiplying every router's softmax by it sums each column's
        gate over the routers that cover its expert, mix weights included."""
        owns = self.router_columns if columns is None else self.router_columns[:, columns]
        return mix[:, self.router_of_row, None] * owns.to(mix.dtype)

    def router_logits(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """All routers' logits: from the stacked GEMM at inference, from the parameters when
        they are being trained (so gradients reach them)."""
        if self.router_weight.requires_grad and torch.is_grad_enabled():
            return F.linear(x, self.router_weight, self.router_bias)
        return out[..., self.out_features + self.total_rank :]
