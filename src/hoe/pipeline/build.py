"""``hoe build``: a bundle from a recipe, extracting and merging what is not built yet.

The new bundle is assembled in a temporary folder and renamed over ``out`` at the end, so a
failed build leaves the previous bundle (or nothing) in place. Experts whose recipe entry is
unchanged since the last build (same fingerprint) are copied from the existing bundle instead
of being extracted or merged again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hoe.checkpoints.loading import cache_root, check_model_reference, is_lora_folder, resolve_checkpoint
from hoe.checkpoints.tensors import CheckpointTensors
from hoe.errors import HoEError
from hoe.experts import ExtractSettings, extract_expert
from hoe.experts.lora import EXPERT_META, read_lora
from hoe.experts.modules import check_adapter_shapes, linear_layers
from hoe.experts.trainable_lora import ADAPTER_DIR
from hoe.merging import MergeSettings, merge_experts
from hoe.model.bundle import (
    BUNDLE_FILE,
    FORMAT_VERSION,
    Bundle,
    BundleSpec,
    LoraExpertEntry,
    adapter_shapes,
    check_against_base,
    load_bundle,
)
from hoe.model.router_weights import router_inputs
from hoe.pipeline.recipe import ExpertSpec, MergeSpec, Recipe, anchor_vector, load_recipe
from hoe.training.make_expert import REPORT_NAME, MakeExpertSettings, make_expert
from hoe.utils.io import read_json, resumable_dir

logger = logging.getLogger(__name__)


def _fingerprint(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _spec_fields(spec: ExpertSpec | MergeSpec) -> dict:
    """A recipe entry as its fingerprint records it (make-expert options added later only when set)."""
    fields = spec.model_dump()
    if isinstance(spec, ExpertSpec) and spec.make is not None:
        fields["make"] = spec.make.fingerprint_fields()
    return fields


def _check_replaceable(out: Path, recipe_folder: Path) -> None:
    """One line unless ``out`` is missing, an empty folder or a HoE bundle, and apart from the recipe's folder."""
    if recipe_folder.resolve().is_relative_to(out):
        raise HoEError(f"--out '{out}' holds the recipe; choose a folder of its own for the bundle")
    if out.exists() and not out.is_dir():
        raise HoEError(f"--out '{out}' exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / BUNDLE_FILE).is_file():
        raise HoEError(f"--out '{out}' is a folder that is not a HoE bundle (no {BUNDLE_FILE}); it is left alone")


def _previous(out: Path) -> Bundle | None:
    """The existing bundle at ``out``, if there is a valid one."""
    if not (out / BUNDLE_FILE).is_file():
        return None
    try:
        return load_bundle(out)
    except HoEError:
        return None


def build_bundle(
    recipe_path: str | Path, out: str | Path, *, progress: bool = True, trust_recipe_code: bool = False
) -> Bundle:
    """Build (or update) the bundle at ``out`` from the recipe at ``recipe_path``. ``out`` may be
    missing, empty or a bundle (which is updated); any other folder is refused, never emptied. A
    ``py:`` objective the recipe names for ``make:`` runs only with ``trust_recipe_code``."""
    recipe, root = load_recipe(recipe_path, trust_code=trust_recipe_code)
    out = Path(out).resolve()
    _check_replaceable(out, root)
    _check_plan(recipe, root)
    base_folder = resolve_checkpoint(recipe.base)
    base = CheckpointTensors(base_folder)
    layers = linear_layers(base_folder, base.shapes())
    old_bundle = _previous(out)
    previous = {e.name: e for e in old_bundle.experts if e.fingerprint} if old_bundle else {}
    anchors: dict[str, list[float]] = {}
    with resumable_dir(out, "hoe build") as tmp:
        staged = _staged_experts(tmp, recipe)
        bundle = _new_bundle(tmp, recipe)
        for kind, index, spec in tqdm(_steps(recipe), desc="build", unit="expert", disable=not progress):
            target = bundle.expert_folder(spec.name)
            fingerprint = _fingerprint(
                recipe.base,
                recipe.rank,
                recipe.target_modules,
                _spec_fields(spec),
                [anchors.get(e) for e in getattr(spec, "experts", [])],
                *([recipe.dtype] if recipe.dtype != "float32" else []),
            )  # old fingerprints stay valid
            old = previous.get(spec.name)
            unchanged = old is not None and old.fingerprint == fingerprint
            if staged.get(spec.name, {}).get("fingerprint") == fingerprint:  # finished by a killed run
                source = staged[spec.name].get("source")
            elif unchanged and (out / old.path / "adapter_config.json").is_file():
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(out / old.path, target)
                source = old.source
            else:
                shutil.rmtree(target, ignore_errors=True)  # a killed run's expert from another recipe entry
                if kind == "expert":
                    source = _make_expert(recipe, root, spec, index, target, base, layers, progress)
                else:
                    source = _make_merge(recipe, spec, bundle, target, progress)
            anchor = _anchor_of(recipe, spec, kind, index, anchors)
            anchors[spec.name] = anchor
            bundle.record_expert(spec.name, anchor, fingerprint=fingerprint, source=source)
        bundle.check_unique_anchors()
        bundle.spec.target_modules = sorted(
            set().union(*(adapter_shapes(bundle.expert_path(e)) for e in bundle.experts))
        )
        _add_routers(recipe, bundle, base)
        if old_bundle is not None and old_bundle.objectives == recipe.objectives:
            bundle.spec.routers = [bundle.adopt_trained_router(old_bundle, router) for router in bundle.routers]
        check_against_base(bundle, base.shapes())
        bundle.save()
    return load_bundle(out)


def _staged_experts(staging: Path, recipe: Recipe) -> dict[str, dict]:
    """What a killed build of this bundle left in its staging folder that is worth keeping: each
    finished expert's metadata (written last, with the fingerprint of the recipe entry that made
    it), by name. Everything else there (unfinished experts, routers, hoe.json) is removed."""
    names = {spec.name for _, _, spec in _steps(recipe)}
    finished = {}
    for folder in sorted((staging / "experts").glob("*")) if (staging / "experts").is_dir() else []:
        meta = _read_meta(folder / EXPERT_META) if folder.name in names else None
        if meta is not None and meta.get("fingerprint") and (folder / "adapter_config.json").is_file():
            finished[folder.name] = meta
        else:
            shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(staging / "routers", ignore_errors=True)
    (staging / BUNDLE_FILE).unlink(missing_ok=True)
    if finished:
        logger.info("hoe build: reusing %d expert(s) a killed run finished: %s", len(finished), ", ".join(finished))
    return finished


def _read_meta(path: Path) -> dict | None:
    """A staged expert's metadata, or None when a killed run left none (or a damaged one)."""
    try:
        return read_json(path)
    except (OSError, HoEError):
        return None


def _new_bundle(folder: Path, recipe: Recipe) -> Bundle:
    """The recipe's bundle before any expert: base, objectives and scorers."""
    spec = BundleSpec(
        format_version=FORMAT_VERSION,
        base_model=recipe.base,
        objectives=recipe.objectives,
        target_modules=[],
        experts=[],
        scorers=dict(recipe.scorers),
    )
    return Bundle(folder, spec)


def _steps(recipe: Recipe) -> list[tuple[str, int, ExpertSpec | MergeSpec]]:
    """The build's order: the recipe's experts, then its merges (a merge may use an earlier one)."""
    return [("expert", i, e) for i, e in enumerate(recipe.experts)] + [
        ("merge", i, m) for i, m in enumerate(recipe.merges)
    ]


def _check_plan(recipe: Recipe, root: Path) -> None:
    """Everything about the recipe that needs no weights, checked before the first extraction (an
    hour at 7B): every input exists (a hub fine-tune is fetched now), the anchors are distinct, and
    every router can be planned (no expert on its anchor, ``covers`` names experts, the covered
    experts reach the anchor)."""
    for i, spec in enumerate(recipe.experts):
        if spec.lora is not None:
            _check_lora_folder(_resolve(root, spec.lora), f"experts.{i}.lora")
        if spec.finetuned is not None:
            local = _resolve(root, spec.finetuned)
            reference = str(local) if local.exists() else spec.finetuned
            check_model_reference(reference, f"experts.{i}.finetuned", lora_ok=True)
            if not local.exists():  # a hub name: fetched now, so that a typo fails before any extraction
                try:
                    resolve_checkpoint(reference)
                except HoEError as exc:
                    raise HoEError(f"experts.{i}.finetuned: {exc}") from None
    anchors: dict[str, list[float]] = {}
    for kind, index, spec in _steps(recipe):
        anchors[spec.name] = _anchor_of(recipe, spec, kind, index, anchors)
    plan = _new_bundle(root, recipe)  # in memory only: nothing is written
    plan.spec.experts = [LoraExpertEntry(name=name, path=f"experts/{name}", anchor=a) for name, a in anchors.items()]
    plan.check_unique_anchors()
    for i, spec in enumerate(recipe.routers):
        anchor = anchor_vector(spec.anchor, recipe.objectives, f"routers.{i}.anchor")
        if plan.router_index_at(anchor) is not None:
            raise HoEError(f"routers.{i}: another router of the recipe sits on the anchor {anchor}")
        entry = plan.plan_router(anchor, name=spec.name, covers=spec.covers, where=f"routers.{i}")
        if entry.name in plan.pool_names():
            raise HoEError(f"routers.{i}: the name '{entry.name}' is taken by an expert or an earlier router")
        plan.spec.routers.append(entry)


def _make_expert(
    recipe: Recipe,
    root: Path,
    spec: ExpertSpec,
    index: int,
    target: Path,
    base: CheckpointTensors,
    layers: dict,
    progress: bool,
) -> dict:
    where = f"experts.{index}"
    if spec.lora is not None:
        folder = _resolve(root, spec.lora)
        _copy_lora(folder, target, base, layers, f"{where}.lora")
        return {"kind": "lora", "from": str(folder)}
    settings = ExtractSettings.create(
        rank=spec.rank or recipe.rank, svd=spec.svd, target_modules=recipe.target_modules, dtype=recipe.dtype
    )
    if spec.make is not None:
        reference = _made_model(recipe.base, spec.make, progress)
        if spec.make.lora_rank is not None:  # the made model's own LoRA is the expert: nothing to extract
            _copy_lora(reference / ADAPTER_DIR, target, base, layers, f"{where}.make")
            return {
                "kind": "make",
                "from": str(reference / ADAPTER_DIR),
                "rank": spec.make.lora_rank,
                "make": spec.make.model_dump(),
            }
        extract_expert(recipe.base, str(reference), target, settings, progress=progress)
        return {"kind": "make", "from": str(reference), "rank": settings.rank, "make": spec.make.model_dump()}
    local = _resolve(root, spec.finetuned)
    reference = str(local) if local.exists() else spec.finetuned
    extract_expert(recipe.base, reference, target, settings, progress=progress)
    return {"kind": "extract", "from": reference, "rank": settings.rank}


def _check_lora_folder(folder: Path, where: str) -> None:
    if not is_lora_folder(folder):
        raise HoEError(f"{where}: '{folder}' is not a LoRA adapter folder")


def _copy_lora(folder: Path, target: Path, base: CheckpointTensors, layers: dict, where: str) -> None:
    """Copy a peft LoRA folder in as an expert, after checking it fits the base."""
    _check_lora_folder(folder, where)
    check_adapter_shapes(read_lora(folder), folder, base, layers)
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns(EXPERT_META))


