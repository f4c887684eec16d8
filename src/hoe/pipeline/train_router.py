"""``hoe train-router``: train the router expert at one anchor of a bundle with PPO and write it
back into the bundle (router weights, training configuration and curve), atomically.

Every check runs before a model loads: the anchor's length, that no LoRA expert sits on it,
that the bundle's experts can reach it, the scorers, and the config's keys.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch

from hoe.checkpoints.chat import fit_prompts
from hoe.checkpoints.loading import resolve_checkpoint
from hoe.checkpoints.tensors import CheckpointTensors
from hoe.data import load_prompts
from hoe.errors import HoEError
from hoe.evaluation.methods import single_experts
from hoe.model import HoEModel
from hoe.model.bundle import Bundle, RouterEntry, load_bundle
from hoe.model.router_weights import router_inputs
from hoe.rewards.scoring import check_objective_name
from hoe.rl.config import TrainConfig, check_objectives
from hoe.rl.policies import RouterPolicy
from hoe.rl.trainer import CALIBRATION, CHECKPOINT, Trainer, check_checkpoint
from hoe.routing import parse_preference
from hoe.settings import flag_name


class RouterTrainingSummary(TypedDict):
    """What ``train_router`` returns: the run's first and last curve rows, where it stopped."""

    router: str
    anchor: list[float]
    steps: int
    steps_asked: int
    stopped_early: bool  # a time budget ended it; resume=True continues
    prompts_cut: int  # training prompts cut from the left to fit max_prompt_tokens
    work: str
    trainable_parameters: int
    first: dict | None
    last: dict | None
    main_process: bool


def router_training_summary(summary: RouterTrainingSummary) -> str:
    """The one line ``hoe train-router`` prints."""
    first, last = summary["first"], summary["last"]
    stopped = f" (of {summary['steps_asked']}: out of time, --resume continues)" if summary["stopped_early"] else ""
    return (
        f"router '{summary['router']}' at {summary['anchor']}: {summary['steps']} steps{stopped}, "
        f"{summary['trainable_parameters']:,} trainable parameters; Tchebycheff {first['tchebycheff']:.3f} → "
        f"{last['tchebycheff']:.3f}; curve {summary['work']}/curve.csv"
    )


def plan_router(
    bundle: Bundle, anchor: np.ndarray, overwrite: bool, resume: bool
) -> tuple[int, RouterEntry | None, list | None]:
    """(router index, new RouterEntry or None, static weights) for training at ``anchor``."""
    bundle.check_free_anchor(anchor)
    index = bundle.router_index_at(anchor)
    if index is not None:
        router = bundle.routers[index]
        if router.trained and not (overwrite or resume):
            raise HoEError(
                f"router '{router.name}' at {anchor.tolist()} is trained already (pass --overwrite to train it again)"
            )
        return index, None, (router.training or {}).get("initial_weights")
    entry = bundle.plan_router(anchor)
    return len(bundle.routers), entry, entry.training["initial_weights"]


