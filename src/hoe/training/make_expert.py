"""``hoe make-expert``: a single-objective aligned model of the base, for objectives that have
no off-the-shelf expert. Candidates are sampled once per (base, prompts, sampling settings) and
shared by every objective; scores go through the shared cache. Then, on the whole model (a full
fine-tune, so task-SVD has real work to do afterwards) or, with ``lora_rank``, on a new LoRA of it
(the output is then the merged model plus the peft adapter in ``adapter/``):

- ``raft`` (Dong et al. 2023): supervised fine-tuning on the best of k responses per prompt;
- ``dpo`` (Rafailov et al. 2023): TRL's ``DPOTrainer`` on best-versus-worst pairs;
- ``ppo``: hoe's own PPO (``hoe.rl``) on a LoRA of the base with the objective alone (rank 8
  unless ``lora_rank`` says otherwise), merged into a full model at the end.

All resume after an interruption: RAFT from its own checkpoints, DPO from the trainer's, PPO
from ``hoe.rl``'s.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hoe.data import load_prompts
from hoe.errors import HoEError
from hoe.models.loading import cache_root
from hoe.rewards import ScoreCache, score_objectives
from hoe.rewards.scoring import check_objective_name
from hoe.training.lora import LoraSettings, save_adapter_and_merge
from hoe.training.sampling import SamplingSettings, sample_candidates
from hoe.training.sft import SFTSettings, supervised_finetune
from hoe.utils.io import check_output_dir

METHODS = ("raft", "dpo", "ppo")
REPORT_NAME = "make_expert_report.json"


@dataclass
class MakeExpertSettings:
    objective: str
    method: str = "raft"
    prompts: str = "packaged:hh-helpful-sft"
    prompt_count: int = 96
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    sft: SFTSettings = field(default_factory=lambda: SFTSettings(steps=24, batch_size=8, max_length=160, learning_rate=2e-5))
    beta: float = 0.1  # DPO's KL strength
    lora_rank: int | None = None  # None: a full fine-tune (raft, dpo); ppo always trains a LoRA (rank 8 by default)

    @classmethod
    def from_options(cls, objective: str, *, method: str = "raft", prompts: str = "packaged:hh-helpful-sft", prompt_count: int = 96,
                     k: int = 4, max_new_tokens: int = 64, steps: int = 24, learning_rate: float | None = None,
                     beta: float = 0.1, lora_rank: int | None = None, max_length: int = 160) -> "MakeExpertSettings":
        """Settings from the flat options the CLI and recipes expose (the learning rate defaults
        to 2e-5 for full fine-tunes, 1e-4 for a LoRA, which ppo always trains)."""
        if learning_rate is None:
            learning_rate = 1e-4 if method == "ppo" or lora_rank is not None else 2e-5
        return cls(objective=objective, method=method, prompts=prompts, prompt_count=prompt_count,
                   sampling=SamplingSettings(k=k, max_new_tokens=max_new_tokens),
                   sft=SFTSettings(steps=steps, batch_size=8, max_length=max_length, learning_rate=learning_rate), beta=beta,
                   lora_rank=lora_rank)

    @property
    def lora(self) -> LoraSettings | None:
        """The LoRA to train, alpha twice the rank (None: a full fine-tune)."""
        return None if self.lora_rank is None else LoraSettings(rank=self.lora_rank, alpha=2.0 * self.lora_rank)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise HoEError(f"unknown method '{self.method}' (available: {', '.join(METHODS)})")
        if self.prompt_count <= 0:
            raise HoEError(f"--prompt-count must be positive, got {self.prompt_count}")
        if not self.beta > 0:
            raise HoEError(f"--beta must be positive, got {self.beta}")
        if self.lora is not None:
            self.lora.validate()
        self.sampling.validate()
        self.sft.validate()


def make_expert(base: str, settings: MakeExpertSettings, out: str | Path, *, device: str = "cpu", overwrite: bool = False,
                progress: bool = True) -> dict:
    """Make the expert at ``out`` (a transformers folder with ``make_expert_report.json``)."""
    from hoe.rewards import get_scorer

    settings.validate()
    check_output_dir(out, overwrite)
    check_objective_name(settings.objective)
    get_scorer(settings.objective)  # a scorer that cannot load fails here, before any sampling
    prompts = load_prompts(settings.prompts, "train", limit=settings.prompt_count)
    if settings.method == "ppo":
        return _ppo(base, prompts, settings, Path(out), device=device, overwrite=overwrite, progress=progress)
    candidates = sample_candidates(base, prompts, settings.sampling, device=device, progress=progress)
    k = settings.sampling.k
    flat_prompts = [row["prompt"] for row in candidates for _ in row["responses"]]
    flat_responses = [r for row in candidates for r in row["responses"]]
    scores = score_objectives([settings.objective], flat_prompts, flat_responses, cache=ScoreCache(cache_root() / "scores.sqlite"))[settings.objective]
    groups = [(row, scores[i * k : (i + 1) * k]) for i, row in enumerate(candidates)]
    if settings.method == "dpo":
        return _dpo(base, groups, settings, Path(out), device=device, overwrite=overwrite, progress=progress,
                    report={"base": base, "settings": asdict(settings), "prompts": len(prompts),
                            "candidate_mean": round(sum(scores) / len(scores), 6)})
    pairs, chosen_scores = [], []
    for row, group in groups:
        best = max(range(k), key=lambda i: group[i])
        if row["responses"][best].strip():
            pairs.append((row["prompt"], row["responses"][best]))
            chosen_scores.append(group[best])
    if not pairs:
        raise HoEError("every chosen response is empty: nothing to learn from")
    report = {
        "base": base, "settings": asdict(settings), "prompts": len(prompts), "pairs": len(pairs),
        "candidate_mean": round(sum(scores) / len(scores), 6), "chosen_mean": round(sum(chosen_scores) / len(chosen_scores), 6),
    }
    log = supervised_finetune(base, pairs, out, settings.sft, device=device, overwrite=overwrite, progress=progress,
                              extra_json={REPORT_NAME: report}, lora=settings.lora)
    return {**report, "final_loss": log["losses"][-1], "train_seconds": round(log["seconds"], 1)}


def _ppo(base: str, prompts: list[str], settings: MakeExpertSettings, out: Path, *, device: str, overwrite: bool, progress: bool) -> dict:
    """PPO on a LoRA of the base for the one objective; checkpoints in ``<out>.partial``."""
    import shutil

    import numpy as np

    from hoe.models.loading import load_model, load_tokenizer
    from hoe.rl.config import TrainConfig
    from hoe.rl.policies import LoraPolicy
    from hoe.rl.trainer import CHECKPOINT, Trainer
    from hoe.utils.io import atomic_dir, write_json

    sft, sampling = settings.sft, settings.sampling
    lora = {"lora_rank": settings.lora.rank, "lora_alpha": settings.lora.alpha} if settings.lora else {}  # else TrainConfig's
    config = TrainConfig(trainable="lora", scalarisation="single", objective=settings.objective, prompt_count=len(prompts),
                         steps=sft.steps, batch_size=sft.batch_size, max_new_tokens=sampling.max_new_tokens, learning_rate=sft.learning_rate,
                         temperature=sampling.temperature, top_p=sampling.top_p, seed=sft.seed, checkpoint_every=sft.save_every,
                         calibration_prompts=min(16, len(prompts)), **lora)
    work = out.with_name(out.name + ".partial")
    tokenizer = load_tokenizer(base)
    policy = LoraPolicy(load_model(base, device=device), tokenizer, np.array([1.0]), rank=config.lora_rank, alpha=config.lora_alpha,
                        seed=config.seed)
    trainer = Trainer(policy, [settings.objective], {}, config, prompts, work, device=device, progress=progress)
    start = time.perf_counter()
    rows = trainer.train(resume=(work / CHECKPOINT).is_dir())
    report = {"base": base, "settings": asdict(settings), "prompts": len(prompts), "method": "ppo", "config": config.model_dump(),
              "first_reward": rows[0][f"raw_{settings.objective}"], "last_reward": rows[-1][f"raw_{settings.objective}"],
              "candidate_mean": rows[0][f"raw_{settings.objective}"], "chosen_mean": rows[-1][f"raw_{settings.objective}"],
              "steps": len(rows), "train_seconds": round(time.perf_counter() - start, 1)}  # seconds of this run (a resume counts its part)
    with atomic_dir(out, overwrite=True) as tmp:
        save_adapter_and_merge(policy.model, tmp).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        shutil.copyfile(work / "curve.csv", tmp / "ppo_curve.csv")
        write_json(tmp / REPORT_NAME, report)
    shutil.rmtree(work, ignore_errors=True)
    return report


def preference_pairs(groups) -> list[dict]:
    """Best-versus-worst pairs in TRL's conversational format (ties and empty answers skipped)."""
    rows = []
    for row, group in groups:
        order = sorted(range(len(group)), key=lambda i: group[i])
        worst, best = order[0], order[-1]
        chosen, rejected = row["responses"][best], row["responses"][worst]
        if group[best] > group[worst] and chosen.strip() and chosen != rejected:
            rows.append({"prompt": [{"role": "user", "content": row["prompt"]}],
                         "chosen": [{"role": "assistant", "content": chosen}],
                         "rejected": [{"role": "assistant", "content": rejected}],
                         "margin": group[best] - group[worst], "chosen_score": group[best]})
    return rows


