"""What every compared method shares: the registry, the decoding, the points, the context (the
bundle, its single-objective experts, the base weights) and the base classes of a method."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from hoe.checkpoints.loading import load_model
from hoe.errors import HoEError
from hoe.evaluation.preference_sets import preference_label
from hoe.evaluation.settings import Decoding
from hoe.experts.lora import add_deltas, read_lora
from hoe.model.bundle import Bundle
from hoe.settings import flag_name

METHODS: dict[str, type["Method"]] = {}


def register(cls: type["Method"]) -> type["Method"]:
    METHODS[cls.name] = cls
    return cls


def check_methods(names: list[str]) -> None:
    if not names:
        raise HoEError(f"no methods given (choose from {', '.join(METHODS)})")
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise HoEError(f"unknown method '{unknown[0]}' (choose from {', '.join(METHODS)})")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise HoEError(f"method '{twice[0]}' is named twice")


@dataclass
class Point:
    """One model to evaluate: a method at a preference (an expert at its anchor; the base at none)."""

    method: str
    label: str
    preference: list[float] | None


@dataclass
class SingleExpert:
    """The bundle's expert for one objective: its LoRA folder and, where recorded, the full model."""

    name: str
    anchor: list[float]
    lora: Path
    full_model: str | None


@dataclass
class Context:
    """What the methods share: the bundle, the tokenizer, the decoding, a work folder."""

    bundle: object
    tokenizer: object
    decoding: Decoding
    work: Path
    task_vectors: str = "auto"  # auto | lora | full
    merge_method: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    trust_remote_code: bool = False
    scorers: dict[str, str] = field(default_factory=dict)
    morlhf: object = None  # a hoe.rl.TrainConfig for MORLHF's per-λ PPO runs
    progress: bool = False
    forced_length: int | None = None  # timing: greedy, exactly this many new tokens per row
    _base_state: dict | None = field(default=None, repr=False)
    _expert_models: list | None = field(default=None, repr=False)

    # ---- the bundle's single-objective experts ---------------------------------------------------
    def single_experts(self) -> list[SingleExpert]:
        return single_experts(self.bundle, self.task_vectors)

    # ---- models ----------------------------------------------------------------------------------
    def load_base(self) -> torch.nn.Module:
        return load_model(
            self.bundle.spec.base_model, dtype=self.dtype, device=self.device, trust_remote_code=self.trust_remote_code
        ).eval()

    def base_state(self) -> dict[str, torch.Tensor]:
        if self._base_state is None:
            self._base_state = {k: v.detach().clone() for k, v in self.load_base().state_dict().items()}
        return self._base_state

    def expert_models(self) -> list:
        """One model per objective: the full model where recorded, else base + its LoRA expert."""
        if self._expert_models is None:
            models = []
            for expert in self.single_experts():
                if expert.full_model is not None:
                    models.append(
                        load_model(
                            expert.full_model,
                            dtype=self.dtype,
                            device=self.device,
                            trust_remote_code=self.trust_remote_code,
                        ).eval()
                    )
                else:
                    model = self.load_base()
                    add_lora(model, expert.lora)
                    models.append(model)
            self._expert_models = models
        return self._expert_models

    def task_vectors_of_experts(self) -> list[dict[str, torch.Tensor]]:
        """τ_i per objective: full-model differences where recorded, else the LoRA deltas."""
        base = self.base_state()
        vectors = []
        for model in self.expert_models():
            state = model.state_dict()
            vectors.append(
                {
                    k: (state[k].float() - base[k].float())
                    for k in base
                    if k in state and state[k].shape == base[k].shape and base[k].is_floating_point()
                }
            )
        return vectors

    def merge_setting(self) -> tuple[str, dict]:
        return merge_setting(self.bundle, self.merge_method)


def merge_setting(bundle: Bundle, override: str | None = None) -> tuple[str, dict]:
    """(method, params) of the ``merged`` baseline: ``override``, else the bundle's first merged
    expert's, else PCB."""
    if override is not None:
        return override, {}
    recorded = [e.source for e in bundle.experts if e.source and e.source.get("kind") == "merge"]
    if recorded:
        return recorded[0]["method"], dict(recorded[0].get("params") or {})
    return "pcb", {}


def single_experts(bundle: Bundle, task_vectors: str = "auto") -> list[SingleExpert]:
    """The expert whose anchor is one-hot on each objective, in objective order; one line if any is missing."""
    found = []
    for objective in bundle.objectives:
        entry = bundle.single_expert(objective)
        full = None
        source = entry.source or {}
        if task_vectors != "lora" and source.get("kind") in ("make", "extract"):
            full = str(source["from"])
        if task_vectors == "full" and full is None:
            raise HoEError(
                f"{flag_name('task_vectors')} full: the bundle records no full model for expert '{entry.name}'"
            )
        found.append(SingleExpert(entry.name, list(entry.anchor), bundle.expert_path(entry), full))
    return found


def add_lora(model: torch.nn.Module, folder: Path) -> None:
    """Fold a LoRA folder into a transformers model's weights: W += scale · B A."""
    add_deltas(model, read_lora(folder).modules)


def lora_rank(folder: Path) -> int:
    return max(m.rank for m in read_lora(folder).modules.values())


# ---- the methods -------------------------------------------------------------------------------
class Method:
    """A way to answer prompts at a preference. ``setup`` (timed apart) prepares a point;
    ``generate`` returns the new token ids of a left-padded batch."""

    name: ClassVar[str]
    per_preference: ClassVar[bool] = True
    needs_experts: ClassVar[bool] = True
    uses_routers: ClassVar[bool] = False  # its answers change when the bundle's routers are trained again

    def __init__(self, context: Context) -> None:
        self.context = context
        self.model = None

    def points(self, preferences: list[np.ndarray]) -> list[Point]:
        return [Point(self.name, preference_label(p), [float(v) for v in p]) for p in preferences]

    def setup(self, point: Point) -> None:
        """Prepare the model for ``point`` (load, merge, re-mix); the harness times it apart."""

    def generate(self, inputs: dict, point: Point) -> torch.Tensor:
        return new_tokens(self.model, inputs, self.context)


class RoutedMethod(Method):
    """A HoE model answering under the point's preference (routing decides the mix)."""

    def generate(self, inputs: dict[str, torch.Tensor], point: Point) -> torch.Tensor:
        with self.model.preference(point.preference):
            return new_tokens(self.model.model, inputs, self.context)


class AdapterPerPreferenceMethod(Method):
    """One adapter made for each λ (``adapter``), folded into a copy of the base weights."""

    def adapter(self, preference: np.ndarray) -> Path:
        raise NotImplementedError

    def setup(self, point: Point) -> None:
        adapter = self.adapter(np.asarray(point.preference))
        if self.model is None:
            self.model = self.context.load_base()
        load_state(self.model, self.context.base_state())
        add_lora(self.model, adapter)


def new_tokens(model: torch.nn.Module, inputs: dict, context: Context) -> torch.Tensor:
    """The tokens a transformers model generates after a left-padded batch, with the run's decoding."""
    kwargs = context.decoding.generate_kwargs(context.tokenizer)
    if context.forced_length is not None:
        kwargs.update(
            max_new_tokens=context.forced_length,
            min_new_tokens=context.forced_length,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
        )
    output = model.generate(**inputs, **kwargs)
    return output[:, inputs["input_ids"].shape[1] :]


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        own = model.state_dict()
        for key, value in state.items():
            if key in own:
                own[key].copy_(value.to(own[key].dtype))
