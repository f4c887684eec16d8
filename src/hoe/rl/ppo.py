"""A small PPO for multi-objective rewards, readable top to bottom (nanoGPT-style).

One step: sample responses from the policy (rollout), score them on every objective, take the
log-probabilities of the policy and of the reference, build per-token rewards (the KL penalty
on every token, each objective's normalised reward on the last one), estimate advantages per
objective with GAE against a value head with N outputs, combine them with the scalarisation's
coefficients, and take a few clipped policy-gradient epochs. The value head reads the frozen
model's last hidden states (detached), so only the policy's own parameters and the head learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel


class ValueHead(nn.Module):
    """N value estimates per token, one per objective."""

    def __init__(self, hidden: int, objectives: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden, objectives)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float())


@dataclass
class Rollout:
    """One batch of sampled responses and everything PPO needs about them."""

    sequences: torch.Tensor  # (B, P + T): left-padded prompt, then the response
    attention: torch.Tensor  # (B, P + T)
    mask: torch.Tensor  # (B, T): response tokens up to and including end-of-sequence
    logprobs: torch.Tensor  # (B, T) policy at sampling time
    ref_logprobs: torch.Tensor  # (B, T)
    values: torch.Tensor  # (B, T, N)
    texts: list[str]


def response_mask(tokens: torch.Tensor, eos_token_id: int | None) -> torch.Tensor:
    """1 for every generated token up to and including the first end-of-sequence token."""
    if eos_token_id is None:
        return torch.ones_like(tokens, dtype=torch.float32)
    is_eos = (tokens == eos_token_id).int()
    after = torch.cumsum(is_eos, dim=1) - is_eos  # eos tokens seen before this position
    return (after == 0).float()


def token_logprobs(
    model: PreTrainedModel, sequences: torch.Tensor, attention: torch.Tensor, response_length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probabilities and entropies of the last ``response_length`` tokens, and the hidden
    states that predict them (for the value head)."""
    positions = (attention.long().cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=sequences,
        attention_mask=attention,
        position_ids=positions,
        output_hidden_states=True,
        logits_to_keep=response_length + 1,
        use_cache=False,
    )
    logits = out.logits[:, :-1].float()
    targets = sequences[:, -response_length:]
    log_probs = F.log_softmax(logits, dim=-1)
    chosen = log_probs.gather(-1, targets[..., None]).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    hidden = out.hidden_states[-1][:, -response_length - 1 : -1]
    return chosen, entropy, hidden


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """(B, T, N): −kl_coef · KL_t on every response token, plus each objective's score on the last."""
    rewards = (-kl_coef * kl * mask)[..., None].repeat(1, 1, scores.shape[1])
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(last), device=last.device), last] += scores
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation per objective: (B, T, N) advantages and returns."""
    steps = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    m = mask[..., None]
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] * m[:, t + 1] if t + 1 < steps else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running * (m[:, t + 1] if t + 1 < steps else 0.0)) * m[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * m


def combine(advantages: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Σ_i c_i A_i: (B, T, N) per-objective advantages into one (B, T)."""
    return (advantages * coefficients.to(advantages)).sum(-1)


def whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    count = mask.sum().clamp(min=1)
    mean = (values * mask).sum() / count
    variance = (((values - mean) * mask) ** 2).sum() / count
    return (values - mean) * torch.rsqrt(variance + 1e-8) * mask


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    while mask.ndim < values.ndim:
        mask = mask[..., None]
    return (values * mask).sum() / (mask.expand_as(values).sum().clamp(min=1))


def ppo_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_range: float,
    value_clip: float,
    value_coef: float,
    entropy_coef: float,
) -> tuple[torch.Tensor, dict]:
    """Clipped policy loss + clipped value loss − entropy bonus, averaged over response tokens."""
    ratio = torch.exp(new_logprobs - old_logprobs)
    policy = masked_mean(
        torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)), mask
    )
    clipped_values = old_values + (new_values - old_values).clamp(-value_clip, value_clip)
    value = 0.5 * masked_mean(torch.maximum((new_values - returns) ** 2, (clipped_values - returns) ** 2), mask)
    mean_entropy = masked_mean(entropy, mask)
    loss = policy + value_coef * value - entropy_coef * mean_entropy
    stats = {
        "policy_loss": policy.item(),
        "value_loss": value.item(),
        "entropy": mean_entropy.item(),
        "clip_fraction": masked_mean(((ratio.detach() - 1).abs() > clip_range).float(), mask).item(),
        "approx_kl": masked_mean(0.5 * (new_logprobs - old_logprobs).detach() ** 2, mask).item(),
    }
    return loss, stats


class AdaptiveKL:
    """Ziegler et al.'s controller: move the coefficient so the measured KL tracks a target."""

    def __init__(self, coef: float, target: float | None, horizon: int) -> None:
        self.coef, self.target, self.horizon = coef, target, horizon

    def update(self, kl: float, samples: int) -> None:
        if self.target is None:
            return
        error = max(-0.2, min(0.2, kl / self.target - 1))
        self.coef *= 1 + error * samples / self.horizon
