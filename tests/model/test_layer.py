"""The mixture layer and the routing state on their own, against y = W₀x + b + Σ_k g_k B_k A_k x
built by hand: a biased base layer, per-row static mixes, routers (one or two per row, one over
experts that do not adapt the module), 2-D inputs, several layouts sharing one state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hoe.model.layer import MixtureLinear
from hoe.model.state import RoutingState

GEN = torch.Generator().manual_seed(0)


def randn(*shape, dtype=torch.float32):
    return torch.randn(*shape, generator=GEN, dtype=torch.float64).to(dtype)


def make_layer(ranks=(2, 1, 0), routers=([0, 1], [0, 2]), dtype=torch.float32, bias=True):
    """Three experts (the third does not adapt this module) and two routers."""
    base = nn.Linear(6, 5, bias=bias).to(dtype)
    with torch.no_grad():
        base.weight.copy_(randn(5, 6, dtype=dtype))
        if bias:
            base.bias.copy_(randn(5, dtype=dtype))
    state = RoutingState(3, [list(r) for r in routers])
    layer = MixtureLinear(base, list(ranks), [len(r) for r in routers], state)
    factors = {}
    for k, rank in enumerate(ranks):
        if rank:
            factors[k] = (randn(5, rank, dtype=dtype), randn(rank, 6, dtype=dtype))
            layer.set_expert(k, *factors[k])
    with torch.no_grad():
        layer.router_weight.copy_(randn(*layer.router_weight.shape, dtype=dtype))
        layer.router_bias.copy_(randn(*layer.router_bias.shape, dtype=dtype))
    layer.sync_routers()
    return base, layer, state, factors


def by_hand(base, factors, x, gates):
    """W₀x + b + Σ_k g_k B_k A_k x with gates (…, K) per token."""
    y = base(x)
    for k, (B, A) in factors.items():
        y = y + gates[..., k : k + 1] * (x @ A.T @ B.T)
    return y


def router_probabilities(layer, x, j, covers):
    """Router j's softmax over its covered experts, spread onto all three expert slots."""
    logits = x @ layer.router_weight[layer.router_slice(j)].T + layer.router_bias[layer.router_slice(j)]
    p = torch.softmax(logits, -1)
    out = torch.zeros(*x.shape[:-1], 3, dtype=x.dtype)
    for i, e in enumerate(covers):
        out[..., e] = p[..., i]
    return out


def test_construction_freezes_the_base_and_experts_and_keeps_routers_trainable():
    _, layer, _, _ = make_layer(dtype=torch.bfloat16)
    assert not layer.fused.requires_grad and not layer.lora_B.requires_grad and not layer.bias.requires_grad
    assert layer.router_weight.requires_grad and layer.router_bias.requires_grad
    assert {p.dtype for p in layer.parameters()} == {torch.bfloat16}
    assert layer.fused.shape == (5 + 3 + 4, 6) and layer.lora_B.shape == (5, 3) and layer.router_bias.shape == (4,)
    assert layer.column_expert.tolist() == [0, 0, 1] and "column_expert" not in layer.state_dict()
    assert "fused_bias" not in layer.state_dict()  # an inference copy, rebuilt from the parameters
    assert layer.layout == (2, 1, 0) and layer.router_slice(0) == slice(0, 2) and layer.router_slice(1) == slice(2, 4)
    assert layer.expert_slice(1) == slice(2, 3)


def test_without_a_preference_the_layer_is_its_base():
    base, layer, state, _ = make_layer()
    x = randn(2, 4, 6)
    assert not state.active and state.rows == 0
    with torch.no_grad():
        torch.testing.assert_close(layer(x), base(x))


def test_static_mixes_per_row_with_a_bias():
    base, layer, state, factors = make_layer()
    x = randn(2, 4, 6)
    state.set([{0: 0.3, 1: 0.7}, {2: 1.0}])  # row 1: an expert that does not adapt this module
    with torch.no_grad():
        got = layer(x)
        torch.testing.assert_close(got[:1], by_hand(base, factors, x[:1], torch.tensor([0.3, 0.7, 0.0])))
        torch.testing.assert_close(got[1:], base(x[1:]))
    state.set([{2: 1.0}])  # nothing active anywhere: the base layer alone
    with torch.no_grad():
        torch.testing.assert_close(layer(x), base(x))
    state.set([{0: 0.5, 1: 0.5}])  # one λ for both rows: gates folded into B
    with torch.no_grad():
        torch.testing.assert_close(layer(x), by_hand(base, factors, x, torch.tensor([0.5, 0.5, 0.0])))


def test_float64_layers_keep_the_routing_weights_exact():
    base, layer, state, factors = make_layer(dtype=torch.float64)
    x = randn(1, 3, 6, dtype=torch.float64)
    state.set([{0: 1 / 3, 1: 2 / 3}])
    with torch.no_grad():
        torch.testing.assert_close(
            layer(x),
            by_hand(base, factors, x, torch.tensor([1 / 3, 2 / 3, 0.0], dtype=torch.float64)),
            rtol=1e-13,
            atol=1e-13,
        )
    state.set([{3: 1 / 3, 0: 2 / 3}])
    gates = router_probabilities(layer, x, 0, [0, 1]) / 3 + torch.tensor([2 / 3, 0.0, 0.0], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), by_hand(base, factors, x, gates), rtol=1e-13, atol=1e-13)


