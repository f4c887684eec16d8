"""Front metrics against values computed by hand."""

import numpy as np
import pytest

from hoe.errors import HoEError
from hoe.evaluation.metrics import controllability, hypervolume, nondominated, reference_point, tchebycheff_gap


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
