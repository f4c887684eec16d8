"""The PPO training loop: rollouts, rewards, scalarisation, updates, checkpoints and logs.

Resumable bit for bit: every ``checkpoint_every`` steps the trainable tensors, value head,
optimiser, scalarisation state (w, z*), KL coefficient, normalisation statistics and the random
generator state are written atomically to ``WORK/checkpoint``; a resumed run reloads them and
replays the remaining steps exactly. Several processes (``accelerate launch``) each roll out
their share of prompts; gradients and reward means are averaged across them.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Callable, ContextManager, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from hoe.checkpoints.chat import encode_prompts
from hoe.errors import HoEError
from hoe.rewards.scoring import ScoreCache, score_objectives
from hoe.rl.config import TrainConfig
from hoe.rl.policies import Policy
from hoe.rl.ppo import (
    AdaptiveKL,
    Rollout,
    ValueHead,
    combine,
    gae,
    ppo_loss,
    response_mask,
    token_logprobs,
    token_rewards,
    whiten,
)
from hoe.rl.scalarisation import Scalarisation
from hoe.utils.io import atomic_dir, write_json, write_text

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint"
CURVE = "curve.csv"


# How the calibration prompts are chosen, recorded with a trained router: a router calibrated otherwise
# (before this rule: on the head of the prompt list) is trained again by the demo, not reused.
CALIBRATION = "first prompts of the training order"


class Distributed:
    """The few collective operations the trainer needs; a single process when not launched."""

    def __init__(self, cpu: bool) -> None:
        from accelerate import PartialState

        self.state = PartialState(cpu=cpu)
        self.rank, self.size = self.state.process_index, self.state.num_processes
        self.is_main = self.state.is_main_process

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean over processes, on the tensor's own device (reduced on the process's device:
        NCCL takes GPU tensors only, gloo CPU ones)."""
        if self.size == 1:
            return tensor
        reduced = tensor.detach().clone().to(self.state.device)
        torch.distributed.all_reduce(reduced)
        return (reduced / self.size).to(tensor.device)

    def barrier(self) -> None:
        self.state.wait_for_everyone()