def test_bfloat16_routers_and_rows_expanded_for_beams():
    """A bf16 layer keeps bf16 gates; two preferences over a batch of four rows (beams) give rows
    0, 1 the first λ and rows 2, 3 the second."""
    base, layer, state, factors = make_layer()
    x = randn(4, 3, 6)
    state.set([{3: 1.0}, {4: 0.5, 1: 0.5}])
    first = router_probabilities(layer, x[:2], 0, [0, 1])
    second = 0.5 * router_probabilities(layer, x[2:], 1, [0, 2]) + torch.tensor([0.0, 0.5, 0.0])
    with torch.no_grad():
        got = layer(x)
        torch.testing.assert_close(got[:2], by_hand(base, factors, x[:2], first))
        torch.testing.assert_close(got[2:], by_hand(base, factors, x[2:], second))
        half = layer.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16 and (half[:2].float() - got[:2]).abs().max() < 0.1 * got.abs().max()


@pytest.mark.parametrize("training", [False, True])
def test_routers_gate_tokens_by_their_softmax(training):
    """Row 0: router 0 alone (expert 0 and 1). Row 1: 0.5 of router 0, 0.3 of router 1 (experts 0
    and 2, so expert 1 gets nothing from it) and 0.2 of expert 1's static gate. Inference reads the
    stacked copy of the routers; training (grad on) reads the parameters."""
    base, layer, state, factors = make_layer()
    x = randn(2, 4, 6)
    state.set([{3: 1.0}, {3: 0.5, 4: 0.3, 1: 0.2}])
    gates0 = router_probabilities(layer, x[:1], 0, [0, 1])
    gates1 = (
        0.5 * router_probabilities(layer, x[1:], 0, [0, 1])
        + 0.3 * router_probabilities(layer, x[1:], 1, [0, 2])
        + torch.tensor([0.0, 0.2, 0.0])
    )
    with torch.set_grad_enabled(training):
        got = layer(x)
        torch.testing.assert_close(got[:1], by_hand(base, factors, x[:1], gates0).detach())
        torch.testing.assert_close(got[1:], by_hand(base, factors, x[1:], gates1).detach())
    if training:
        got.sum().backward()
        assert layer.router_weight.grad is not None and layer.router_bias.grad.abs().sum() > 0


def test_inference_uses_the_stacked_router_copy_until_synced():
    base, layer, state, factors = make_layer()
    x = randn(1, 2, 6)
    state.set([{3: 1.0}])
    before = router_probabilities(layer, x, 0, [0, 1])
    with torch.no_grad():
        layer.router_weight[0].add_(1.0)  # one logit only: a shift of every logit would leave the softmax as it was
        torch.testing.assert_close(layer(x), by_hand(base, factors, x, before))  # the stale copy
        layer.sync_routers()
        synced = router_probabilities(layer, x, 0, [0, 1])
        torch.testing.assert_close(layer(x), by_hand(base, factors, x, synced))
        layer.router_bias[1].add_(2.0)  # the biases travel in the stacked copy too
        torch.testing.assert_close(layer(x), by_hand(base, factors, x, synced))
        layer.sync_routers()
        torch.testing.assert_close(layer(x), by_hand(base, factors, x, router_probabilities(layer, x, 0, [0, 1])))


def test_routers_of_different_sizes_each_take_their_own_softmax():
    """Router 0 covers all three experts, router 1 two of them: no common group size, so each
    router's softmax is taken apart; a row mixing both sums their gates per expert."""
    base, layer, state, factors = make_layer(ranks=(2, 1, 3), routers=([0, 1, 2], [2, 0]))
    x = randn(2, 3, 6)
    state.set([{3: 1.0}, {3: 0.4, 4: 0.6}])
    mixed = 0.4 * router_probabilities(layer, x[1:], 0, [0, 1, 2]) + 0.6 * router_probabilities(layer, x[1:], 1, [2, 0])
    gates = torch.cat([router_probabilities(layer, x[:1], 0, [0, 1, 2]), mixed])
    with torch.no_grad():
        torch.testing.assert_close(layer(x), by_hand(base, factors, x, gates))


def test_a_router_over_experts_that_do_not_adapt_the_module_adds_nothing():
    base, layer, state, factors = make_layer(ranks=(2, 0, 0), routers=([1, 2],))
    x = randn(1, 3, 6)
    state.set([{3: 0.6, 0: 0.4}])
    with torch.no_grad():
        torch.testing.assert_close(layer(x), by_hand(base, factors, x, torch.tensor([0.4, 0.0, 0.0])))


