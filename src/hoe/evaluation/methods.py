"""The methods ``hoe evaluate`` compares, in a registry (one class per method), all decoding the
same prompts the same way:

- ``hoe``: the bundle as built (LoRA experts, merged experts, routers), one forward pass;
- ``soup``: the static λ-mix of the single-objective LoRA experts, one forward pass;
- ``merged``: a merged expert made for each λ (the bundle's merge method), folded into the base;
- ``rs``: Rewarded Soups, θ₀ + Σ λ_i τ_i with the experts' full task vectors (LoRA deltas where
  the bundle records no full model), re-mixed for each λ;
- ``mod``: MOD, next token from Σ λ_i log π_i over the N expert models (N passes per token);
- ``morlhf``: MORLHF, one LoRA per λ trained by PPO with linear scalarisation Σ λ_i R_i (the
  expensive upper bound: a training run per preference; cached in the run's work folder);
- ``experts``: each single-objective expert alone; ``base``: the base model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from hoe.errors import HoEError
from hoe.evaluation.preference_sets import preference_label

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


@dataclass
class Decoding:
    """Shared by every method of a run."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16
    seed: int = 0
    max_prompt_tokens: int | None = None  # prompts are cut from the left to this (and always to fit the context)

    def validate(self) -> None:
        if self.max_new_tokens <= 0:
            raise HoEError(f"--max-new-tokens must be positive, got {self.max_new_tokens}")
        if self.batch_size <= 0:
            raise HoEError(f"--batch-size must be positive, got {self.batch_size}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens <= 0:
            raise HoEError(f"--max-prompt-tokens must be positive, got {self.max_prompt_tokens}")
        if self.do_sample and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise HoEError("sampling needs --temperature > 0 and 0 < --top-p ≤ 1")

    def generate_kwargs(self, tokenizer) -> dict:
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample, "pad_token_id": tokenizer.pad_token_id}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


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
    def load_base(self):
        from hoe.models.loading import load_model

        return load_model(self.bundle.spec.base_model, dtype=self.dtype, device=self.device, trust_remote_code=self.trust_remote_code).eval()

    def base_state(self) -> dict[str, torch.Tensor]:
        if self._base_state is None:
            self._base_state = {k: v.detach().clone() for k, v in self.load_base().state_dict().items()}
        return self._base_state

    def expert_models(self) -> list:
        """One model per objective: the full model where recorded, else base + its LoRA expert."""
        if self._expert_models is None:
            from hoe.models.loading import load_model

            models = []
            for expert in self.single_experts():
                if expert.full_model is not None:
                    models.append(load_model(expert.full_model, dtype=self.dtype, device=self.device,
                                             trust_remote_code=self.trust_remote_code).eval())
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
            vectors.append({k: (state[k].float() - base[k].float()) for k in base
                            if k in state and state[k].shape == base[k].shape and base[k].is_floating_point()})
        return vectors

    def merge_setting(self) -> tuple[str, dict]:
        return merge_setting(self.bundle, self.merge_method)

    def merged_adapter(self, preference: np.ndarray) -> Path:
        """The single experts merged at λ (made once per λ, cached in the work folder)."""
        from hoe.merging import MergeSettings, merge_experts

        experts = self.single_experts()
        active = [(e, float(w)) for e, w in zip(experts, preference) if w > 0]
        if len(active) == 1:
            return active[0][0].lora
        method, params = self.merge_setting()
        out = self.work / "merged" / f"{method}-{preference_label(preference)}"
        if not (out / "adapter_config.json").is_file():
            rank = max(_lora_rank(e.lora) for e, _ in active)
            settings = MergeSettings(method=method, weights=[w for _, w in active], rank=rank, params=params)
            merge_experts(self.bundle.spec.base_model, [e.lora for e, _ in active], out, settings, overwrite=True, progress=False)
        return out


    def morlhf_adapter(self, preference: np.ndarray) -> Path:
        """A LoRA trained by PPO on Σ λ_i R_i (linear scalarisation) for this λ; made once, resumable."""
        from hoe.data import load_prompts
        from hoe.models.chat import fit_prompts
        from hoe.rl.config import TrainConfig
        from hoe.rl.policies import LoraPolicy
        from hoe.rl.trainer import CHECKPOINT, Trainer
        from hoe.utils.io import atomic_dir

        out = self.work / "morlhf" / preference_label(preference)
        if (out / "adapter_config.json").is_file():
            return out
        config = self.morlhf or TrainConfig(trainable="lora", scalarisation="linear")
        prompts = load_prompts(config.prompts, "train", limit=config.prompt_count)
        prompts, _ = fit_prompts(self.tokenizer, prompts, None, config.max_new_tokens, max_prompt_tokens=config.max_prompt_tokens)
        policy = LoraPolicy(self.load_base(), self.tokenizer, preference, rank=config.lora_rank, alpha=config.lora_alpha, seed=config.seed)
        work = out.with_name(out.name + ".partial")
        trainer = Trainer(policy, self.bundle.objectives, self.scorers, config, prompts, work, device=self.device, progress=self.progress)
        trainer.train(resume=(work / CHECKPOINT).is_dir())
        with atomic_dir(out, overwrite=True) as tmp:
            policy.model.save_pretrained(tmp)
            (tmp / "curve.csv").write_text((work / "curve.csv").read_text())
        return out


