"""``hoe train-router``: train the router expert at one anchor of a bundle with PPO and write it
back into the bundle (router weights, training configuration and curve), atomically.

Every check runs before a model loads: the anchor's length, that no LoRA expert sits on it,
that the bundle's experts can reach it, the scorers, and the config's keys.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from hoe.errors import HoEError
from hoe.rl.config import TrainConfig, check_objectives
from hoe.utils.io import write_json

ANCHOR_TOLERANCE = 1e-6


def plan_router(bundle, anchor: np.ndarray, overwrite: bool, resume: bool):
    """(router index, new RouterEntry or None, static weights) for training at ``anchor``."""
    from hoe.model.bundle import RouterEntry
    from hoe.routing import convex_weights, nearest

    for expert in bundle.experts:
        if np.allclose(expert.anchor, anchor, atol=1e-9):
            raise HoEError(f"anchor {anchor.tolist()} is the anchor of expert '{expert.name}': a router serves a preference no expert sits on")
    for index, router in enumerate(bundle.routers):
        if np.allclose(router.anchor, anchor, atol=1e-9):
            if router.trained and not (overwrite or resume):
                raise HoEError(f"router '{router.name}' at {anchor.tolist()} is trained already (pass --overwrite to train it again)")
            return index, None, (router.training or {}).get("initial_weights")
    anchors = np.asarray([e.anchor for e in bundle.experts])
    covered = nearest(anchors, anchor, len(bundle.objectives))
    weights, residual = convex_weights(anchors[covered], anchor)
    names = [bundle.experts[c].name for c in covered]
    if residual > ANCHOR_TOLERANCE:
        raise HoEError(f"the bundle's experts nearest to {anchor.tolist()} ({', '.join(names)}) cannot reach it (residual {residual:.3g}); "
                       "add an expert whose anchor surrounds it")
    name = "router-" + "-".join(f"{a:g}" for a in anchor)
    entry = RouterEntry(name=name, anchor=[float(a) for a in anchor], covers=names, path="",
                        training={"initial_weights": [round(float(w), 6) for w in weights], "residual": residual})
    return len(bundle.routers), entry, entry.training["initial_weights"]


def train_router(bundle_path: str | Path, anchor, config: TrainConfig, *, work: str | Path | None = None, resume: bool = False,
                 overwrite: bool = False, device: str = "cpu", progress: bool = True, max_minutes: float | None = None) -> dict:
    """Train (or continue training) the router at ``anchor`` and write it into the bundle. With
    ``max_minutes``, training stops after the step that crosses that budget; the router trained so
    far is written (its record says how many steps) and ``resume=True`` continues the run."""
    from safetensors.torch import save_file

    from hoe.data import load_prompts
    from hoe.evaluation.methods import single_experts
    from hoe.model.bundle import Bundle, load_bundle
    from hoe.model.hoe_model import router_init
    from hoe.models.tensors import CheckpointTensors
    from hoe.models.loading import resolve_checkpoint
    from hoe.rewards.scoring import check_objective_name
    from hoe.routing import parse_preference
    import torch

    bundle_path = Path(bundle_path)
    bundle = load_bundle(bundle_path)
    if config.trainable != "router":
        raise HoEError("hoe train-router trains a router ('trainable: router'); a LoRA policy is trained by make-expert --method ppo")
    vector = parse_preference(anchor, bundle.objectives)
    if max_minutes is not None and max_minutes <= 0:
        raise HoEError(f"--max-minutes must be positive, got {max_minutes}")
    unknown = [k for k in config.scorers if k not in bundle.objectives]
    if unknown:
        raise HoEError(f"training config: scorers names '{unknown[0]}', which is not an objective of the bundle")
    if bundle.spec.scorers:  # the bundle's own mapping, unless the config overrides it
        config = config.model_copy(update={"scorers": {**bundle.spec.scorers, **config.scorers}})
    for objective in bundle.objectives:
        try:
            check_objective_name(config.scorers.get(objective, objective))
        except HoEError as exc:
            raise HoEError(f"objective '{objective}' needs a scorer (config 'scorers: {{{objective}: SPEC}}'): {exc}") from None
    check_objectives(config, bundle.objectives)
    index, new_entry, _ = plan_router(bundle, vector, overwrite, resume)
    experts = None
    if config.scalarisation == "tchebycheff-omd" and config.ideal is None:
        experts = single_experts(bundle, "lora")  # z* comes from them; one line if any is missing
    prompts = load_prompts(config.prompts, "train", limit=config.prompt_count)
    name = new_entry.name if new_entry is not None else bundle.routers[index].name
    work = Path(work) if work is not None else bundle_path / "training" / name
    if not resume and work.exists():
        if not work.is_dir() or (any(work.iterdir()) and not (work / "curve.csv").exists() and not (work / "checkpoint").exists()
                                 and not (work / "initial_router.safetensors").exists()):
            raise HoEError(f"--work '{work}' exists and is not a router-training folder; choose another (it would be emptied)")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)

    # ---- everything checked: load and train -------------------------------------------------------
    spec = bundle.spec.model_copy(deep=True)
    if new_entry is not None:
        base = CheckpointTensors(resolve_checkpoint(spec.base_model))
        layers = {m: (base.shape(f"{m}.weight")[1], torch.float32) for m in spec.target_modules}
        save_file(router_init(new_entry.training["initial_weights"], layers), str(work / "initial_router.safetensors"))
        new_entry.path = str((work / "initial_router.safetensors").resolve())
        spec.routers.append(new_entry)
    from hoe.model import HoEModel
    from hoe.models.chat import fit_prompts
    from hoe.rl.policies import RouterPolicy
    from hoe.rl.trainer import Trainer

    hoe = HoEModel.from_loaded_bundle(Bundle(bundle_path, spec), device=device)
    prompts, cut = fit_prompts(hoe.tokenizer, prompts, None, config.max_new_tokens, max_prompt_tokens=config.max_prompt_tokens)
    policy = RouterPolicy(hoe, index)
    if new_entry is None and not resume:  # (re)train from the static mix the router starts as
        weights = policy.reference_weights()
        layers = {m: (layer.in_features, torch.float32) for m, layer in hoe.layers.items()}
        policy.load_trainable_state(router_init(weights, layers))
    routings = None
    if experts is not None:
        routings = {i: (lambda e=e: hoe.preference(e.anchor)) for i, e in enumerate(experts)}
    trainer = Trainer(policy, bundle.objectives, config.scorers, config, prompts, work, device=device, progress=progress)
    rows = trainer.train(resume=resume, expert_routings=routings, max_seconds=None if max_minutes is None else 60 * max_minutes)
    summary = {"router": name, "anchor": vector.tolist(), "steps": len(rows), "stopped_early": trainer.stopped_early,
               "prompts_cut": cut, "work": str(work),
               "trainable_parameters": policy.trainable_count(), "first": rows[0] if rows else None, "last": rows[-1] if rows else None,
               "main_process": trainer.dist.is_main}
    if trainer.dist.is_main:
        _write_back(bundle_path, spec, index, policy.trainable_state(), config, trainer, work, summary)
    trainer.dist.barrier()
    return summary


def _write_back(bundle_path: Path, spec, index: int, tensors, config: TrainConfig, trainer, work: Path, summary: dict) -> None:
    """The trained router into the bundle: weights and curve by rename, then hoe.json by rename."""
    from safetensors.torch import save_file

    from hoe.model.bundle import BUNDLE_FILE, spec_record

    entry = spec.routers[index]
    routers = bundle_path / "routers"
    routers.mkdir(exist_ok=True)
    target = routers / f"{entry.name}.safetensors"
    tmp = routers / f".{entry.name}.safetensors.tmp-{os.getpid()}"
    save_file(tensors, str(tmp))
    os.replace(tmp, target)
    curve = routers / f"{entry.name}.curve.csv"
    shutil.copyfile(work / "curve.csv", curve.with_name(f".{curve.name}.tmp"))
    os.replace(curve.with_name(f".{curve.name}.tmp"), curve)
    entry.path = f"routers/{entry.name}.safetensors"
    entry.trained = True
    entry.training = {**(entry.training or {}), "config": config.model_dump(), "steps": summary["steps"],
                      "complete": summary["steps"] >= config.steps, "curve": f"routers/{curve.name}",
                      "normalisation": {k: list(v) for k, v in trainer.norm.items()}, "ideal": trainer.scalarisation.ideal.tolist(),
                      "final_w": trainer.scalarisation.w.tolist(), "trainable_parameters": summary["trainable_parameters"],
                      "first": summary["first"], "last": summary["last"]}
    write_json(bundle_path / BUNDLE_FILE, spec_record(spec))