def test_two_dimensional_inputs_and_batch_checks():
    base, layer, state, factors = make_layer()
    tokens = randn(7, 6)  # (tokens, features): one sequence
    state.set([{0: 0.25, 1: 0.75}])
    with torch.no_grad():
        torch.testing.assert_close(layer(tokens), by_hand(base, factors, tokens, torch.tensor([0.25, 0.75, 0.0])))
    state.set([{3: 0.5, 1: 0.5}])  # with a router: gates per token
    gates = 0.5 * router_probabilities(layer, tokens, 0, [0, 1]) + torch.tensor([0.0, 0.5, 0.0])
    with torch.no_grad():
        torch.testing.assert_close(layer(tokens), by_hand(base, factors, tokens, gates))
    state.set([{0: 1.0}, {1: 1.0}])
    with pytest.raises(RuntimeError, match=r"^batch of 3 rows routed with 2 preferences$"):
        layer(randn(3, 2, 6))
    with pytest.raises(RuntimeError, match=r"^batch of 1 rows routed with 2 preferences$"):
        layer(randn(4, 6))  # a 2-D input is one sequence, whatever its number of tokens
    state.clear()
    assert not state.active


def test_layers_of_different_layouts_share_one_state():
    """Each layout gets its own plan (columns and gates), though the batch and dtype are the same."""
    state = RoutingState(2, [])
    layers, expected = [], []
    x = randn(2, 3, 6)
    for ranks in ((2, 1), (1, 3)):
        base = nn.Linear(6, 5)
        layer = MixtureLinear(base, list(ranks), [], state)
        factors = {k: (randn(5, r), randn(r, 6)) for k, r in enumerate(ranks)}
        for k, (B, A) in factors.items():
            layer.set_expert(k, B, A)
        layers.append(layer)
        expected.append(
            lambda x, base=base, factors=factors: by_hand(base, factors, x, torch.tensor([[[0.2, 0.8]], [[0.9, 0.1]]]))
        )
    state.set([{0: 0.2, 1: 0.8}, {0: 0.9, 1: 0.1}])
    with torch.no_grad():
        for layer, hand in zip(layers, expected):
            torch.testing.assert_close(layer(x), hand(x))


@pytest.mark.parametrize("routers", [[[0, 1, 2, 3]], [[0, 1, 2, 3], [0, 1]]], ids=["one-softmax", "per-router"])
def test_half_precision_router_gates_take_their_softmax_in_float32(routers):
    """fp16 logits: the softmax runs in float32 and is cast back, on both paths (routers of one size in
    one call, of different sizes one by one). A plain fp16 softmax differs from it only now and then
    (here, on one of these 64 tokens; seed chosen so), so the upcast is checked bit for bit. (bf16
    gives the same bits either way on the CPU.)"""
    state = RoutingState(4, routers)
    layer = MixtureLinear(nn.Linear(6, 5, bias=False).half(), [1, 1, 1, 1], [len(r) for r in routers], state)
    state.set([{4: 1.0}])  # router 0 alone, mix weight 1: its gates are its probabilities exactly
    first = (torch.randn(1, 64, 4, generator=torch.Generator().manual_seed(27)) * 4).half()
    logits = torch.cat([first, torch.zeros(1, 64, len(routers) * 2 - 2, dtype=torch.float16)], dim=-1)
    plan = state.plan_for(layer, torch.zeros(1, 64, 6, dtype=torch.float16))
    expected = torch.softmax(first.float(), dim=-1).half()
    assert not torch.equal(torch.softmax(first, dim=-1), expected)
    assert torch.equal(plan.router_gates(logits), expected)


DENSE = (torch.device("cpu"), torch.float32)


@pytest.mark.parametrize(
    "layout",
    [((2, 1, 0), ([0, 1], [0, 2]), True), ((2, 1, 3), ([0, 1, 2], [2, 0]), False), ((2, 0, 1), (), True)],
    ids=["two-routers", "routers-of-different-sizes", "no-routers"],
)
def test_the_dense_path_gives_what_the_plans_give_for_any_routing(layout):
    """The one code path a compiled serving step takes (every rank column and router, the routing as
    tensors) against the per-layout plans, which the tests above check by hand: static mixes, one or
    two routers per row, a row with nothing, an expert that does not adapt the module, 2-D inputs."""
    ranks, routers, bias = layout
    base, layer, state, factors = make_layer(ranks=ranks, routers=routers, bias=bias)
    via_router = [{3: 1.0}, {3: 0.5, 4: 0.3, 1: 0.2}, {2: 1.0}] if routers else [{2: 1.0}, {0: 0.5, 1: 0.5}, {1: 1.0}]
    for rows in (via_router, [{0: 0.25, 1: 0.75}] * 3, [{}, {2: 1.0}, {0: 1.0}]):
        for x in (randn(3, 4, 6), randn(3, 1, 6)):
            state.set(rows)
            with torch.no_grad():
                planned = layer(x)
                state.set(rows, dense=DENSE)
                torch.testing.assert_close(layer(x), planned)
    state.set(via_router[1:2], dense=DENSE)
    tokens = randn(5, 6)  # (tokens, features): one sequence
    with torch.no_grad():
        dense = layer(tokens)
        state.set(via_router[1:2])
        torch.testing.assert_close(dense, layer(tokens))
    state.set(via_router, dense=DENSE)
    state.clear()
    assert state.dense is None and not state.active
