"""The training jobs' settings, light to import (no torch): the CLI builds its options from them
and a recipe's ``make:`` entry is a ``MakeExpertSettings``. The jobs live beside them
(``make_expert.py``, ``sft.py``, ``sampling.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hoe.errors import HoEError
from hoe.settings import Settings

METHODS = ("raft", "dpo", "ppo", "distill")
REPORT_NAME = "make_expert_report.json"
PPO_LORA_RANK = 16  # ppo's LoRA rank when lora_rank is not set (the CLI's --lora-rank default)


def parse_floor(text: str) -> dict[str, float]:
    """``relevance=0.5[,name=score...]`` as {objective: score}: the one spelling of floors on a command line
    (``hoe make-expert --floor``, the experts benchmark's ``--floor``)."""
    floor = {}
    for part in text.split(","):
        name, _, score = part.partition("=")
        try:
            floor[name.strip()] = float(score)
        except ValueError:
            raise HoEError(
                f"--floor takes objective=score pairs separated by commas, e.g. relevance=0.5, got {text!r}"
            ) from None
    return floor


@dataclass(frozen=True)
class SamplingSettings:
    k: int = 4
    max_new_tokens: int = 64
    temperature: float = 0.9
    top_p: float = 0.95
    batch_prompts: int = 8
    seed: int = 0

    def validate(self) -> None:
        if self.k < 2:
            raise HoEError(f"k must be at least 2 (best and worst of k), got {self.k}")
        if self.max_new_tokens <= 0 or self.batch_prompts <= 0:
            raise HoEError("max_new_tokens and batch_prompts must be positive")
        if not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise HoEError(f"temperature must be positive and top_p in (0, 1], got {self.temperature}, {self.top_p}")


class SFTSettings(Settings):
    """One supervised fine-tune (``hoe finetune``; RAFT's and DPO's training inside make-expert)."""

    steps: int = Field(30, gt=0, description="Optimiser steps.")
    batch_size: int = Field(8, gt=0, description="Pairs per step.")
    max_length: int = Field(128, gt=0, description="Tokens per pair (prompt + response).")
    learning_rate: float = Field(5e-5, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    seed: int = Field(0, description="Seed of the data order.")
    save_every: int = Field(10, gt=0, description="Steps between checkpoints (a rerun resumes from the last).")


# make-expert options added after bundles recorded their experts' settings in their fingerprints
ADDED_AFTER_BUNDLES = {"sft_weight": 0.0, "floor": None, "precision": "auto"}


class MakeExpertSettings(Settings):
    """One ``make-expert`` job: the CLI's options, a recipe's ``make:`` entry and the API's argument."""

    objective: str = Field(
        description="The objective to maximise (an offline scorer, rm:MODEL, or py:module:function)."
    )
    method: str = Field(
        "raft",
        description="raft (best of k, then supervised fine-tuning), dpo (best vs worst, TRL's "
        "DPOTrainer), ppo (hoe's PPO on a LoRA, merged; steps and learning rate apply) or distill "
        "(context distillation: sample with --instruction, fine-tune on the best answer without it).",
    )
    instruction: str | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="distill: the instruction put before every prompt while sampling (e.g. a P-Soups "
        "preference); the expert learns to answer the bare prompt that way. dpo: the best answer sampled with "
        "it is preferred to the worst sampled without it (contrastive distillation).",
    )
    prompts: str = Field(
        "packaged:hh-helpful-sft",
        description="Prompt spec: packaged:NAME or hub:DATASET[:CONFIG]@SPLIT#FIELD (train split).",
    )
    prompt_count: int = Field(96, gt=0, description="Training prompts.")
    keep_prompts: str | None = Field(
        None,
        min_length=1,
        description="raft, distill and dpo: prompts (same spec as --prompts) the objective should leave alone, "
        "e.g. benign requests for a harmlessness expert. The base's own first sampled answer to each, not "
        "selected by the objective, is learnt beside the selected ones (dpo: preferred to the answer the "
        "objective would pick there), so the expert keeps answering them as the base does instead of "
        "carrying the objective's behaviour over.",
    )
    keep_count: int | None = Field(None, gt=0, description="Kept prompts (default: as many as --prompt-count).")
    k: int = Field(4, ge=2, description="Responses sampled per prompt (shared across objectives; best and worst of k).")
    max_new_tokens: int = Field(64, gt=0, description="Length of sampled responses.")
    temperature: float = Field(0.9, gt=0, description="Sampling temperature of the candidates (and of PPO's rollouts).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling of the candidates (and of PPO's rollouts).")
    batch_prompts: int = Field(8, gt=0, description="Prompts per sampling batch.")
    steps: int = Field(24, gt=0, description="Fine-tuning (or PPO) steps.")
    round_steps: list[int] | None = Field(
        None,
        min_length=2,
        max_length=10,
        description="dpo: iterated DPO, one round per entry with that many steps (replaces steps), e.g. "
        "96,48,48. Each round samples new candidates from the previous round's model, which is also its "
        "DPO reference; a killed job resumes at the round it was in.",
    )
    batch_size: int = Field(8, gt=0, description="Examples (or PPO prompts) per step.")
    learning_rate: float | None = Field(
        None,
        gt=0,
        description="AdamW learning rate (default 2e-5 for a full fine-tune, "
        "1e-4 for a LoRA, which ppo always trains).",
    )
    beta: float = Field(0.1, gt=0, description="dpo: KL strength.")
    sft_weight: float = Field(
        0.0,
        ge=0,
        description="dpo: weight of a language-modelling loss on the chosen answers beside DPO's (as RPO, Pang "
        "et al. 2024; TRL's loss_type sigmoid+sft). Why: DPO only widens the gap between chosen and rejected "
        "and may lower both; the NLL term holds the chosen answers (on kept prompts the base's own) likely, "
        "so a strong update drifts less.",
    )
    precision: Literal["auto", "float32", "bf16"] = Field(
        "auto",
        description="dpo: training precision. auto: bf16 autocast on a CUDA device that has it, float32 on any CPU. "
        "bf16: bf16 autocast on a CPU too, refused on one without native "
        "bf16 (AMX), where TRL's bf16 default made each step 11x slower; with AMX it was 1.6x faster "
        "(benchmarks/experts/dpo_step.py --compare precision), at another build's arithmetic.",
    )
    floor: dict[str, float] | None = Field(
        None,
        description="raft, distill and dpo: scores an answer must reach to be chosen, e.g. {relevance: 0.5} "
        "(CLI: --floor relevance=0.5): only the candidates at or above every floor can be a prompt's chosen "
        "answer, and a prompt with none is left out (kept prompts keep the base's own answer). Why: the best "
        "answer by the objective alone may be degenerate (a loop of short words is the most readable answer); "
        "a floor on another objective keeps such answers out of what the expert learns.",
    )
    lora_rank: int | None = Field(
        None,
        gt=0,
        description="Train a LoRA of this rank instead of every weight (ppo always "
        f"trains one, rank {PPO_LORA_RANK} unless set).",
    )
    max_length: int = Field(
        160, gt=0, description="Tokens of prompt + response in fine-tuning (raise it for long prompts such as posts)."
    )
    save_every: int = Field(10, gt=0, description="Steps between checkpoints (a rerun resumes from the last).")
    seed: int = Field(0, description="Seed of sampling and training.")

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in METHODS:
            raise ValueError(f"unknown method '{value}' (available: {', '.join(METHODS)})")
        return value

    @model_validator(mode="after")
    def _instruction_and_kept_prompts_where_used(self) -> "MakeExpertSettings":
        if self.method == "distill" and not (self.instruction or "").strip():
            raise ValueError("method 'distill' needs an instruction (the text put before every prompt while sampling)")
        if self.method not in ("distill", "dpo") and self.instruction is not None:
            raise ValueError(f"an instruction is used by methods 'distill' and 'dpo' only, not '{self.method}'")
        if self.method == "dpo" and self.instruction is not None and not self.instruction.strip():
            raise ValueError("an instruction must not be blank")
        if self.keep_prompts is not None and self.method == "ppo":
            raise ValueError("keep_prompts are learnt by methods 'raft', 'distill' and 'dpo' only, not 'ppo'")
        if self.keep_count is not None and self.keep_prompts is None:
            raise ValueError("keep_count needs keep_prompts")
        if self.round_steps is not None and self.method != "dpo":
            raise ValueError(f"round_steps are rounds of iterated DPO: method 'dpo' only, not '{self.method}'")
        if self.round_steps is not None and any(steps <= 0 for steps in self.round_steps):
            raise ValueError(f"every round needs a positive number of steps, got {self.round_steps}")
        if self.round_steps is not None and self.lora_rank is not None:
            raise ValueError("round_steps train every weight: each round's LoRA would hold only its own round")
        if self.sft_weight and self.method != "dpo":
            raise ValueError(f"sft_weight weighs a loss beside DPO's: method 'dpo' only, not '{self.method}'")
        if self.precision != "auto" and self.method != "dpo":
            raise ValueError(f"precision sets DPO's training precision: method 'dpo' only, not '{self.method}'")
        if self.floor is not None:
            self._check_floor(self.floor)
        if self.keep_prompts is not None and self.keep_prompts == self.prompts:
            raise ValueError("keep_prompts must differ from prompts (a kept prompt would also be optimised)")
        return self

    def _check_floor(self, floor: dict[str, float]) -> None:
        if self.method == "ppo":
            raise ValueError("a floor limits which candidate is chosen: methods 'raft', 'distill' and 'dpo' only")
        if not floor:
            raise ValueError("a floor needs at least one objective=score")
        if self.objective in floor:
            raise ValueError(f"a floor on the objective itself ('{self.objective}') changes no choice: name another")

    @property
    def trains_lora(self) -> bool:
        return self.method == "ppo" or self.lora_rank is not None

    @property
    def effective_learning_rate(self) -> float:
        """The learning rate the job uses: the one set, else 1e-4 for a LoRA and 2e-5 for a full fine-tune."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-4 if self.trains_lora else 2e-5

    @property
    def trained_lora_rank(self) -> int | None:
        """The rank of the LoRA the job trains (None: a full fine-tune)."""
        return self.lora_rank or (PPO_LORA_RANK if self.method == "ppo" else None)

    @property
    def sampling(self) -> SamplingSettings:
        return SamplingSettings(
            k=self.k,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            batch_prompts=self.batch_prompts,
            seed=self.seed,
        )

    @property
    def sft(self) -> SFTSettings:
        return SFTSettings(
            steps=self.steps,
            batch_size=self.batch_size,
            max_length=self.max_length,
            learning_rate=self.effective_learning_rate,
            seed=self.seed,
            save_every=self.save_every,
        )

    def _dump_set_away_from(self, later: dict) -> dict:
        """The settings, less the options of ``later`` (name: default) left at their defaults."""
        return self.model_dump(exclude={k for k, default in later.items() if getattr(self, k) == default})

    def fingerprint_fields(self) -> dict:
        """The settings as a bundle's fingerprint records them: options added after bundles first
        recorded them count only when set, so bundles built before keep their experts."""
        return self._dump_set_away_from(ADDED_AFTER_BUNDLES)

    def cache_fields(self) -> dict:
        """The settings that identify the made model (a recipe's cache key). The learning rate
        counts as used; options added later count only when set away from their defaults, so
        models made before they existed keep their cache entries."""
        later = {
            "lora_rank": None,
            "max_length": 160,
            "temperature": 0.9,
            "top_p": 0.95,
            "batch_prompts": 8,
            "batch_size": 8,
            "save_every": 10,
            "seed": 0,
            "instruction": None,
            "keep_prompts": None,
            "keep_count": None,
            "round_steps": None,
            **ADDED_AFTER_BUNDLES,
        }
        return {**self._dump_set_away_from(later), "learning_rate": self.effective_learning_rate}