def _dpo(base: str, groups, settings: MakeExpertSettings, out: Path, *, device: str, overwrite: bool, progress: bool, report: dict) -> dict:
    """DPO through TRL, checkpointing to ``<out>.partial`` and resuming from the last checkpoint."""
    import shutil

    try:
        from datasets import Dataset
        from transformers.trainer_utils import get_last_checkpoint
        from trl import DPOConfig, DPOTrainer
    except ImportError as exc:
        raise HoEError(f"--method dpo needs TRL and datasets ({exc.name} is missing): pip install 'hoe[training]'") from None
    from hoe.models.loading import load_model, load_tokenizer
    from hoe.utils.io import atomic_dir, write_json

    rows = preference_pairs(groups)
    if not rows:
        raise HoEError("no prompt has a better and a worse response: nothing to learn from")
    partial = out.with_name(out.name + ".partial")
    sft = settings.sft
    config = DPOConfig(output_dir=str(partial), per_device_train_batch_size=sft.batch_size, max_steps=sft.steps,
                       learning_rate=sft.learning_rate, beta=settings.beta, max_length=sft.max_length, logging_steps=1,
                       save_strategy="steps", save_steps=sft.save_every, report_to=[], use_cpu=device == "cpu",
                       seed=sft.seed, data_seed=sft.seed, disable_tqdm=not progress)
    tokenizer = load_tokenizer(base)
    model = load_model(base, device=device)
    trainer = DPOTrainer(model=model, args=config, processing_class=tokenizer,
                         train_dataset=Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows]),
                         peft_config=settings.lora.peft_config(model) if settings.lora else None)
    start = time.perf_counter()
    resume = get_last_checkpoint(str(partial)) if partial.is_dir() else None
    trainer.train(resume_from_checkpoint=resume)
    report = {**report, "pairs": len(rows), "chosen_mean": round(sum(r["chosen_score"] for r in rows) / len(rows), 6),
              "mean_margin": round(sum(r["margin"] for r in rows) / len(rows), 6), "resumed_from": resume}
    history = [h for h in trainer.state.log_history if "loss" in h]
    with atomic_dir(out, overwrite=overwrite) as tmp:
        trained = trainer.model if settings.lora is None else save_adapter_and_merge(trainer.model, tmp)
        trained.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / REPORT_NAME, report)
        write_json(tmp / "dpo_log.json", {"history": history})
    shutil.rmtree(partial, ignore_errors=True)
    return {**report, "final_loss": history[-1]["loss"] if history else None, "train_seconds": round(time.perf_counter() - start, 1)}
