"""PPO training configuration (YAML, unknown keys refused). The paper leaves learning rate,
steps, KL coefficient, batch size, the OMD step size and the ideal point open; every one of them
is a field here and is recorded with the trained router."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hoe.errors import HoEError


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a NaN rate trains nothing, silently

    trainable: Literal["router", "lora"] = "router"
    scalarisation: Literal["tchebycheff-omd", "linear", "single"] = "tchebycheff-omd"
    objective: str | None = None  # the one objective of `single`
    scorers: dict[str, str] = {}  # objective -> scorer spec, where the objective is not a scorer name

    # data and rollouts
    prompts: str = "packaged:hh-helpful-sft+packaged:hh-harmless"
    prompt_count: int = Field(default=256, gt=0)
    max_prompt_tokens: int = Field(default=128, gt=0)
    batch_size: int = Field(default=8, gt=0)  # prompts per rollout, per process
    max_new_tokens: int = Field(default=32, gt=0)
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)

    # optimisation
    steps: int = Field(default=40, gt=0)
    ppo_epochs: int = Field(default=2, gt=0)
    minibatches: int = Field(default=2, gt=0)
    learning_rate: float = Field(default=1e-3, gt=0)
    value_learning_rate: float = Field(default=1e-3, gt=0)
    clip_range: float = Field(default=0.2, gt=0)
    value_clip: float = Field(default=0.2, gt=0)
    value_coef: float = Field(default=0.5, ge=0)
    entropy_coef: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    gamma: float = Field(default=1.0, gt=0, le=1)
    lam: float = Field(default=0.95, ge=0, le=1)

    # KL penalty to the reference policy (the static mix at the anchor)
    kl_coef: float = Field(default=0.05, ge=0)
    kl_target: float | None = Field(default=None, gt=0)  # set: adaptive coefficient (Ziegler et al.)
    kl_horizon: int = Field(default=200, gt=0)

    # Tchebycheff with online mirror descent
    omd_step: float = Field(default=1.0, gt=0)
    omd_smoothing: float = Field(default=0.5, ge=0, lt=1)  # w ← s·w_prev + (1 − s)·w_new
    ideal: list[float] | None = None  # z*, in normalised reward units; default: experts' mean + margin
    ideal_margin: float = Field(default=0.25, ge=0)
    # the unit each objective's reward is measured in: "range" (the distance between the worst and the best
    # calibration model on it, as the evaluation's Tchebycheff gap scales it) or "sd" (its pooled standard deviation)
    reward_scale: Literal["range", "sd"] = "range"
    calibration_prompts: int = Field(default=16, gt=0)  # prompts that fit the normalisation and z*

    # LoRA policy (trainable: lora)
    lora_rank: int = Field(default=8, gt=0)
    lora_alpha: float = Field(default=16.0, gt=0)

    checkpoint_every: int = Field(default=5, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _single_needs_objective(self):
        if self.scalarisation == "single" and not self.objective:
            raise ValueError("scalarisation 'single' needs 'objective'")
        return self


def check_objectives(config: TrainConfig, objectives: list[str]) -> None:
    """Refuse settings that do not fit the objectives being trained, before anything loads."""
    if config.scalarisation == "single" and config.objective not in objectives:
        raise HoEError(f"training config: objective '{config.objective}' is not one of {', '.join(objectives)}")
    if config.ideal is not None and len(config.ideal) != len(objectives):
        raise HoEError(f"training config: ideal has {len(config.ideal)} values for {len(objectives)} objectives")


def load_config(path: str | Path | None, **overrides) -> TrainConfig:
    """A config from YAML (or defaults) with keyword overrides; one line on any problem."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise HoEError(f"training config not found: '{path}'")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise HoEError(f"'{path}' is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(values, dict):
            raise HoEError(f"'{path}' must hold a mapping of settings")
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "config"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        raise HoEError(f"training config: {where}: {message}") from None
