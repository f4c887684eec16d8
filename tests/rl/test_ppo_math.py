"""PPO pieces checked by hand: OMD on the simplex, GAE, the combined advantage, the losses."""

import numpy as np
import pytest
import torch

from hoe.errors import HoEError
from hoe.rl.ppo import AdaptiveKL, ValueHead, combine, gae, ppo_loss, response_mask, token_rewards, whiten
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
    loss, stats = ppo_loss(
        new,
        old,
        adv,
        values,
        values,
        values,
        torch.zeros(1, 2),
        mask,
        clip_range=0.2,
        value_clip=0.2,
        value_coef=0.0,
        entropy_coef=0.0,
    )
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


# ---- pinned against the mutations that survived the suite (issue: "kill the surviving mutants") ----


def test_ppo_loss_by_hand_with_value_and_entropy_terms():
    """Guards: value clipping max → min, the entropy bonus's sign, the value coefficient."""
    mask = torch.ones(1, 2)
    new = torch.log(torch.tensor([[2.0, 0.5]]))
    adv = torch.tensor([[1.0, -1.0]])
    new_values, old_values = torch.tensor([[[0.5], [-0.3]]]), torch.zeros(1, 2, 1)
    returns = torch.tensor([[[1.0], [-1.0]]])
    entropy = torch.tensor([[1.0, 3.0]])
    loss, stats = ppo_loss(
        new,
        torch.zeros(1, 2),
        adv,
        new_values,
        old_values,
        returns,
        entropy,
        mask,
        clip_range=0.2,
        value_clip=0.2,
        value_coef=0.5,
        entropy_coef=0.1,
    )
    # policy: (−1.2 + 0.8) / 2 = −0.2 (as above)
    # values clipped to old ± 0.2 = (0.2, −0.2); squared errors unclipped (0.25, 0.49), clipped (0.64, 0.64):
    # the pessimistic max is (0.64, 0.64), value loss ½·0.64 = 0.32
    # entropy mean 2.0; loss = −0.2 + 0.5·0.32 − 0.1·2.0 = −0.24
    assert stats["policy_loss"] == pytest.approx(-0.2)
    assert stats["value_loss"] == pytest.approx(0.32)
    assert stats["entropy"] == pytest.approx(2.0)
    assert float(loss) == pytest.approx(-0.24)
    assert stats["approx_kl"] == pytest.approx(0.5 * np.log(2.0) ** 2)
    # more entropy must lower the loss (a bonus, not a penalty)
    higher, _ = ppo_loss(
        new,
        torch.zeros(1, 2),
        adv,
        new_values,
        old_values,
        returns,
        entropy + 1,
        mask,
        clip_range=0.2,
        value_clip=0.2,
        value_coef=0.5,
        entropy_coef=0.1,
    )
    assert float(higher) == pytest.approx(-0.24 - 0.1)


