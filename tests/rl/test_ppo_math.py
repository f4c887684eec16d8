"""PPO pieces checked by hand: OMD on the simplex, GAE, the combined advantage, the losses."""

import numpy as np
import pytest
import torch

from hoe.errors import HoEError
from hoe.rl.ppo import AdaptiveKL, combine, gae, ppo_loss, response_mask, token_rewards
from hoe.rl.scalarisation import Scalarisation


def test_omd_moves_weight_to_the_largest_weighted_gap():
    s = Scalarisation("tchebycheff-omd", np.array([0.5, 0.5]), ideal=np.array([1.0, 1.0]), step=1.0, smoothing=0.0)
    s.update(np.array([0.9, 0.2]))  # gaps 0.05 and 0.4: objective 2 lags
    assert s.w[1] > s.w[0] and s.w.sum() == pytest.approx(1.0) and (s.w > 0).all()
    # by hand: w ∝ 0.5·exp(0.05), 0.5·exp(0.4)
    expected = np.exp([0.05, 0.4]) / np.exp([0.05, 0.4]).sum()
    assert s.w == pytest.approx(expected)
    # the preference weighs the gap: with λ = (0.9, 0.1) objective 1's smaller gap counts more
    t = Scalarisation("tchebycheff-omd", np.array([0.9, 0.1]), ideal=np.array([1.0, 1.0]), step=1.0, smoothing=0.0)
    t.update(np.array([0.5, 0.0]))  # weighted gaps 0.45 and 0.1
    assert t.w[0] > t.w[1]


def test_omd_smoothing_and_many_steps_stay_on_the_simplex():
    s = Scalarisation("tchebycheff-omd", np.array([0.2, 0.3, 0.5]), ideal=np.zeros(3), step=5.0, smoothing=0.5)
    rng = np.random.default_rng(0)
    for _ in range(200):
        before = s.w.copy()
        s.update(rng.normal(size=3) * 100)
        assert s.w.sum() == pytest.approx(1.0) and (s.w >= 0).all() and np.isfinite(s.w).all()
        assert np.abs(s.w - before).max() <= 0.5 + 1e-12  # smoothing keeps at least half of the old w


def test_coefficients_per_scalarisation():
    lam = np.array([0.25, 0.75])
    assert Scalarisation("linear", lam).coefficients() == pytest.approx(lam)
    assert Scalarisation("single", lam, objective=1).coefficients() == pytest.approx([0, 1])
    t = Scalarisation("tchebycheff-omd", lam, ideal=np.ones(2))
    t.w = np.array([0.75, 0.25])
    assert t.coefficients() == pytest.approx([0.5, 0.5])  # w⊙λ = (0.1875, 0.1875), normalised
    with pytest.raises(HoEError, match="ideal point"):
        Scalarisation("tchebycheff-omd", lam)


def test_gae_and_combined_advantage_by_hand():
    # one row, three tokens (the third is padding), two objectives; γ = 1, λ = 0.5
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    rewards = torch.tensor([[[0.0, 0.0], [1.0, -1.0], [0.0, 0.0]]])
    values = torch.tensor([[[0.5, 0.0], [0.2, 0.1], [9.0, 9.0]]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # t = 1 (last): δ = r − V = (0.8, −1.1); t = 0: δ = 0 + V₁ − V₀ = (−0.3, 0.1), A₀ = δ + 0.5·A₁
    assert advantages[0, 1].tolist() == pytest.approx([0.8, -1.1])
    assert advantages[0, 0].tolist() == pytest.approx([-0.3 + 0.4, 0.1 - 0.55])
    assert advantages[0, 2].tolist() == [0.0, 0.0] and returns[0, 2].tolist() == [0.0, 0.0]
    assert returns[0, 0].tolist() == pytest.approx([0.1 + 0.5, -0.45 + 0.0])
    combined = combine(advantages, torch.tensor([0.25, 0.75]))
    assert combined[0, :2].tolist() == pytest.approx([0.25 * 0.1 + 0.75 * -0.45, 0.25 * 0.8 + 0.75 * -1.1])


def test_token_rewards_put_scores_on_the_last_token():
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 9.0, 9.0]])
    rewards = token_rewards(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), kl, mask, kl_coef=0.5)
    assert rewards[0, :, 0].tolist() == pytest.approx([-0.05, -0.1, -0.15 + 1.0])
    assert rewards[1, :, 1].tolist() == pytest.approx([-0.25 + 4.0, 0.0, 0.0])


def test_response_mask_stops_after_eos():
    tokens = torch.tensor([[5, 6, 2, 2], [5, 2, 7, 2], [5, 6, 7, 8]])
    assert response_mask(tokens, 2).tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]]


def test_ppo_loss_clips_the_ratio():
    mask = torch.ones(1, 2)
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[2.0, 0.5]]))  # ratios 2 and 0.5
    adv = torch.tensor([[1.0, -1.0]])
    values = torch.zeros(1, 2, 1)
    loss, stats = ppo_loss(new, old, adv, values, values, values, torch.zeros(1, 2), mask, clip_range=0.2, value_clip=0.2,
                           value_coef=0.0, entropy_coef=0.0)
    # max(−A·r, −A·clip(r)): token 1 → max(−2, −1.2) = −1.2; token 2 → max(0.5, 0.8) = 0.8
    assert float(loss) == pytest.approx((-1.2 + 0.8) / 2)
    assert stats["clip_fraction"] == pytest.approx(1.0)


def test_adaptive_kl_moves_toward_the_target():
    controller = AdaptiveKL(0.1, target=1.0, horizon=100)
    controller.update(kl=3.0, samples=10)
    assert controller.coef == pytest.approx(0.1 * 1.02)
    fixed = AdaptiveKL(0.1, target=None, horizon=100)
    fixed.update(kl=3.0, samples=10)
    assert fixed.coef == 0.1