def merge_setting(bundle, override: str | None = None) -> tuple[str, dict]:
    """(method, params) of the ``merged`` baseline: ``override``, else the bundle's first merged
    expert's, else PCB."""
    if override is not None:
        return override, {}
    recorded = [e.source for e in bundle.experts if e.source and e.source.get("kind") == "merge"]
    if recorded:
        return recorded[0]["method"], dict(recorded[0].get("params") or {})
    return "pcb", {}


def single_experts(bundle, task_vectors: str = "auto") -> list[SingleExpert]:
    """The expert whose anchor is one-hot on each objective, in objective order; one line if any is missing."""
    found = []
    for i, objective in enumerate(bundle.objectives):
        vertex = [1.0 if j == i else 0.0 for j in range(len(bundle.objectives))]
        entry = next((e for e in bundle.experts if np.allclose(e.anchor, vertex, atol=1e-9)), None)
        if entry is None:
            raise HoEError(f"the bundle has no single-objective expert for '{objective}' (anchor {vertex}), "
                           "which soup, merged, rs, mod and experts need")
        full = None
        source = entry.source or {}
        if task_vectors != "lora" and source.get("kind") in ("make", "extract"):
            full = str(source["from"])
        if task_vectors == "full" and full is None:
            raise HoEError(f"--task-vectors full: the bundle records no full model for expert '{entry.name}'")
        found.append(SingleExpert(entry.name, list(entry.anchor), bundle.expert_path(entry), full))
    return found


def add_lora(model, folder: Path) -> None:
    """Fold a LoRA folder into a transformers model's weights: W += scale · B A."""
    from hoe.experts.lora import add_deltas, read_lora

    add_deltas(model, read_lora(folder).modules)


def _lora_rank(folder: Path) -> int:
    from hoe.experts.lora import read_lora

    return max(m.rank for m in read_lora(folder).modules.values())


# ---- the methods -------------------------------------------------------------------------------
class Method:
    """A way to answer prompts at a preference. ``setup`` (timed apart) prepares a point;
    ``generate`` returns the new token ids of a left-padded batch."""

    name: ClassVar[str]
    per_preference: ClassVar[bool] = True
    needs_experts: ClassVar[bool] = True

    def __init__(self, context: Context) -> None:
        self.context = context
        self.model = None

    def points(self, preferences: list[np.ndarray]) -> list[Point]:
        return [Point(self.name, preference_label(p), [float(v) for v in p]) for p in preferences]

    def setup(self, point: Point) -> None:
        """Prepare the model for ``point`` (load, merge, re-mix); the harness times it apart."""

    def generate(self, inputs: dict, point: Point) -> torch.Tensor:
        return new_tokens(self.model, inputs, self.context)


@register
class BaseMethod(Method):
    name = "base"
    per_preference = False
    needs_experts = False

    def points(self, preferences):
        return [Point("base", "base", None)]

    def setup(self, point):
        if self.model is None:
            self.model = self.context.load_base()


@register
class ExpertsMethod(Method):
    name = "experts"
    per_preference = False

    def points(self, preferences):
        return [Point("experts", e.name, e.anchor) for e in self.context.single_experts()]

    def setup(self, point):
        names = [e.name for e in self.context.single_experts()]
        self.model = self.context.expert_models()[names.index(point.label)]


