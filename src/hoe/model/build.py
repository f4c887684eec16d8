"""``hoe build``: a bundle from a recipe, extracting and merging what is not built yet.

The new bundle is assembled in a temporary folder and renamed over ``out`` at the end, so a
failed build leaves the previous bundle (or nothing) in place. Experts whose recipe entry is
unchanged since the last build (same fingerprint) are copied from the existing bundle instead
of being extracted or merged again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from hoe.errors import HoEError
from hoe.experts import ExtractSettings, extract_expert
from hoe.experts.lora import read_lora
from hoe.experts.modules import check_adapter_shapes, linear_layers
from hoe.merging import MergeSettings, merge_experts
from hoe.merging.merge import EXPERT_META
from hoe.model.bundle import (BUNDLE_FILE, FORMAT_VERSION, Bundle, BundleSpec, LoraExpertEntry, RouterEntry,
                              adapter_shapes, check_against_base, load_bundle)
from hoe.model.hoe_model import router_init
from hoe.model.recipe import Recipe, anchor_vector, load_recipe
from hoe.models.loading import resolve_checkpoint
from hoe.models.tensors import CheckpointTensors
from hoe.routing import convex_weights, nearest
from hoe.training.lora import ADAPTER_DIR
from hoe.utils.io import atomic_dir, write_json


def _fingerprint(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _previous(out: Path) -> Bundle | None:
    """The existing bundle at ``out``, if there is a valid one."""
    if not (out / BUNDLE_FILE).is_file():
        return None
    try:
        return load_bundle(out)
    except HoEError:
        return None


def build_bundle(recipe_path: str | Path, out: str | Path, *, progress: bool = True) -> Bundle:
    """Build (or update) the bundle at ``out`` from the recipe at ``recipe_path``."""
    recipe, root = load_recipe(recipe_path)
    out = Path(out)
    base_folder = resolve_checkpoint(recipe.base)
    base = CheckpointTensors(base_folder)
    layers = linear_layers(base_folder, base.shapes())
    old_bundle = _previous(out)
    previous = {e.name: e for e in old_bundle.experts if e.fingerprint} if old_bundle else {}
    entries: list[LoraExpertEntry] = []
    anchors: dict[str, list[float]] = {}
    with atomic_dir(out, overwrite=True) as tmp:
        steps = [("expert", i, e) for i, e in enumerate(recipe.experts)] + [("merge", i, m) for i, m in enumerate(recipe.merges)]
        for kind, index, spec in tqdm(steps, desc="build", unit="expert", disable=not progress):
            target = tmp / "experts" / spec.name
            fingerprint = _fingerprint(recipe.base, recipe.rank, recipe.target_modules, spec.model_dump(),
                                       [anchors.get(e) for e in getattr(spec, "experts", [])],
                                       *([recipe.dtype] if recipe.dtype != "float32" else []))  # old fingerprints stay valid
            old = previous.get(spec.name)
            if old is not None and old.fingerprint == fingerprint and (out / old.path / "adapter_config.json").is_file():
                shutil.copytree(out / old.path, target)
                source = old.source
            elif kind == "expert":
                source = _make_expert(recipe, root, spec, index, target, base, layers, progress)
            else:
                source = _make_merge(recipe, spec, index, target, tmp, anchors, progress)
            anchor = _anchor_of(recipe, spec, kind, index, anchors)
            anchors[spec.name] = anchor
            write_json(target / EXPERT_META, {"format": 1, "objectives": recipe.objectives, "anchor": anchor, "source": source})
            entries.append(LoraExpertEntry(name=spec.name, path=f"experts/{spec.name}", anchor=anchor, fingerprint=fingerprint, source=source))
        _check_distinct_anchors(entries)
        routers = _make_routers(recipe, entries, tmp, base)
        if old_bundle is not None and old_bundle.objectives == recipe.objectives:
            routers = [_keep_trained(old_bundle, router, entries, tmp) for router in routers]
        spec = BundleSpec(format_version=FORMAT_VERSION, base_model=recipe.base, objectives=recipe.objectives,
                          target_modules=sorted(_adapted_modules(tmp, entries)), experts=entries, routers=routers,
                          scorers=dict(recipe.scorers))
        bundle = Bundle(tmp, spec)
        check_against_base(bundle, base.shapes())
        bundle.save()
    return load_bundle(out)


def _make_expert(recipe: Recipe, root: Path, spec, index: int, target: Path, base, layers, progress) -> dict:
    where = f"experts.{index}"
    if spec.lora is not None:
        folder = _resolve(root, spec.lora)
        _copy_lora(folder, target, base, layers, f"{where}.lora")
        return {"kind": "lora", "from": str(folder)}
    settings = ExtractSettings(rank=spec.rank or recipe.rank, svd=spec.svd, target_modules=recipe.target_modules, dtype=recipe.dtype)
    if spec.make is not None:
        reference = _made_model(recipe.base, spec.make, progress)
        if spec.make.lora_rank is not None:  # the made model's own LoRA is the expert: nothing to extract
            _copy_lora(reference / ADAPTER_DIR, target, base, layers, f"{where}.make")
            return {"kind": "make", "from": str(reference / ADAPTER_DIR), "rank": spec.make.lora_rank, "make": spec.make.model_dump()}
        extract_expert(recipe.base, str(reference), target, settings, progress=progress)
        return {"kind": "make", "from": str(reference), "rank": settings.rank, "make": spec.make.model_dump()}
    local = _resolve(root, spec.finetuned)
    reference = str(local) if local.exists() else spec.finetuned
    extract_expert(recipe.base, reference, target, settings, progress=progress)
    return {"kind": "extract", "from": reference, "rank": settings.rank}


def _copy_lora(folder: Path, target: Path, base, layers, where: str) -> None:
    """Copy a peft LoRA folder in as an expert, after checking it fits the base."""
    if not (folder / "adapter_config.json").is_file():
        raise HoEError(f"{where}: '{folder}' is not a LoRA adapter folder")
    check_adapter_shapes(read_lora(folder), folder, base, layers)
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns(EXPERT_META))


def _made_model(base: str, make, progress: bool) -> Path:
    """The model ``hoe make-expert`` makes for a recipe entry, cached by its settings."""
    from hoe.models.loading import cache_root
    from hoe.training.make_expert import REPORT_NAME, MakeExpertSettings, make_expert

    out = cache_root() / "experts" / f"{make.objective.replace('/', '_').replace(':', '_')}-{_fingerprint(base, make.cache_fields())}"
    if not (out / REPORT_NAME).is_file():
        options = make.model_dump()
        make_expert(base, MakeExpertSettings.from_options(options.pop("objective"), **options), out, overwrite=True, progress=progress)
    return out


def _make_merge(recipe: Recipe, spec, index: int, target: Path, tmp: Path, anchors, progress) -> dict:
    settings = MergeSettings(method=spec.method, weights=spec.weights, rank=spec.rank or recipe.rank, params=dict(spec.params),
                             target_modules=recipe.target_modules, objectives=None, dtype=recipe.dtype)
    merge_experts(recipe.base, [tmp / "experts" / name for name in spec.experts], target, settings, progress=progress)
    return {"kind": "merge", "method": spec.method, "experts": spec.experts, "weights": settings.weights, "params": dict(spec.params)}


def _anchor_of(recipe: Recipe, spec, kind: str, index: int, anchors: dict[str, list[float]]) -> list[float]:
    if kind == "expert":
        return anchor_vector(spec.anchor, recipe.objectives, f"experts.{index}.anchor")
    if spec.anchor is not None:
        return anchor_vector(spec.anchor, recipe.objectives, f"merges.{index}.anchor")
    weights = np.asarray(spec.weights or [1.0] * len(spec.experts), dtype=np.float64)
    mixed = (weights[:, None] * np.asarray([anchors[e] for e in spec.experts])).sum(0) / weights.sum()
    return [round(float(v), 12) for v in mixed]


def _check_distinct_anchors(entries: list[LoraExpertEntry]) -> None:
    for i, a in enumerate(entries):
        for b in entries[:i]:
            if np.allclose(a.anchor, b.anchor, atol=1e-9):
                raise HoEError(f"experts '{b.name}' and '{a.name}' share the anchor {a.anchor}; each anchor must be unique")


def _adapted_modules(tmp: Path, entries: list[LoraExpertEntry]) -> set[str]:
    return set().union(*(adapter_shapes(tmp / e.path) for e in entries))


def _make_routers(recipe: Recipe, entries: list[LoraExpertEntry], tmp: Path, base: CheckpointTensors) -> list[RouterEntry]:
    """Untrained routers, initialised to their anchor's static convex weights."""
    names = [e.name for e in entries]
    expert_anchors = np.asarray([e.anchor for e in entries])
    modules = sorted(_adapted_modules(tmp, entries))
    routers = []
    for i, spec in enumerate(recipe.routers):
        anchor = anchor_vector(spec.anchor, recipe.objectives, f"routers.{i}.anchor")
        on = [e.name for e in entries if np.allclose(e.anchor, anchor, atol=1e-9)]
        if on:
            raise HoEError(f"routers.{i}.anchor {anchor} is the anchor of expert '{on[0]}': a router serves a preference no expert sits on")
        if spec.covers is not None:
            unknown = [c for c in spec.covers if c not in names]
            if unknown:
                raise HoEError(f"routers.{i}.covers: unknown expert '{unknown[0]}'")
            covered = [names.index(c) for c in spec.covers]
        else:
            covered = nearest(expert_anchors, np.asarray(anchor), len(recipe.objectives))
        weights, residual = convex_weights(expert_anchors[covered], np.asarray(anchor))
        name = spec.name or "router-" + "-".join(f"{a:g}" for a in anchor)
        path = f"routers/{name}.safetensors"
        (tmp / "routers").mkdir(exist_ok=True)
        layer_inputs = {m: (base.shape(f"{m}.weight")[1], torch.float32) for m in modules}
        save_file(router_init(weights, layer_inputs), str(tmp / path))
        routers.append(RouterEntry(name=name, anchor=anchor, covers=[names[c] for c in covered], path=path,
                                   training={"initial_weights": [round(float(w), 6) for w in weights], "residual": residual}))
    return routers


def _keep_trained(old: Bundle, router: RouterEntry, entries: list[LoraExpertEntry], tmp: Path) -> RouterEntry:
    """The previous bundle's trained router in place of a new one, where the rebuild left it
    nothing to change: same name, anchor and covered experts, each expert unchanged."""
    previous = next((r for r in old.routers if r.name == router.name), None)
    if previous is None or not previous.trained or previous.covers != router.covers or not np.allclose(previous.anchor, router.anchor):
        return router
    fingerprints = {e.name: e.fingerprint for e in old.experts}
    if any(e.fingerprint is None or fingerprints.get(e.name) != e.fingerprint for e in entries if e.name in router.covers):
        return router
    files = [previous.path] + ([previous.training["curve"]] if previous.training and previous.training.get("curve") else [])
    if not all(not Path(f).is_absolute() and (old.folder / f).is_file() for f in files):
        return router
    for f in files:
        (tmp / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(old.folder / f, tmp / f)
    return previous.model_copy(deep=True)


def _resolve(root: Path, reference: str) -> Path:
    path = Path(reference).expanduser()
    return path if path.is_absolute() else (root / path)