def _made_model(base: str, make: MakeExpertSettings, progress: bool) -> Path:
    """The model ``hoe make-expert`` makes for a recipe entry, cached by its settings."""
    out = (
        cache_root()
        / "experts"
        / f"{make.objective.replace('/', '_').replace(':', '_')}-{_fingerprint(base, make.cache_fields())}"
    )
    if not (out / REPORT_NAME).is_file():
        make_expert(base, make, out, overwrite=True, progress=progress)
    return out


def _make_merge(recipe: Recipe, spec: MergeSpec, bundle: Bundle, target: Path, progress: bool) -> dict:
    settings = MergeSettings.create(
        method=spec.method,
        weights=spec.weights,
        rank=spec.rank or recipe.rank,
        params=dict(spec.params),
        target_modules=recipe.target_modules,
        objectives=None,
        dtype=recipe.dtype,
    )
    merge_experts(
        recipe.base, [bundle.expert_folder(name) for name in spec.experts], target, settings, progress=progress
    )
    return {
        "kind": "merge",
        "method": spec.method,
        "experts": spec.experts,
        "weights": settings.weights,
        "params": dict(spec.params),
    }


def _anchor_of(
    recipe: Recipe, spec: ExpertSpec | MergeSpec, kind: str, index: int, anchors: dict[str, list[float]]
) -> list[float]:
    if kind == "expert":
        return anchor_vector(spec.anchor, recipe.objectives, f"experts.{index}.anchor")
    if spec.anchor is not None:
        return anchor_vector(spec.anchor, recipe.objectives, f"merges.{index}.anchor")
    weights = np.asarray(spec.weights or [1.0] * len(spec.experts), dtype=np.float64)
    mixed = (weights[:, None] * np.asarray([anchors[e] for e in spec.experts])).sum(0) / weights.sum()
    return [round(float(v), 12) for v in mixed]


def _add_routers(recipe: Recipe, bundle: Bundle, base: CheckpointTensors) -> None:
    """The recipe's routers, untrained: each initialised to its anchor's static convex weights."""
    layer_inputs = router_inputs(base, bundle.spec.target_modules)
    for i, spec in enumerate(recipe.routers):
        anchor = anchor_vector(spec.anchor, recipe.objectives, f"routers.{i}.anchor")
        entry = bundle.plan_router(anchor, name=spec.name, covers=spec.covers, where=f"routers.{i}")
        bundle.spec.routers.append(bundle.write_untrained_router(entry, layer_inputs))


def _resolve(root: Path, reference: str) -> Path:
    path = Path(reference).expanduser()
    return path if path.is_absolute() else (root / path)