class RoutedMethod(Method):
    """A HoE model answering under the point's preference (routing decides the mix)."""

    def generate(self, inputs, point):
        with self.model.preference(point.preference):
            return new_tokens(self.model.model, inputs, self.context)


@register
class HoEMethod(RoutedMethod):
    name = "hoe"
    needs_experts = False

    def setup(self, point):
        if self.model is None:
            from hoe.model import HoEModel

            self.model = HoEModel.from_bundle(self.context.bundle.folder, device=self.context.device, dtype=self.context.dtype,
                                              trust_remote_code=self.context.trust_remote_code)


@register
class SoupMethod(RoutedMethod):
    """Static λ-mix of the single-objective LoRA experts, served by the same mixture layers as HoE."""

    name = "soup"

    def setup(self, point):
        if self.model is None:
            from hoe.experts.lora import read_lora
            from hoe.model import HoEModel

            experts = []
            for expert in self.context.single_experts():
                modules = read_lora(expert.lora).modules
                experts.append((expert.name, expert.anchor, {m: (lora.scale * lora.B.float(), lora.A.float()) for m, lora in modules.items()}))
            self.model = HoEModel.from_modules(self.context.load_base(), self.context.tokenizer, self.context.bundle.objectives, experts)


class AdapterPerPreferenceMethod(Method):
    """One adapter made for each λ (``adapter``), folded into a copy of the base weights."""

    def adapter(self, preference: np.ndarray) -> Path:
        raise NotImplementedError

    def setup(self, point):
        adapter = self.adapter(np.asarray(point.preference))
        if self.model is None:
            self.model = self.context.load_base()
        _load_state(self.model, self.context.base_state())
        add_lora(self.model, adapter)


@register
class MergedMethod(AdapterPerPreferenceMethod):
    """A merged LoRA expert made for each λ and folded into the base weights (one forward pass)."""

    name = "merged"

    def adapter(self, preference):
        return self.context.merged_adapter(preference)


@register
class RewardedSoupsMethod(Method):
    """Rewarded Soups: θ₀ + Σ λ_i τ_i over the full task vectors, one model per λ."""

    name = "rs"

    def setup(self, point):
        if self.model is None:
            self.model = self.context.load_base()
            self._vectors = self.context.task_vectors_of_experts()
        state = {k: v.float().clone() for k, v in self.context.base_state().items()}
        for weight, vector in zip(point.preference, self._vectors):
            if weight > 0:
                for key, delta in vector.items():
                    state[key] += weight * delta
        _load_state(self.model, state)


@register
class MORLHFMethod(AdapterPerPreferenceMethod):
    """MORLHF: a LoRA trained for each λ with linear scalarisation, folded into the base."""

    name = "morlhf"
    needs_experts = False

    def adapter(self, preference):
        return self.context.morlhf_adapter(preference)


@register
class MODMethod(Method):
    """MOD: the next token from Σ λ_i log π_i over the expert models, N passes per token."""

    name = "mod"

    def setup(self, point):
        self.models = self.context.expert_models()

    def generate(self, inputs, point):
        from hoe.baselines.mod import mod_generate

        decoding, tokenizer, forced = self.context.decoding, self.context.tokenizer, self.context.forced_length
        return mod_generate(self.models, point.preference, inputs["input_ids"], inputs["attention_mask"],
                            max_new_tokens=forced or decoding.max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id, do_sample=decoding.do_sample and forced is None,
                            temperature=decoding.temperature, min_new_tokens=forced or 0)


def new_tokens(model, inputs: dict, context: Context) -> torch.Tensor:
    """The tokens a transformers model generates after a left-padded batch, with the run's decoding."""
    kwargs = context.decoding.generate_kwargs(context.tokenizer)
    if context.forced_length is not None:
        kwargs.update(max_new_tokens=context.forced_length, min_new_tokens=context.forced_length, do_sample=False, temperature=None,
                      top_p=None, top_k=None)
    output = model.generate(**inputs, **kwargs)
    return output[:, inputs["input_ids"].shape[1]:]


def _load_state(model, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        own = model.state_dict()
        for key, value in state.items():
            if key in own:
                own[key].copy_(value.to(own[key].dtype))