class Trainer:
    """PPO on ``policy`` (a RouterPolicy or LoraPolicy) for the objectives' scorers."""

    def __init__(
        self,
        policy: Policy,
        objectives: list[str],
        scorers: dict[str, str],
        config: TrainConfig,
        prompts: list[str],
        work: Path,
        *,
        device: str = "cpu",
        progress: bool = True,
    ) -> None:
        self.policy, self.objectives, self.config, self.prompts = policy, objectives, config, prompts
        self.scorers = [scorers.get(o, o) for o in objectives]
        self.work, self.device, self.progress = Path(work), device, progress
        self.dist = Distributed(cpu=device == "cpu")
        self.tokenizer = policy.tokenizer
        self.tokenizer.padding_side = "left"
        hidden = (
            policy.model.config.get_text_config().hidden_size
            if hasattr(policy.model.config, "get_text_config")
            else policy.model.config.hidden_size
        )
        torch.manual_seed(config.seed)
        self.value_head = ValueHead(hidden, len(objectives)).to(device)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": policy.parameters(), "lr": config.learning_rate},
                {"params": list(self.value_head.parameters()), "lr": config.value_learning_rate},
            ],
            weight_decay=0.0,
        )
        self.kl = AdaptiveKL(config.kl_coef, config.kl_target, config.kl_horizon)
        self.scalarisation: Scalarisation | None = None
        self.norm: dict[str, tuple[float, float]] = {}
        self.step = 0
        self.cache = ScoreCache(self.work / f"scores-{self.dist.rank}.sqlite")

    # ---- rollout and rewards ------------------------------------------------------------------
    def shuffled_order(self, epoch: int) -> torch.Tensor:
        """The prompts' order in one pass over them (seeded, a new order each pass)."""
        generator = torch.Generator().manual_seed(self.config.seed + 7919 * epoch)
        return torch.randperm(len(self.prompts), generator=generator)

    def prompts_for(self, step: int) -> list[str]:
        """This process's prompts at ``step``: a fixed shuffled order, cycled, split by process."""
        per_step = self.config.batch_size * self.dist.size
        order = self.shuffled_order(step * per_step // len(self.prompts))
        start = (step * per_step) % len(self.prompts)
        indices = [order[(start + i) % len(self.prompts)].item() for i in range(per_step)]
        mine = indices[self.dist.rank * self.config.batch_size : (self.dist.rank + 1) * self.config.batch_size]
        return [self.prompts[i] for i in mine]

    @torch.no_grad()
    def sample(
        self, prompts: list[str], routed: Callable[[], ContextManager[None]] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, int, list[str]]:
        """Sample one response per prompt under ``routed`` (default: the policy)."""
        inputs = {k: v.to(self.device) for k, v in encode_prompts(self.tokenizer, prompts).items()}
        c = self.config
        with (routed or self.policy.routed)():
            out = self.policy.model.generate(
                **inputs,
                do_sample=True,
                temperature=c.temperature,
                top_p=c.top_p,
                top_k=0,
                max_new_tokens=c.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        length = out.shape[1] - inputs["input_ids"].shape[1]
        response = out[:, -length:]
        mask = response_mask(response, self.tokenizer.eos_token_id)
        attention = torch.cat([inputs["attention_mask"].float(), mask], dim=1)
        texts = [self.tokenizer.decode(row[: int(m.sum())], skip_special_tokens=True) for row, m in zip(response, mask)]
        return out, attention, length, texts

    def raw_scores(self, prompts: list[str], texts: list[str]) -> torch.Tensor:
        scored = score_objectives(self.scorers, prompts, texts, cache=self.cache)
        return torch.tensor([scored[s] for s in self.scorers], dtype=torch.float32).T  # (B, N)

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor([self.norm[o][0] for o in self.objectives])
        std = torch.tensor([self.norm[o][1] for o in self.objectives])
        return (raw - mean) / std

    @torch.no_grad()
    def rollout(self, prompts: list[str], timings: dict | None = None) -> Rollout:
        start = time.perf_counter()
        sequences, attention, length, texts = self.sample(prompts)
        middle = time.perf_counter()
        with self.policy.routed():
            logprobs, _, hidden = token_logprobs(self.policy.model, sequences, attention, length)
        with self.policy.routed(reference=True):
            ref_logprobs, _, _ = token_logprobs(self.policy.model, sequences, attention, length)
        values = self.value_head(hidden)
        if timings is not None:
            timings["generation_s"], timings["logprob_s"] = middle - start, time.perf_counter() - middle
        return Rollout(sequences, attention, attention[:, -length:], logprobs, ref_logprobs, values, texts)

    # ---- calibration: normalisation statistics and the ideal point -------------------------------
    def calibrate(self, expert_routings: dict | None = None) -> None:
        """Fit per-objective normalisation on samples of the reference (and of each single-objective
        expert, where given: objective index -> routing context) and set z*: each expert's mean
        normalised reward on its own objective plus a margin.

        The calibration prompts are the first of the training order, not of the list: a prompt spec
        joined by '+' lists its parts one after the other, and the list's head would fit z* on one
        part only (on benign prompts alone the harmless expert's harmlessness is low, z* falls below
        what red-team batches reach, and OMD then weighs helpfulness alone)."""
        c = self.config
        prompts = [self.prompts[i] for i in self.shuffled_order(0)[: c.calibration_prompts].tolist()]
        samples = {
            "reference": self.raw_scores(prompts, self.sample(prompts, lambda: self.policy.routed(reference=True))[3])
        }
        for index, routed in (expert_routings or {}).items():
            samples[index] = self.raw_scores(prompts, self.sample(prompts, routed)[3])
        self.norm, measured = calibration_statistics(
            samples, self.objectives, c.ideal_margin, self.dist.mean, c.reward_scale
        )
        ideal = np.asarray(c.ideal, dtype=np.float64) if c.ideal is not None else measured
        self.scalarisation = self._scalarisation(ideal)

    def _scalarisation(self, ideal: np.ndarray) -> Scalarisation:
        c = self.config
        objective = self.objectives.index(c.objective) if c.scalarisation == "single" else None
        return Scalarisation(
            c.scalarisation,
            self.policy.preference,
            ideal=ideal,
            step=c.omd_step,
            smoothing=c.omd_smoothing,
            objective=objective,
        )

    # ---- one PPO step --------------------------------------------------------------------------------
    def train_step(self) -> dict:
        c = self.config
        timings: dict[str, float] = {}
        prompts = self.prompts_for(self.step)
        rollout = self.rollout(prompts, timings)
        start = time.perf_counter()
        raw = self.raw_scores(prompts, rollout.texts)
        scores = self.normalise(raw)
        timings["scoring_s"] = time.perf_counter() - start
        start = time.perf_counter()
        mask = rollout.mask
        kl = rollout.logprobs - rollout.ref_logprobs
        rewards = token_rewards(scores.to(kl.device), kl, mask, self.kl.coef)
        advantages, returns = gae(rewards, rollout.values, mask, c.gamma, c.lam)
        coefficients = torch.tensor(self.scalarisation.coefficients(), dtype=torch.float32, device=kl.device)
        combined = whiten(combine(advantages, coefficients), mask)
        stats = self._update(rollout, combined, returns)
        timings["update_s"] = time.perf_counter() - start
        mean_scores = self.dist.mean(scores.mean(0)).numpy().astype(np.float64)
        mean_raw = self.dist.mean(raw.mean(0)).numpy()
        mean_kl = float(self.dist.mean(((kl * mask).sum(1)).mean()))
        row = {
            "step": self.step + 1,
            "tchebycheff": self.scalarisation.objective_value(mean_scores),
            "kl": mean_kl,
            "kl_coef": self.kl.coef,
            **stats,
            **timings,
            **{f"reward_{o}": float(v) for o, v in zip(self.objectives, mean_scores)},
            **{f"raw_{o}": float(v) for o, v in zip(self.objectives, mean_raw)},
            **{f"w_{o}": float(v) for o, v in zip(self.objectives, self.scalarisation.w)},
            **{f"ideal_{o}": float(v) for o, v in zip(self.objectives, self.scalarisation.ideal)},
            "tokens": int(self.dist.mean(mask.sum()) * self.dist.size),
            "sequence_length": int(rollout.sequences.shape[1]),
        }
        self.scalarisation.update(mean_scores)
        self.kl.update(mean_kl, len(prompts) * self.dist.size)
        self.step += 1
        return row

    def _update(self, rollout: Rollout, advantages: torch.Tensor, returns: torch.Tensor) -> dict:
        c = self.config
        rows = rollout.sequences.shape[0]
        length = rollout.mask.shape[1]
        generator = torch.Generator().manual_seed(c.seed * 1_000_003 + self.step)
        totals: dict[str, float] = {}
        updates = 0
        params = self.policy.parameters() + list(self.value_head.parameters())
        for _ in range(c.ppo_epochs):
            order = torch.randperm(rows, generator=generator)
            for chunk in order.chunk(min(c.minibatches, rows)):
                with self.policy.routed():
                    logprobs, entropy, hidden = token_logprobs(
                        self.policy.model, rollout.sequences[chunk], rollout.attention[chunk], length
                    )
                values = self.value_head(hidden.detach())
                loss, stats = ppo_loss(
                    logprobs,
                    rollout.logprobs[chunk],
                    advantages[chunk],
                    values,
                    rollout.values[chunk],
                    returns[chunk],
                    entropy,
                    rollout.mask[chunk],
                    clip_range=c.clip_range,
                    value_clip=c.value_clip,
                    value_coef=c.value_coef,
                    entropy_coef=c.entropy_coef,
                )
                self.optimizer.zero_grad(set_to_none=False)
                loss.backward()
                for p in params:
                    if p.grad is not None:
                        p.grad.copy_(self.dist.mean(p.grad))
                # clipped apart: the value head's early, large gradients must not shrink the policy's
                stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm))
                stats["value_grad_norm"] = float(
                    torch.nn.utils.clip_grad_norm_(list(self.value_head.parameters()), c.max_grad_norm)
                )
                self.optimizer.step()
                self.policy.after_update()
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + value
                updates += 1
        return {k: v / max(1, updates) for k, v in totals.items()}

    # ---- the loop, checkpoints, logs ----------------------------------------------------------------
    def train(
        self,
        *,
        resume: bool = False,
        expert_routings: dict[int, Callable[[], ContextManager[None]]] | None = None,
        on_step: Callable[[dict], None] | None = None,
        max_seconds: float | None = None,
    ) -> list[dict]:
        """Run to ``config.steps``, or stop (checkpointed, resumable) after the first step that ends
        past ``max_seconds`` of wall time; ``self.stopped_early`` says which."""
        curve_path = self.work / CURVE
        started = time.perf_counter()
        self.stopped_early = False
        rows: list[dict] = []
        if resume and (self.work / CHECKPOINT).is_dir():
            rows = self.load_checkpoint()
        else:
            if self.dist.is_main:
                shutil.rmtree(self.work / CHECKPOINT, ignore_errors=True)
            self.calibrate(expert_routings)
        trackers = self._trackers()
        bar = tqdm(
            total=self.config.steps,
            initial=self.step,
            desc="ppo",
            unit="step",
            disable=not (self.progress and self.dist.is_main),
        )
        while self.step < self.config.steps:
            row = self.train_step()
            rows.append(row)
            bar.update(1)
            bar.set_postfix(tchebycheff=f"{row['tchebycheff']:.3f}", kl=f"{row['kl']:.3f}")
            if self.dist.is_main:
                _write_curve(curve_path, rows)
                if trackers is not None:
                    trackers.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=row["step"])
            out_of_time = max_seconds is not None and self._anyone(time.perf_counter() - started > max_seconds)
            if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps or out_of_time:
                self.save_checkpoint(rows)
            if on_step is not None:
                on_step(self)
            if out_of_time and self.step < self.config.steps:
                self.stopped_early = True
                log.warning(
                    "stopped after step %d of %d: out of the %.0f s time budget (--resume continues)",
                    self.step,
                    self.config.steps,
                    max_seconds,
                )
                break
        bar.close()
        if trackers is not None:
            trackers.finish()
        return rows

    def _anyone(self, flag: bool) -> bool:
        """True on every process when it is true on any (all stop at the same step)."""
        return bool(self.dist.mean(torch.tensor([float(flag)])) > 0)

    def _trackers(self):
        """TensorBoard through accelerate's trackers, when tensorboard is installed (main process)."""
        if not self.dist.is_main:
            return None
        try:
            import tensorboard  # noqa: F401
            from accelerate.tracking import TensorBoardTracker
        except ImportError:
            return None
        tracker = TensorBoardTracker("ppo", str(self.work / "tensorboard"))
        tracker.start()
        tracker.store_init_configuration(
            {k: v for k, v in self.config.model_dump().items() if isinstance(v, (int, float, str, bool))}
        )
        return tracker

    def save_checkpoint(self, rows: list[dict]) -> None:
        from safetensors.torch import save_file

        if self.dist.is_main:
            with atomic_dir(self.work / CHECKPOINT, overwrite=True) as tmp:
                save_file(self.policy.trainable_state(), str(tmp / "trainable.safetensors"))
                save_file(
                    {k: v.contiguous() for k, v in self.value_head.state_dict().items()},
                    str(tmp / "value_head.safetensors"),
                )
                torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
                write_json(
                    tmp / "state.json",
                    {
                        "step": self.step,
                        "kl_coef": self.kl.coef,
                        "norm": self.norm,
                        "scalarisation": self.scalarisation.state(),
                        "rows": rows,
                        "config": self.config.model_dump(),
                        "calibration": CALIBRATION,
                    },
                )
        self.dist.barrier()
        torch.save(_rng_state(), self.work / CHECKPOINT / f"rng-{self.dist.rank}.pt")
        self.dist.barrier()

    def load_checkpoint(self) -> list[dict]:
        from safetensors.torch import load_file

        folder = self.work / CHECKPOINT
        state = check_checkpoint(folder, self.config)
        self.policy.load_trainable_state(load_file(str(folder / "trainable.safetensors")))
        self.value_head.load_state_dict(load_file(str(folder / "value_head.safetensors")))
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        self.step, self.kl.coef = state["step"], state["kl_coef"]
        self.norm = {k: tuple(v) for k, v in state["norm"].items()}
        self.scalarisation = self._scalarisation(np.asarray(state["scalarisation"]["ideal"]))
        self.scalarisation.load_state(state["scalarisation"])
        _set_rng_state(torch.load(folder / f"rng-{self.dist.rank}.pt", weights_only=True))
        return state["rows"]


