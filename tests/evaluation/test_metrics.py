"""Front metrics against values computed by hand."""

import numpy as np
import pytest

from hoe.errors import HoEError
from hoe.evaluation.metrics import (
    bootstrap_means,
    controllability,
    hypervolume,
    nondominated,
    reference_point,
    resampled_hypervolumes,
    tchebycheff_gap,
    tchebycheff_gaps,
)


def bootstrap_hypervolumes(fronts, reference, resamples=2000, seed=0):
    return resampled_hypervolumes(bootstrap_means(fronts, resamples, seed), reference)


def test_hypervolume_2d_staircase():
    # boxes [0,1]x[0,3] ∪ [0,2]x[0,2] ∪ [0,3]x[0,1]: strips of height 3, 2, 1 → 6
    points = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(points, np.zeros(2)) == pytest.approx(6.0)
    # a dominated point adds nothing; a reference moved to (1, 1) leaves 0·2 + 1·1 + ... = 1 + 0 = 1
    assert hypervolume(np.vstack([points, [[1.0, 1.0]]]), np.zeros(2)) == pytest.approx(6.0)
    assert hypervolume(points, np.ones(2)) == pytest.approx(1.0)


def test_hypervolume_3d_by_inclusion_exclusion():
    assert hypervolume(np.array([[1.0, 2.0, 3.0]]), np.zeros(3)) == pytest.approx(6.0)
    # 2·1·1 + 1·2·1 − overlap 1·1·1
    assert hypervolume(np.array([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0]]), np.zeros(3)) == pytest.approx(3.0)
    # with a shifted reference (0.5, 0.5, 0): 1.5·0.5·1 + 0.5·1.5·1 − 0.5·0.5·1
    assert hypervolume(np.array([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0]]), np.array([0.5, 0.5, 0.0])) == pytest.approx(1.25)


def test_points_not_above_the_reference_add_nothing():
    assert hypervolume(np.array([[-1.0, 5.0]]), np.zeros(2)) == 0.0
    with pytest.raises(HoEError, match="reference point has 3 values"):
        hypervolume(np.array([[1.0, 1.0]]), np.zeros(3))


def test_nondominated_and_reference():
    points = np.array([[1.0, 3.0], [2.0, 2.0], [1.0, 1.0], [3.0, 0.5]])
    assert nondominated(points).tolist() == [True, True, False, True]
    assert reference_point(points, margin=0.1).tolist() == pytest.approx([1.0 - 0.2, 0.5 - 0.25])


def test_tchebycheff_gap_by_hand():
    ideal, ref = np.array([1.0, 2.0]), np.array([0.0, 0.0])
    # scaled gaps: (1 − 0.5)/1 = 0.5 and (2 − 1)/2 = 0.5; weighted by λ = (0.8, 0.2): max(0.4, 0.1)
    assert tchebycheff_gap(np.array([0.8, 0.2]), np.array([0.5, 1.0]), ideal, ref) == pytest.approx(0.4)


def test_controllability_is_rank_correlation():
    lam = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    rewards = np.array([[0.9, 0.1], [0.5, 0.4], [0.2, 0.8]])
    assert controllability(lam, rewards) == pytest.approx([1.0, 1.0])
    assert controllability(lam, rewards[::-1]) == pytest.approx([-1.0, -1.0])
    assert controllability(lam[:2], rewards[:2]) == [None, None]


def test_tchebycheff_gap_scales_each_objective_by_its_own_range():
    """Guards: the gap without its range scaling (the case above gives the same maximum either way)."""
    ideal, ref = np.array([1.0, 4.0]), np.array([0.0, 0.0])
    # scaled: 0.5·(1 − 0.5)/1 = 0.25 and 0.5·(4 − 1)/4 = 0.375; unscaled the second would be 1.5
    assert tchebycheff_gap(np.array([0.5, 0.5]), np.array([0.5, 1.0]), ideal, ref) == pytest.approx(0.375)
    # a degenerate range (ideal at the reference) keeps scale 1
    assert tchebycheff_gap(
        np.array([0.0, 1.0]), np.array([0.0, -2.0]), np.array([0.0, 0.0]), np.zeros(2)
    ) == pytest.approx(2.0)


def test_reference_point_of_a_constant_objective():
    """A constant objective has no range: its margin is 10% of max(|value|, 1) instead."""
    points = np.array([[1.0, 0.5], [2.0, 0.5]])
    assert reference_point(points).tolist() == pytest.approx([1.0 - 0.1, 0.5 - 0.1 * 0.1])
    assert reference_point(np.array([[0.0, 5.0], [1.0, 5.0]])).tolist() == pytest.approx([-0.1, 5.0 - 0.05])


def test_controllability_with_a_reward_range_of_exactly_one_and_a_constant_reward():
    lam = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    assert controllability(lam, np.array([[1.0, 0.2], [0.5, 0.2], [0.0, 0.2]])) == [pytest.approx(1.0), None]


def test_bootstrap_resamples_the_prompts_of_every_method_together():
    """Pairing: a method identical to another has the same hypervolume on every resample; one point
    of one prompt each is its own front, so a resample's hypervolume is the product of that
    resample's means, which the counts (the same for every method) fix."""
    rng = np.random.default_rng(1)
    values = rng.uniform(0.2, 1.0, size=(3, 40, 2))  # 3 points, 40 prompts, 2 objectives
    volumes = bootstrap_hypervolumes({"a": values, "b": values.copy()}, np.zeros(2), resamples=200, seed=3)
    assert volumes["a"].shape == (200,) and np.array_equal(volumes["a"], volumes["b"])
    assert volumes["a"].std() > 0  # resamples differ from each other
    single = values[:1, :, :]
    one = bootstrap_hypervolumes({"x": single}, np.zeros(2), resamples=5, seed=3)["x"]
    counts = np.random.default_rng(3).multinomial(40, np.full(40, 1 / 40), size=5)
    means = counts @ single[0] / 40
    assert one == pytest.approx(means[:, 0] * means[:, 1])
    again = bootstrap_hypervolumes({"x": single}, np.zeros(2), resamples=5, seed=3)["x"]
    assert np.array_equal(one, again)  # a seed gives the same intervals every time


def test_bootstrap_refuses_methods_that_answered_different_numbers_of_prompts():
    with pytest.raises(HoEError, match=r"same prompts for every method, got counts \[3, 4\]"):
        bootstrap_hypervolumes({"a": np.ones((1, 3, 2)), "b": np.ones((1, 4, 2))}, np.zeros(2))


def test_mean_gaps_of_a_stack_of_fronts_are_the_mean_of_each_points_gap():
    preferences = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    ideal, reference = np.array([1.0, 2.0]), np.array([0.0, 0.5])
    fronts = np.random.default_rng(2).uniform(0, 2, size=(4, 3, 2))  # 4 resamples of 3 points
    expected = [np.mean([tchebycheff_gap(lam, r, ideal, reference) for lam, r in zip(preferences, f)]) for f in fronts]
    assert tchebycheff_gaps(preferences, fronts, ideal, reference).mean(-1) == pytest.approx(expected)