def train_router(
    bundle_path: str | Path,
    anchor,
    config: TrainConfig,
    *,
    work: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "cpu",
    progress: bool = True,
    max_minutes: float | None = None,
    trust_bundle_code: bool = False,
) -> RouterTrainingSummary:
    """Train (or continue training) the router at ``anchor`` and write it into the bundle. With
    ``max_minutes``, training stops after the step that crosses that budget; the router trained so
    far is written (its record says how many steps) and ``resume=True`` continues the run. A ``py:``
    scorer named by the bundle itself runs only with ``trust_bundle_code``."""
    bundle_path = Path(bundle_path)
    bundle = load_bundle(bundle_path)
    config = _checked_config(bundle, config, max_minutes)
    bundle.check_code_trusted({o: config.scorers.get(o, o) for o in bundle.objectives}, trust_bundle_code)
    vector = parse_preference(anchor, bundle.objectives)
    index, new_entry, _ = plan_router(bundle, vector, overwrite, resume)
    experts = None
    if config.scalarisation == "tchebycheff-omd" and config.ideal is None:
        experts = single_experts(bundle, "lora")  # z* comes from them; one line if any is missing
    prompts = load_prompts(config.prompts, "train", limit=config.prompt_count)
    name = new_entry.name if new_entry is not None else bundle.routers[index].name
    work = Path(work) if work is not None else bundle_path / "training" / name
    _prepare_work(work, resume)
    if resume and (work / CHECKPOINT).is_dir():
        check_checkpoint(work / CHECKPOINT, config)  # one line before any weights load

    # ---- everything checked: load and train -------------------------------------------------------
    staged = Bundle(
        work, bundle.spec.model_copy(deep=True)
    )  # the bundle as training sees it: the new router's weights in work/
    if new_entry is not None:
        base = CheckpointTensors(resolve_checkpoint(staged.spec.base_model))
        staged.write_untrained_router(new_entry, router_inputs(base, staged.spec.target_modules))
        new_entry.path = str((work / new_entry.path).resolve())
        staged.spec.routers.append(new_entry)
    hoe = HoEModel.from_loaded_bundle(Bundle(bundle_path, staged.spec), device=device)
    prompts, cut = fit_prompts(
        hoe.tokenizer, prompts, None, config.max_new_tokens, max_prompt_tokens=config.max_prompt_tokens
    )
    policy = RouterPolicy(hoe, index)
    if new_entry is None and not resume:  # (re)train from the static mix the router starts as
        policy.reset_to_static_mix()
    routings = None
    if experts is not None:
        routings = {i: (lambda e=e: hoe.preference(e.anchor)) for i, e in enumerate(experts)}
    trainer = Trainer(
        policy, bundle.objectives, config.scorers, config, prompts, work, device=device, progress=progress
    )
    rows = trainer.train(
        resume=resume, expert_routings=routings, max_seconds=None if max_minutes is None else 60 * max_minutes
    )
    summary = RouterTrainingSummary(
        router=name,
        anchor=vector.tolist(),
        steps=len(rows),
        steps_asked=config.steps,
        stopped_early=trainer.stopped_early,
        prompts_cut=cut,
        work=str(work),
        trainable_parameters=policy.trainable_count(),
        first=rows[0] if rows else None,
        last=rows[-1] if rows else None,
        main_process=trainer.dist.is_main,
    )
    if trainer.dist.is_main:
        _write_back(Bundle(bundle_path, staged.spec), index, policy.trainable_state(), config, trainer, work, summary)
    trainer.dist.barrier()
    return summary


def _checked_config(bundle: Bundle, config: TrainConfig, max_minutes: float | None) -> TrainConfig:
    """The config with the bundle's scorers filled in, after every check that needs no model."""
    if config.trainable != "router":
        raise HoEError(
            "hoe train-router trains a router ('trainable: router'); a LoRA policy is trained by make-expert --method "
            "ppo"
        )
    if max_minutes is not None and not 0 < max_minutes < math.inf:  # NaN too
        raise HoEError(f"{flag_name('max_minutes')} must be positive, got {max_minutes}")
    unknown = [k for k in config.scorers if k not in bundle.objectives]
    if unknown:
        raise HoEError(f"training config: scorers names '{unknown[0]}', which is not an objective of the bundle")
    if bundle.spec.scorers:  # the bundle's own mapping, unless the config overrides it
        config = config.model_copy(update={"scorers": {**bundle.spec.scorers, **config.scorers}})
    for objective in bundle.objectives:
        try:
            check_objective_name(config.scorers.get(objective, objective))
        except HoEError as exc:
            raise HoEError(
                f"objective '{objective}' needs a scorer (config 'scorers: {{{objective}: SPEC}}'): {exc}"
            ) from None
    check_objectives(config, bundle.objectives)
    return config


def _prepare_work(work: Path, resume: bool) -> None:
    """An empty work folder (or the previous run's, to resume); never empties a folder that is not one."""
    if not resume and work.exists():
        if not work.is_dir() or (
            any(work.iterdir())
            and not (work / "curve.csv").exists()
            and not (work / "checkpoint").exists()
            and not (work / "routers").exists()
            and not (work / "initial_router.safetensors").exists()
        ):
            raise HoEError(
                f"--work '{work}' exists and is not a router-training folder; choose another (it would be emptied)"
            )
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)


def _write_back(
    bundle: Bundle,
    index: int,
    tensors: dict[str, torch.Tensor],
    config: TrainConfig,
    trainer: Trainer,
    work: Path,
    summary: dict,
) -> None:
    """The trained router into the bundle: weights and curve by rename, then hoe.json by rename."""
    entry = bundle.spec.routers[index]
    bundle.write_router(entry, tensors, curve=work / "curve.csv")
    entry.trained = True
    entry.training = {
        **(entry.training or {}),
        "config": config.model_dump(),
        "steps": summary["steps"],
        "complete": summary["steps"] >= config.steps,
        "calibration": CALIBRATION,
        "normalisation": {k: list(v) for k, v in trainer.norm.items()},
        "ideal": trainer.scalarisation.ideal.tolist(),
        "final_w": trainer.scalarisation.w.tolist(),
        "trainable_parameters": summary["trainable_parameters"],
        "first": summary["first"],
        "last": summary["last"],
    }
    bundle.save()
