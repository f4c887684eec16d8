"""Level 3 routing with 2 to 5 objectives: convex weights that reproduce λ, drawn from the nearest
anchors, with the whole-pool fallback when λ lies outside their hull."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hoe.routing import convex_weights, nearest, route


def simplex_point(values: list[float]) -> np.ndarray | None:
    vector = np.asarray(values, dtype=np.float64)
    return vector / vector.sum() if vector.sum() > 1e-3 else None


@st.composite
def pools_and_preferences(draw):
    """A pool as the shipped recipes make them: one single-objective expert per objective (so
    every λ is inside the pool's hull) plus up to three merged/router anchors inside the simplex,
    in any order, and a λ on the simplex."""
    n = draw(st.integers(3, 5))
    interior = []
    for _ in range(draw(st.integers(0, 3))):
        point = simplex_point(draw(st.lists(st.floats(0.05, 1.0), min_size=n, max_size=n)))
        interior.append(point)
    pool = np.vstack([np.eye(n), *interior]) if interior else np.eye(n)
    pool = pool[draw(st.permutations(list(range(len(pool)))))]
    lam = simplex_point(draw(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=n, max_size=n)))
    if lam is None:
        lam = np.full(n, 1.0 / n)
    return pool, lam


@given(pools_and_preferences())
def test_routing_reproduces_any_preference_with_convex_weights(case):
    """(300 examples: the "hoe" hypothesis profile in conftest.py.) Σ_k w_k a_k = λ, w ≥ 0, Σ w = 1; the
    anchors used are among the N = #objectives nearest (at most N of them) unless those cannot reproduce λ,
    in which case the whole pool serves it."""
    pool, lam = case
    n = pool.shape[1]
    routing = route(pool, lam, neighbours=n)
    indices = np.array(sorted(routing))
    weights = np.array([routing[i] for i in indices])
    assert (weights > 0).all() and weights.sum() == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(weights @ pool[indices], lam, atol=1e-6)
    closest = set(nearest(pool, lam, n))
    if not set(indices) <= closest:  # the fallback: the nearest N alone must not reproduce λ
        _, residual = convex_weights(pool[sorted(closest)], lam)
        assert residual > 1e-6
    else:
        assert len(indices) <= n


def test_an_anchor_alone_is_selected_alone():
    pool = np.vstack([np.eye(3), [0.2, 0.4, 0.4]])
    assert route(pool, np.array([0.2, 0.4, 0.4]), neighbours=3) == {3: 1.0}
    assert route(pool, np.array([0.0, 1.0, 0.0]), neighbours=3) == {1: 1.0}


def test_three_objective_fallback_is_common_and_exact():
    """In the 3-objective pool of the shipped recipes (three experts and one router at (0.2, 0.4,
    0.4)) about a quarter of random λ fall outside the hull of their three nearest anchors."""
    pool = np.vstack([np.eye(3), [0.2, 0.4, 0.4]])
    rng = np.random.default_rng(0)
    fallbacks = 0
    for lam in rng.dirichlet(np.ones(3), size=400):
        routing = route(pool, lam, neighbours=3)
        indices = sorted(routing)
        np.testing.assert_allclose(np.array([routing[i] for i in indices]) @ pool[indices], lam, atol=1e-6)
        fallbacks += not set(indices) <= set(nearest(pool, lam, 3))
    assert 0.1 < fallbacks / 400 < 0.4


def test_outside_the_nearest_hull_the_test_bundle_uses_the_whole_pool(bundle_dir):
    """λ = (0.6, 0.4) on the test bundle: its two nearest anchors, 'balanced' (0.5, 0.5) and the router
    at (0.25, 0.75), cannot make it (it is not between them); without the fallback it would be
    served as (0.5, 0.5)."""
    from hoe.model.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    pool, names = bundle.pool(), bundle.pool_names()
    routing = bundle.route([0.6, 0.4])
    served = sum(w * pool[i] for i, w in routing.items())
    np.testing.assert_allclose(served, [0.6, 0.4], atol=1e-9)
    assert "helpful" in {names[i] for i in routing}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0.7,0.3", [0.7, 0.3]),
        ("helpful=0.7, harmless=0.3", [0.7, 0.3]),
        (" harmless = 2 ", [0.0, 1.0]),
        ("3, 1,", [0.75, 0.25]),
    ],
)
def test_preference_texts(text, expected):
    from hoe.routing import parse_preference

    assert parse_preference(text, ["helpful", "harmless"]).tolist() == pytest.approx(expected)


@pytest.mark.parametrize(
    "value, message",
    [
        (" , ", r"^empty preference$"),
        (
            "helpful=harmless=1",
            r"^cannot read preference 'helpful=harmless=1': use name=weight pairs or numbers, comma-separated$",
        ),
        ("0.5;0.5", r"^cannot read preference '0.5;0.5'"),
        ({"funny": 1}, r"^unknown objective 'funny' in the preference \(objectives: helpful, harmless\)$"),
        ([1, 2, 3], r"^preference has 3 values but the bundle has 2 objectives \(helpful, harmless\)$"),
        ([0, 0], r"^preference is all zero: at least one objective needs a positive weight$"),
    ],
)
def test_bad_preferences_are_one_exact_line(value, message):
    from hoe.errors import HoEError
    from hoe.routing import parse_preference

    with pytest.raises(HoEError, match=message):
        parse_preference(value, ["helpful", "harmless"])


def test_affinely_dependent_anchors_get_the_minimum_norm_weights():
    """Anchors (1, 0), (0, 1), (0.5, 0.5) and λ = (0.6, 0.4): every w = (0.6, 0.4, 0) + t·(1, 1, −2)/−2
    reproduces λ; the barycentric (least-squares) rule takes the one of least norm, t = 1/6:
    (13/30, 7/30, 1/3), which is non-negative, so it is used as is (not an NNLS vertex)."""
    weights, residual = convex_weights(np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]), np.array([0.6, 0.4]))
    assert weights.tolist() == pytest.approx([13 / 30, 7 / 30, 1 / 3]) and residual == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "value, message",
    [
        (3.5, r"^a preference is 'name=weight,\.\.\.', a list of weights or an object of weights, got 3\.5$"),
        (["0.5", "0.5"], r"^preference weights must be numbers, got '0\.5'$"),  # a JSON body may carry strings
        ([True, False], r"^preference weights must be numbers, got True$"),  # bool is an int to Python
    ],
)
def test_preferences_of_the_wrong_type_are_one_exact_line(value, message):
    from hoe.errors import HoEError
    from hoe.routing import parse_preference

    with pytest.raises(HoEError, match=message):
        parse_preference(value, ["helpful", "harmless"])


def test_preferences_from_arrays_and_tensors():
    """A numpy array is not a Sequence and iterating a tensor gives 0-d tensors: both are read
    through ``tolist``."""
    import torch

    from hoe.routing import parse_preference

    for value in (np.array([1, 3]), torch.tensor([1.0, 3.0]), torch.tensor([1, 3])):
        assert parse_preference(value, ["helpful", "harmless"]).tolist() == pytest.approx([0.25, 0.75])


def test_a_target_off_the_anchors_span_gets_its_nearest_convex_point():
    """Two anchors in three objectives and λ off their segment: the barycentric system has no
    exact solution (its least-squares weights, 0.733/0.133, do not sum to 1), so the NNLS path with
    the sum held to 1 gives the nearest point of the segment, (0.8, 0.2)."""
    weights, residual = convex_weights(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), np.array([0.6, 0.0, 0.4]))
    assert weights.tolist() == pytest.approx([0.8, 0.2], abs=1e-6) and residual == pytest.approx(0.24**0.5, abs=1e-6)


def test_nearest_breaks_ties_in_order_for_many_anchors():
    """numpy's default sort is not stable past 16 entries; tied anchors are taken in pool order."""
    anchors = np.vstack([np.ones((20, 2)), np.zeros((30, 2))])
    assert nearest(anchors, np.zeros(2), 4) == [20, 21, 22, 23]
