"""PPO on a fresh LoRA of a model, resumable and saved atomically: the one routine behind
``make-expert --method ppo`` (one objective, the adapter merged into a full model) and the MORLHF
baseline (a linear scalarisation per λ, the adapter alone)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from hoe.experts.trainable_lora import save_adapter_and_merge
from hoe.rl.config import TrainConfig
from hoe.rl.policies import LoraPolicy
from hoe.rl.trainer import CHECKPOINT, Trainer
from hoe.utils.io import atomic_dir, write_json

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def train_lora_ppo(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    preference: np.ndarray,
    objectives: list[str],
    scorers: dict[str, str],
    config: TrainConfig,
    prompts: list[str],
    out: Path,
    *,
    merge: bool,
    curve_name: str = "curve.csv",
    report: Callable[[list[dict], float], tuple[str, dict]] | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> list[dict]:
    """Train a LoRA of ``config``'s rank on ``model`` by PPO towards ``preference`` and write it to ``out``.

    Checkpoints go to ``<out>.partial`` and a rerun resumes from them; ``out`` appears whole or not
    at all. With ``merge`` the folder holds the merged full model and tokenizer (the adapter in
    ``adapter/``), else the peft adapter alone. ``report(rows, seconds)`` names and fills a JSON
    file written beside it. Returns the training curve's rows."""
    work = out.with_name(out.name + ".partial")
    policy = LoraPolicy(model, tokenizer, preference, rank=config.lora_rank, alpha=config.lora_alpha, seed=config.seed)
    trainer = Trainer(policy, objectives, scorers, config, prompts, work, device=device, progress=progress)
    start = time.perf_counter()
    rows = trainer.train(resume=(work / CHECKPOINT).is_dir())
    seconds = time.perf_counter() - start  # of this run: a resumed run counts its own part
    with atomic_dir(out, overwrite=True) as tmp:
        if merge:
            save_adapter_and_merge(policy.model, tmp).save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        else:
            policy.model.save_pretrained(tmp)
        shutil.copyfile(work / "curve.csv", tmp / curve_name)
        if report is not None:
            name, record = report(rows, seconds)
            write_json(tmp / name, record)
    shutil.rmtree(work, ignore_errors=True)
    return rows