def check_checkpoint(folder: Path, config: TrainConfig) -> dict:
    """The checkpoint's state, if a run with ``config`` may resume from it: the same config and the
    current calibration rule (an older rule's z* would otherwise carry on). Cheap: no weights load."""
    state = json.loads((folder / "state.json").read_text())
    current = config.model_dump()
    if state["config"] != current:
        changed = next(k for k in {**state["config"], **current} if state["config"].get(k) != current.get(k))
        raise HoEError(f"cannot resume: the checkpoint in '{folder}' was made with another config ({changed} differs)")
    if state.get("calibration") != CALIBRATION:
        raise HoEError(
            f"cannot resume: the checkpoint in '{folder}' was calibrated by an older rule than "
            f"'{CALIBRATION}'; train again without --resume"
        )
    return state


def calibration_statistics(
    samples: dict,
    objectives: list[str],
    margin: float,
    mean: Callable[[torch.Tensor], torch.Tensor] = lambda tensor: tensor,
    scale: Literal["range", "sd"] = "range",
) -> tuple[dict[str, tuple[float, float]], np.ndarray]:
    """Normalisation (centre, unit per objective) and ideal point from calibration samples (raw scores,
    rows × objectives).

    ``samples`` holds "reference" and, per objective index i that has one, the samples of objective i's
    own expert. The unit decides where Tchebycheff puts a preference on the front, since only gaps
    divided by it are compared across objectives:
    - "range": the distance between the lowest and the highest mean any sampled model reaches on the
      objective, from the lowest: what the evaluation's Tchebycheff gap and hypervolume scale by, so λ
      weighs each objective's share of the trade-off the experts span. Experts that do not separate an
      objective (a span under a tenth of its standard deviation) leave it the "sd" unit.
    - "sd": the pooled mean and standard deviation of every sample, which weighs objectives by their
      per-answer noise instead (a noisy objective's gap looks small; measured in benchmarks/results).
    A constant objective keeps unit 1. z*_i is the mean normalised reward of objective i's expert on i
    (the reference's where there is none) *plus* ``margin``, so the ideal lies beyond what any expert
    reaches. ``mean`` averages over processes."""
    pooled = torch.cat(list(samples.values()))
    centre = mean(pooled.mean(0))
    unit = mean(((pooled - centre) ** 2).mean(0)).sqrt()
    if scale == "range":
        by_model = torch.stack([mean(rows.mean(0)) for rows in samples.values()])  # models × objectives
        low, span = by_model.min(0).values, by_model.max(0).values - by_model.min(0).values
        separated = span > 0.1 * unit
        centre, unit = torch.where(separated, low, centre), torch.where(separated, span, unit)
    norm = {o: (float(m), float(s) if s > 1e-6 else 1.0) for o, m, s in zip(objectives, centre, unit)}
    units = torch.tensor([norm[o][1] for o in objectives])
    best = [
        ((samples.get(i, samples["reference"])[:, i] - centre[i]) / units[i]).mean() for i in range(len(objectives))
    ]
    return norm, mean(torch.stack(best)).numpy().astype(np.float64) + margin


def _rng_state() -> dict[str, torch.Tensor]:
    """The generators sampling draws from: the CPU's and, on a GPU, the current device's."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, torch.Tensor] | torch.Tensor) -> None:
    if isinstance(state, torch.Tensor):  # checkpoints before the CUDA state was kept
        state = {"cpu": state}
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _write_curve(path: Path, rows: list[dict]) -> None:
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else v) for k, v in row.items()})
    write_text(path, buffer.getvalue())
