"""The YAML recipe that ``hoe build`` turns into a bundle.

```yaml
base: smollm2-135m-instruct
objectives: [helpful, harmless]
rank: 16                          # default rank of every expert
# dtype: float16                  # of the saved expert factors (default float32; float16 halves the bundle)
experts:
  - name: helpful
    anchor: {helpful: 1}          # by name (others 0) or a list in objective order
    finetuned: ./helpful-sft      # a full model to extract ...
  - name: harmless
    anchor: [0, 1]
    lora: ./harmless-lora         # ... or a ready peft LoRA folder ...
  - name: concise
    anchor: [0, 1]
    make: {objective: concision}  # ... or a model hoe make-expert makes first (then extracted)
merges:
  - name: balanced
    experts: [helpful, harmless]
    weights: [0.5, 0.5]           # default equal
    method: pcb                   # any hoe merge method
    params: {density: 0.2}
    # anchor: default Σ weights·anchors, normalised
routers:
  - anchor: [0.25, 0.75]          # covers: default the N nearest LoRA experts
```
Relative paths are relative to the recipe file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hoe.errors import HoEError
from hoe.experts.lora import EXPERT_META
from hoe.experts.svd import SvdBackend
from hoe.merging.merge import MergeSettings
from hoe.rewards.scoring import check_objective_name
from hoe.routing import parse_preference
from hoe.settings import Identifier, first_error
from hoe.training.make_expert import MakeExpertSettings
from hoe.utils.io import read_json

AnchorLike = Union[list[float], dict[str, float]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ExpertSpec(_Strict):
    name: Identifier
    anchor: AnchorLike | None = None  # may be left out for a LoRA folder whose hoe_expert.json records it
    lora: str | None = None
    finetuned: str | None = None
    make: MakeExpertSettings | None = None  # the make-expert job's own settings model
    rank: int | None = Field(default=None, gt=0)  # of the extracted expert (default: the recipe's)
    svd: SvdBackend = "exact"  # of the extraction (ExtractSettings.svd)

    @model_validator(mode="after")
    def _one_source(self):
        if sum(x is not None for x in (self.lora, self.finetuned, self.make)) != 1:
            raise ValueError(
                "give exactly one of 'lora' (a ready adapter), 'finetuned' (a model to extract) or 'make' (an expert "
                "to make)"
            )
        if self.anchor is None and self.lora is None:
            raise ValueError("'anchor' is required (only a 'lora' expert may take the anchor its folder records)")
        return self


class MergeSpec(_Strict):
    name: Identifier
    experts: list[Identifier] = Field(min_length=2)
    weights: list[float] | None = None
    method: str = "linear"
    params: dict = {}
    rank: int | None = Field(default=None, gt=0)
    anchor: AnchorLike | None = None


class RouterSpec(_Strict):
    name: Identifier | None = None
    anchor: AnchorLike
    covers: list[Identifier] | None = None


class Recipe(_Strict):
    base: str
    objectives: list[str] = Field(min_length=1)
    scorers: dict[str, str] = {}  # objective -> scorer spec, where the name is not one; kept in the bundle
    rank: int = Field(default=16, gt=0)
    dtype: Literal["float32", "float16", "bfloat16"] = (
        "float32"  # of extracted and merged factors (computed in float32/64)
    )
    target_modules: list[str] | None = None
    experts: list[ExpertSpec] = Field(min_length=1)
    merges: list[MergeSpec] = []
    routers: list[RouterSpec] = []

    @field_validator("objectives")
    @classmethod
    def _unique_objectives(cls, value):
        if len(set(value)) != len(value):
            raise ValueError("objective names must be unique")
        return value

    @model_validator(mode="after")
    def _names(self):
        names = [e.name for e in self.experts] + [m.name for m in self.merges]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise ValueError(f"expert name '{duplicate}' is used twice")
        for i, merge in enumerate(self.merges):
            known = names[: len(self.experts) + i]
            unknown = [e for e in merge.experts if e not in known]
            if unknown:
                raise ValueError(
                    f"merges.{i}: unknown expert '{unknown[0]}' (experts and earlier merges: {', '.join(known)})"
                )
            if merge.weights is not None and len(merge.weights) != len(merge.experts):
                raise ValueError(f"merges.{i}: {len(merge.weights)} weights for {len(merge.experts)} experts")
        unknown = [k for k in self.scorers if k not in self.objectives]
        if unknown:
            raise ValueError(f"scorers: '{unknown[0]}' is not one of the objectives")
        return self


def anchor_vector(value: AnchorLike, objectives: list[str], where: str) -> list[float]:
    """A normalised anchor from a list (objective order) or a {name: weight} mapping."""
    try:
        return [round(float(v), 12) for v in parse_preference(value, objectives)]
    except HoEError as exc:
        raise HoEError(f"{where}: {exc}") from None


def recorded_anchor(folder: Path, objectives: list[str], where: str) -> dict[str, float]:
    """The anchor a LoRA folder records in hoe_expert.json (from hoe merge or a bundle), by name."""
    meta = Path(folder).expanduser() / EXPERT_META
    if not meta.is_file():
        raise HoEError(f"{where}: missing, and '{folder}' records no anchor (no hoe_expert.json)")
    record = read_json(meta)
    unknown = [
        name for name, weight in zip(record["objectives"], record["anchor"]) if weight > 0 and name not in objectives
    ]
    if unknown:
        raise HoEError(
            f"{where}: missing, and the anchor '{folder}' records weights objective '{unknown[0]}' that the recipe "
            "lacks"
        )
    return {name: weight for name, weight in zip(record["objectives"], record["anchor"]) if name in objectives}


def check_made_objective(spec: str, where: str, trust_code: bool) -> None:
    """An objective a made expert is scored by (its own, or a floor's): a known name, and code only if trusted."""
    try:
        check_objective_name(spec)
    except HoEError as exc:
        raise HoEError(f"{where}: {exc}") from None
    if spec.startswith("py:") and not trust_code:
        raise HoEError(f"{where}: '{spec}' runs Python code the recipe names; pass --trust-recipe-code if you trust it")


def load_recipe(path: str | Path, *, trust_code: bool = False) -> tuple[Recipe, Path]:
    """Parse and validate a recipe file; errors name the file and the field. A recipe may come from
    anyone: a ``py:module:function`` objective it names for ``make:`` would import and run that
    module, so it is refused unless the user passed ``trust_code`` (``--trust-recipe-code``)."""
    path = Path(path)
    if not path.is_file():
        raise HoEError(f"recipe not found: '{path}'")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise HoEError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise HoEError(f"{path}: a recipe is a mapping with base, objectives and experts")
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        raise HoEError(f"{path}: {first_error(exc)}") from None
    for i, expert in enumerate(recipe.experts):
        if expert.anchor is None:
            expert.anchor = recorded_anchor(path.parent / expert.lora, recipe.objectives, f"{path}: experts.{i}.anchor")
        anchor_vector(expert.anchor, recipe.objectives, f"{path}: experts.{i}.anchor")
        if expert.make is not None:
            named = {"objective": expert.make.objective, **{f"floor.{k}": k for k in expert.make.floor or {}}}
            for field, spec in named.items():
                check_made_objective(spec, f"{path}: experts.{i}.make.{field}", trust_code)
    for i, router in enumerate(recipe.routers):
        anchor_vector(router.anchor, recipe.objectives, f"{path}: routers.{i}.anchor")
    for i, merge in enumerate(recipe.merges):
        if merge.anchor is not None:
            anchor_vector(merge.anchor, recipe.objectives, f"{path}: merges.{i}.anchor")
        if merge.weights is not None and (
            any(w < 0 or math.isnan(w) for w in merge.weights) or sum(merge.weights) <= 0
        ):
            raise HoEError(f"{path}: merges.{i}.weights must be non-negative with a positive sum")
        try:  # the merge job's own checks (method, its parameters), before anything is built
            MergeSettings.create(method=merge.method, params=dict(merge.params)).validate_for(len(merge.experts))
        except HoEError as exc:
            raise HoEError(f"{path}: merges.{i}: {exc}") from None
    return recipe, path.parent