def test_gae_with_discount_below_one_by_hand():
    """Guards: γ dropped from the TD error or from the running advantage."""
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    rewards = torch.tensor([[[0.0], [0.0], [1.0], [0.0]]])
    values = torch.tensor([[[0.5], [0.2], [0.1], [7.0]]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # t=2: δ = 1 − 0.1 = 0.9;  t=1: δ = 0.9·0.1 − 0.2 = −0.11, A = −0.11 + 0.9·0.5·0.9 = 0.295
    # t=0: δ = 0.9·0.2 − 0.5 = −0.32, A = −0.32 + 0.45·0.295 = −0.18725
    assert advantages[0, :, 0].tolist() == pytest.approx([-0.18725, 0.295, 0.9, 0.0])
    assert returns[0, :, 0].tolist() == pytest.approx([-0.18725 + 0.5, 0.295 + 0.2, 0.9 + 0.1, 0.0])


def test_whiten_centres_and_scales_over_the_mask_only():
    """Guards: whitening without centring, or with the padding counted."""
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    out = whiten(values, mask)
    sd = (2.0 / 3.0) ** 0.5  # population variance of 1, 2, 3
    assert out[0].tolist() == pytest.approx([-1 / sd, 0.0, 1 / sd, 0.0], rel=1e-5)
    shifted = whiten(values + 10, mask)
    assert shifted[0].tolist() == pytest.approx(out[0].tolist(), abs=1e-5)


def test_two_omd_steps_from_a_non_uniform_w():
    """Exponentiated gradient with smoothing, step by step: w ∝ w·exp(η·λ⊙(z* − R)), then
    w ← s·w_old + (1 − s)·w_new."""
    s = Scalarisation("tchebycheff-omd", np.array([0.5, 0.5]), ideal=np.array([1.0, 1.0]), step=2.0, smoothing=0.5)
    s.w = np.array([0.7, 0.3])
    w = np.array([0.7, 0.3])
    for rewards in ([0.2, 0.8], [0.9, 0.1]):
        gaps = 0.5 * (1.0 - np.array(rewards))
        proposal = w * np.exp(2.0 * gaps)
        w = 0.5 * w + 0.5 * proposal / proposal.sum()
        s.update(np.array(rewards))
        assert s.w == pytest.approx(w)
    # by hand, first step: proposal ∝ (0.7·e^0.8, 0.3·e^0.2) = (1.5579, 0.3664) → (0.8096, 0.1904); w = (0.7548, 0.2452)
    first = Scalarisation("tchebycheff-omd", np.array([0.5, 0.5]), ideal=np.array([1.0, 1.0]), step=2.0, smoothing=0.5)
    first.w = np.array([0.7, 0.3])
    first.update(np.array([0.2, 0.8]))
    assert first.w == pytest.approx([0.7548, 0.2452], abs=1e-4)


def test_objective_value_is_the_worst_weighted_gap():
    """Guards: min → max in the Tchebycheff value the CLI and demo print."""
    s = Scalarisation("tchebycheff-omd", np.array([0.25, 0.75]), ideal=np.array([1.0, 2.0]))
    # λ ⊙ (R − z*) = (0.25·−0.5, 0.75·−1.0) = (−0.125, −0.75): the minimum
    assert s.objective_value(np.array([0.5, 1.0])) == pytest.approx(-0.75)
    assert Scalarisation("linear", np.array([0.5, 0.5])).objective_value(np.array([0.2, 0.6])) == pytest.approx(0.1)


def test_calibration_puts_the_ideal_beyond_each_expert():
    """In "sd" units normalisation pools every sample; z*_i = expert i's mean normalised reward on i + margin
    (guards the margin's sign and the choice of samples per objective)."""
    from hoe.rl.trainer import calibration_statistics

    reference = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    first_expert = torch.tensor([[4.0, 1.0], [4.0, 3.0]])
    samples = {"reference": reference, 0: first_expert}
    norm, ideal = calibration_statistics(samples, ["a", "b"], margin=0.25, scale="sd")
    pooled = np.array([[0, 1], [2, 3], [4, 1], [4, 3]], dtype=float)
    mean, sd = pooled.mean(0), pooled.std(0)  # a: 2.5, sd 1.6583; b: 2, sd 1
    assert norm["a"] == pytest.approx((mean[0], sd[0])) and norm["b"] == pytest.approx((mean[1], sd[1]))
    # a: its expert's (4 − 2.5)/1.6583 = 0.9045; b has no expert: the reference's (2 − 2)/1 = 0
    assert ideal == pytest.approx([(4 - mean[0]) / sd[0] + 0.25, 0.0 + 0.25], rel=1e-6)
    constant = {"reference": torch.tensor([[1.0, 5.0], [1.0, 6.0]])}
    for scale in ("sd", "range"):
        norm, _ = calibration_statistics(constant, ["a", "b"], margin=0.0, scale=scale)
        assert norm["a"] == (1.0, 1.0)  # a constant objective keeps unit 1


def test_range_units_span_the_models_means_so_the_preference_weighs_shares_of_the_trade_off():
    """In "range" units (the default) 0 is the lowest model mean on an objective and 1 the highest, whatever
    the per-answer noise: a noisy objective (b, SD 10 within each model) weighs as much as a quiet one (a)
    whose models differ by the same share. An objective the models do not separate keeps "sd" units."""
    from hoe.rl.trainer import calibration_statistics

    reference = torch.tensor([[1.0, 0.0, 5.0, 0.0], [1.0, 20.0, 5.0, 10.0]])  # means: a 1, b 10, c 5, d 5
    first = torch.tensor([[3.0, -10.0, 5.0, 10.0], [3.0, 10.0, 5.0, 0.0]])  # a 3, b 0, d 5
    second = torch.tensor([[0.0, 10.0, 5.0, 5.0], [0.0, 30.0, 5.0, 5.0]])  # a 0, b 20, d 5
    samples = {"reference": reference, 0: first, 1: second}
    norm, ideal = calibration_statistics(samples, ["a", "b", "c", "d"], margin=0.25)
    assert norm["a"] == pytest.approx((0.0, 3.0)) and norm["b"] == pytest.approx((0.0, 20.0))
    assert norm["c"] == (5.0, 1.0)  # constant: no span, unit 1
    # d varies per answer but no model's mean differs: its pooled mean and SD, sqrt(100 / 6)
    assert norm["d"] == pytest.approx((5.0, (100 / 6) ** 0.5))
    # each expert sits at 1 on its own objective; c and d have none: the reference's (5 − 5)/unit = 0
    assert ideal == pytest.approx([1.25, 1.25, 0.25, 0.25])
    sd_norm, _ = calibration_statistics(samples, ["a", "b", "c", "d"], margin=0.25, scale="sd")
    # in SD units the same full span counts 3 / 1.247 = 2.41 on a but only 20 / 12.91 = 1.55 on b (its noise)
    assert 3 / sd_norm["a"][1] == pytest.approx(2.406, abs=1e-3)
    assert 20 / sd_norm["b"][1] == pytest.approx(1.549, abs=1e-3)


def test_distributed_mean_divides_the_all_reduced_sum(monkeypatch):
    """Two processes holding (1, 3) and (3, 5): all-reduce sums to (4, 8), the mean is (2, 4)
    (guards a mean that returns the sum)."""
    from hoe.rl.trainer import Distributed

    dist = Distributed(cpu=True)
    assert dist.mean(torch.tensor([1.0, 3.0])).tolist() == [1.0, 3.0]  # one process: unchanged
    dist.size = 2
    other = torch.tensor([3.0, 5.0])
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda tensor, *a, **k: tensor.add_(other))
    mine = torch.tensor([1.0, 3.0])
    assert dist.mean(mine).tolist() == [2.0, 4.0]
    assert mine.tolist() == [1.0, 3.0]  # the caller's tensor is not reduced in place


def test_token_logprobs_entropies_and_hidden_states_against_a_full_forward(tiny_chat_model):
    """The last T tokens' log-probabilities, entropies and the hidden states that predict them,
    from the logits of the whole sequence (left padding in the second row)."""
    from transformers import AutoModelForCausalLM

    from hoe.rl.ppo import token_logprobs

    model = AutoModelForCausalLM.from_pretrained(tiny_chat_model).eval()
    sequences = torch.tensor([[7, 8, 9, 10, 11, 12, 13, 14], [1, 1, 20, 21, 22, 23, 24, 25]])
    attention = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        chosen, entropy, hidden = token_logprobs(model, sequences, attention, 3)
        positions = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7], [0, 0, 0, 1, 2, 3, 4, 5]])
        out = model(input_ids=sequences, attention_mask=attention, position_ids=positions, output_hidden_states=True)
    log_probs = torch.log_softmax(out.logits.float(), -1)
    for t in range(3):  # token 5 + t is predicted at position 4 + t
        expected = log_probs[torch.arange(2), 4 + t, sequences[:, 5 + t]]
        torch.testing.assert_close(chosen[:, t], expected, rtol=1e-5, atol=1e-5)
        p = log_probs[:, 4 + t].exp()
        torch.testing.assert_close(entropy[:, t], -(p * log_probs[:, 4 + t]).sum(-1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(hidden[:, t], out.hidden_states[-1][:, 4 + t], rtol=1e-5, atol=1e-5)
    assert chosen.shape == entropy.shape == (2, 3) and (entropy > 0).all() and (chosen < 0).all()


def test_token_logprobs_of_a_left_padded_row_equal_the_row_alone():
    """Position ids follow the attention mask (checked on GPT-2's absolute positions; RoPE would not
    notice a shift)."""
    from conftest import tiny_gpt2

    from hoe.rl.ppo import token_logprobs

    model = tiny_gpt2()
    sequences = torch.tensor([[0, 0, 5, 6, 7, 8], [3, 4, 5, 6, 7, 8]])
    attention = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        padded, _, _ = token_logprobs(model, sequences, attention, 2)
        alone, _, _ = token_logprobs(model, sequences[:1, 2:], attention[:1, 2:], 2)
        shifted, _, _ = token_logprobs(model, sequences[1:], attention[1:], 2)
    torch.testing.assert_close(padded[:1], alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded[1:], shifted, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # an unpadded row starts at position 0, as the model numbers it by default
        default = torch.log_softmax(model(input_ids=sequences[1:]).logits[:, -3:-1].float(), -1)
    torch.testing.assert_close(shifted, default.gather(-1, sequences[1:, -2:, None]).squeeze(-1), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(alone, shifted[:, :2], atol=1e-3)  # the same tokens at other positions score differently


def test_value_head_starts_at_zero_and_reads_float32():
    head = ValueHead(4, 3)
    out = head(torch.ones(2, 5, 4, dtype=torch.bfloat16))
    assert out.shape == (2, 5, 3) and out.dtype == torch.float32 and not out.any()
    with torch.no_grad():
        head.linear.weight.fill_(0.5)
    assert head(torch.ones(1, 1, 4)).tolist() == [[[2.0, 2.0, 2.0]]]


def test_scalarisation_state_round_trips():
    s = Scalarisation("tchebycheff-omd", np.array([0.5, 0.5]), ideal=np.array([1.0, 2.0]))
    s.update(np.array([0.2, 0.9]))
    other = Scalarisation("tchebycheff-omd", np.array([0.5, 0.5]), ideal=np.array([0.0, 0.0]))
    other.load_state(s.state())
    assert other.w.tolist() == s.w.tolist() and other.ideal.tolist() == [1.0, 2.0]
    assert s.state() == {"w": s.w.tolist(), "ideal": [1.0, 2.0]}
    linear = Scalarisation("linear", np.array([0.5, 0.5]))
    assert linear.state() == {"w": [0.5, 0.5], "ideal": None}
    linear.update(np.array([0.0, 1.0]))
    assert linear.w.tolist() == [0.5, 0.5]  # only Tchebycheff moves w
    with pytest.raises(HoEError, match="single-objective scalarisation needs the objective"):
        Scalarisation("single", np.array([0.5, 0.5]))


# ---- edge cases found by mutation testing (make mutation) ------------------------------------


def test_response_mask_without_an_end_token_keeps_everything():
    mask = response_mask(torch.tensor([[5, 2, 7]]), None)
    assert mask.dtype == torch.float32 and mask.tolist() == [[1.0, 1.0, 1.0]]


def test_token_rewards_shape_and_gae_with_every_token_in_the_mask():
    rewards = token_rewards(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 3), torch.ones(1, 3), kl_coef=0.1)
    assert rewards.shape == (1, 3, 2) and rewards[0, 2].tolist() == [1.0, 2.0]
    # t=1 (last): A = 1 − 0.2 = 0.8; t=0: δ = 0.9·0.2 − 0.5 = −0.32, A = −0.32 + 0.9·0.5·0.8 = 0.04
    advantages, _ = gae(
        torch.tensor([[[0.0], [1.0]]]), torch.tensor([[[0.5], [0.2]]]), torch.ones(1, 2), gamma=0.9, lam=0.5
    )
    assert advantages[0, :, 0].tolist() == pytest.approx([0.04, 0.8])


def test_combine_keeps_the_advantages_dtype():
    out = combine(torch.ones(1, 2, 2), torch.tensor([0.25, 0.75], dtype=torch.float64))
    assert out.dtype == torch.float32 and out.tolist() == [[1.0, 1.0]]


def test_whiten_and_masked_mean_of_a_single_token():
    assert whiten(torch.tensor([[3.0, 9.0]]), torch.tensor([[1.0, 0.0]])).tolist() == [[0.0, 0.0]]
    from hoe.rl.ppo import masked_mean

    assert float(masked_mean(torch.tensor([[3.0, 9.0]]), torch.tensor([[1.0, 0.0]]))) == 3.0
    assert float(masked_mean(torch.tensor([[[1.0, 3.0]]]), torch.tensor([[1.0]]))) == 2.0  # the mask broadcasts


def test_ppo_loss_with_a_non_zero_old_policy_and_value():
    """Guards ratio = exp(new − old) and the value clip around the old value; an unclipped ratio
    counts 0 in the clip fraction; a large unclipped value error is squared."""
    old = torch.tensor([[-1.0, -2.0]])
    new = old + torch.log(torch.tensor([[1.1, 0.95]]))  # ratios 1.1 and 0.95: inside the clip range
    adv = torch.tensor([[1.0, 2.0]])
    old_values = torch.tensor([[[0.5], [0.5]]])
    new_values = torch.tensor([[[0.6], [0.4]]])  # within value_clip of the old values
    returns = torch.tensor([[[-1.0], [0.4]]])
    loss, stats = ppo_loss(
        new,
        old,
        adv,
        new_values,
        old_values,
        returns,
        torch.zeros(1, 2),
        torch.ones(1, 2),
        clip_range=0.2,
        value_clip=0.2,
        value_coef=1.0,
        entropy_coef=0.0,
    )
    assert stats["policy_loss"] == pytest.approx(-(1.1 * 1.0 + 0.95 * 2.0) / 2)
    assert stats["value_loss"] == pytest.approx(0.5 * (1.6**2 + 0.0) / 2)
    assert stats["clip_fraction"] == 0.0
    assert stats["approx_kl"] == pytest.approx(0.5 * (np.log(1.1) ** 2 + np.log(0.95) ** 2) / 2, rel=1e-5)
    assert float(loss) == pytest.approx(stats["policy_loss"] + stats["value_loss"])


@pytest.mark.parametrize(
    "kl, target, factor",
    [
        (1.1, 1.0, 1 + 0.1 * 10 / 100),  # inside the ±0.2 band
        (0.5, 1.0, 1 - 0.2 * 10 / 100),  # below: clipped at −0.2
        (0.1, 1.0, 1 - 0.2 * 10 / 100),
        (1.0, 2.0, 1 - 0.2 * 10 / 100),  # kl/target − 1 = −0.5
        (2.2, 2.0, 1 + 0.1 * 10 / 100),
    ],
)
def test_adaptive_kl_error_is_clipped_to_a_band(kl, target, factor):
    controller = AdaptiveKL(0.1, target=target, horizon=100)
    controller.update(kl=kl, samples=10)
    assert controller.coef == pytest.approx(0.1 * factor)


def test_scalarisation_defaults_messages_and_degenerate_weights():
    s = Scalarisation("tchebycheff-omd", np.array([0.5, 0.5]), ideal=np.array([1.0, 1.0]))  # step 1, smoothing 0.5
    s.update(np.array([0.0, 1.0]))  # gaps (0.5, 0): proposal ∝ (e^0.5, 1)
    proposal = np.array([np.exp(0.5), 1.0]) / (np.exp(0.5) + 1.0)
    assert s.w == pytest.approx(0.5 * np.array([0.5, 0.5]) + 0.5 * proposal)
    linear = Scalarisation("linear", [1, 3])
    assert linear.coefficients().dtype == np.float64 and linear.coefficients().tolist() == [1.0, 3.0]
    t = Scalarisation("tchebycheff-omd", np.array([0.0, 1.0]), ideal=np.zeros(2))
    t.w = np.array([1.0, 0.0])  # w ⊙ λ = 0: fall back to λ
    assert t.coefficients().tolist() == [0.0, 1.0]
    with pytest.raises(HoEError, match=r"^Tchebycheff scalarisation needs an ideal point z\*$"):
        Scalarisation("tchebycheff-omd", np.array([0.5, 0.5]))
    with pytest.raises(HoEError, match=r"^single-objective scalarisation needs the objective$"):
        Scalarisation("single", np.array([0.5, 0.5]))
