"""The HoE bundle: ``hoe.json`` plus expert folders (peft LoRA) and router weights (safetensors).

``hoe.json`` records the format version, the base model reference, the objectives in order,
the adapted modules, every LoRA expert with its anchor and path, and every router expert with
its anchor, the experts it covers, its weights file and how it was trained. Everything is
checked against the base checkpoint's tensor headers before any weight is loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from safetensors.torch import save_file

from hoe.checkpoints.tensors import read_safetensors_header
from hoe.errors import HoEError
from hoe.experts.lora import EXPERT_META, split_adapter_key
from hoe.model.router_weights import router_init
from hoe.routing import PreferenceLike, convex_weights, nearest, parse_preference, route
from hoe.settings import Identifier, first_error
from hoe.utils.io import read_json, remove_leftovers, run_tag, write_json

BUNDLE_FILE = "hoe.json"

FORMAT_VERSION = 1
# Two anchors closer than this (every coordinate) are the same anchor: no two experts share one,
# and a router never sits on an expert's.
ANCHOR_TOLERANCE = 1e-9
# A router's anchor is reachable when the convex weights of the experts it covers give it back to
# within this (their least-squares residual): otherwise its static mix serves another preference.
REACH_TOLERANCE = 1e-6


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraExpertEntry(_Strict):
    name: Identifier
    path: str  # relative to the bundle
    anchor: list[float]
    fingerprint: str | None = None  # of the recipe entry that built it
    source: dict | None = None


class RouterEntry(_Strict):
    name: Identifier
    anchor: list[float]
    covers: list[Identifier]  # names of the LoRA experts it mixes
    path: str  # safetensors, relative to the bundle
    trained: bool = False
    training: dict | None = None


class BundleSpec(_Strict):
    format_version: int
    base_model: str
    objectives: list[str]
    target_modules: list[str]
    experts: list[LoraExpertEntry]
    routers: list[RouterEntry] = []
    scorers: dict[str, str] = {}  # objective -> scorer spec (from the recipe); evaluation and training default to it

    @field_validator("objectives")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value) or not value:
            raise ValueError("objective names must be unique and at least one")
        return value


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


class Bundle:
    """A loaded and checked ``hoe.json``, with paths resolved against the bundle folder."""

    def __init__(self, folder: Path, spec: BundleSpec) -> None:
        self.folder, self.spec = folder, spec

    @property
    def objectives(self) -> list[str]:
        return self.spec.objectives

    @property
    def experts(self) -> list[LoraExpertEntry]:
        return self.spec.experts

    @property
    def routers(self) -> list[RouterEntry]:
        return self.spec.routers

    def expert_path(self, entry: LoraExpertEntry) -> Path:
        return self.folder / entry.path

    def router_path(self, entry: RouterEntry) -> Path:
        return self.folder / entry.path

    def fingerprint(self) -> str:
        """A digest of ``hoe.json`` as saved: it changes whenever an expert is remade or a router is
        trained, so cached or resumed outputs of another version of the bundle are told apart."""
        return hashlib.sha256((self.folder / BUNDLE_FILE).read_bytes()).hexdigest()[:16]

    def part_fingerprints(self) -> dict[str, str]:
        """Digests of ``hoe.json``'s router entries and of everything else in it, apart: answers that do
        not go through the routers (the soups, merging, the experts' full models) stay valid when only
        the routers are trained again, which an evaluation reads from these two."""
        saved = read_json(self.folder / BUNDLE_FILE)
        routers = saved.pop("routers", [])
        return {"experts_sha": _digest(saved), "routers_sha": _digest(routers)}

    def pool(self) -> np.ndarray:
        """Anchors of the routing pool: LoRA experts first, then router experts."""
        return np.asarray([e.anchor for e in self.experts] + [r.anchor for r in self.routers], dtype=np.float64)

    def pool_names(self) -> list[str]:
        return [e.name for e in self.experts] + [r.name for r in self.routers]

    def route(self, preference: PreferenceLike) -> dict[int, float]:
        """Pool index -> weight for one λ (Level 3)."""
        return route(self.pool(), parse_preference(preference, self.objectives), len(self.objectives))

    # ---- lookup by anchor ------------------------------------------------------------------------
    def expert_at(self, anchor: Sequence[float] | np.ndarray) -> LoraExpertEntry | None:
        """The LoRA expert sitting on ``anchor``, if any."""
        return next((e for e in self.experts if same_anchor(e.anchor, anchor)), None)

    def router_index_at(self, anchor: Sequence[float] | np.ndarray) -> int | None:
        """The index of the router at ``anchor``, if any."""
        return next((i for i, r in enumerate(self.routers) if same_anchor(r.anchor, anchor)), None)

    def single_expert(self, objective: str) -> LoraExpertEntry:
        """The expert whose anchor is one-hot on ``objective``; one line if the bundle has none."""
        vertex = [1.0 if name == objective else 0.0 for name in self.objectives]
        entry = self.expert_at(vertex)
        if entry is None:
            raise HoEError(
                f"the bundle has no single-objective expert for '{objective}' (anchor {vertex}), "
                "which soup, merged, rs, mod and experts need"
            )
        return entry

    def check_unique_anchors(self) -> None:
        for i, a in enumerate(self.experts):
            for b in self.experts[:i]:
                if same_anchor(a.anchor, b.anchor):
                    raise HoEError(
                        f"experts '{b.name}' and '{a.name}' share the anchor {a.anchor}; each anchor must be unique"
                    )

    # ---- routers ---------------------------------------------------------------------------------
    def check_free_anchor(self, anchor: Sequence[float] | np.ndarray, where: str = "") -> None:
        """One line if a LoRA expert sits on ``anchor``: a router serves only preferences between them."""
        on = self.expert_at(anchor)
        if on is not None:
            raise HoEError(
                f"{f'{where}: ' if where else ''}anchor {np.asarray(anchor, dtype=np.float64).tolist()} is the anchor "
                f"of expert '{on.name}': a router serves a preference no expert sits on"
            )

    def plan_router(
        self,
        anchor: Sequence[float] | np.ndarray,
        *,
        name: str | None = None,
        covers: list[str] | None = None,
        where: str = "",
    ) -> RouterEntry:
        """A new, untrained router at ``anchor`` over ``covers`` (default: the N nearest LoRA
        experts), with the static convex weights it starts from. One line if an expert sits on the
        anchor, ``covers`` names an unknown expert, or the covered experts cannot reach it."""
        anchor = np.asarray(anchor, dtype=np.float64)
        prefix = f"{where}: " if where else ""
        self.check_free_anchor(anchor, where)
        names = [e.name for e in self.experts]
        if covers is not None:
            unknown = [c for c in covers if c not in names]
            if unknown:
                raise HoEError(f"{prefix}covers: unknown expert '{unknown[0]}'")
            covered = [names.index(c) for c in covers]
        else:
            covered = nearest(self.pool()[: len(names)], anchor, len(self.objectives))
        weights, residual = convex_weights(np.asarray([self.experts[c].anchor for c in covered]), anchor)
        chosen = [names[c] for c in covered]
        if residual > REACH_TOLERANCE:
            raise HoEError(
                f"{prefix}the bundle's experts nearest to {anchor.tolist()} ({', '.join(chosen)}) cannot reach it "
                f"(residual {residual:.3g}); add an expert whose anchor surrounds it"
            )
        return RouterEntry(
            name=name or router_name(anchor),
            anchor=[float(a) for a in anchor],
            covers=chosen,
            path="",
            training={"initial_weights": [round(float(w), 6) for w in weights], "residual": residual},
        )

    def write_router(
        self, entry: RouterEntry, tensors: dict[str, torch.Tensor], *, curve: Path | None = None
    ) -> RouterEntry:
        """Write a router's weights (and training curve) into ``routers/`` by rename and point
        ``entry`` at them; ``hoe.json`` is written by ``save``. Returns ``entry``."""
        routers = self.folder / "routers"
        routers.mkdir(exist_ok=True)
        target = routers / f"{entry.name}.safetensors"
        _replace_atomically(target, lambda tmp: save_file(tensors, str(tmp)))
        entry.path = f"routers/{entry.name}.safetensors"
        if curve is not None:
            curve_target = routers / f"{entry.name}.curve.csv"
            _replace_atomically(curve_target, lambda tmp: shutil.copyfile(curve, tmp))
            entry.training = {**(entry.training or {}), "curve": f"routers/{curve_target.name}"}
        return entry

    def write_untrained_router(self, entry: RouterEntry, layer_inputs: dict[str, int]) -> RouterEntry:
        """Write the weights of an untrained router (its static mix exactly) for the given layers
        (module -> input features)."""
        layers = {module: (features, torch.float32) for module, features in layer_inputs.items()}
        return self.write_router(entry, router_init(entry.training["initial_weights"], layers))

    def adopt_trained_router(self, old: Bundle, router: RouterEntry) -> RouterEntry:
        """``old``'s trained router in place of the new, untrained ``router`` when a rebuild left it
        nothing to change (same name, anchor and covered experts, each expert unchanged by
        fingerprint): its files are copied in and its entry returned; otherwise ``router``."""
        previous = next((r for r in old.routers if r.name == router.name), None)
        if previous is None or not previous.trained or previous.covers != router.covers:
            return router
        if not same_anchor(previous.anchor, router.anchor):
            return router
        fingerprints = {e.name: e.fingerprint for e in old.experts}
        covered = [e for e in self.experts if e.name in router.covers]
        if any(e.fingerprint is None or fingerprints.get(e.name) != e.fingerprint for e in covered):
            return router
        files = [previous.path] + ([previous.training["curve"]] if (previous.training or {}).get("curve") else [])
        if not all(inside(old.folder, f) and (old.folder / f).is_file() for f in files):
            return router
        for f in files:
            (self.folder / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(old.folder / f, self.folder / f)
        return previous.model_copy(deep=True)

    # ---- experts ---------------------------------------------------------------------------------
    def expert_folder(self, name: str) -> Path:
        """Where the expert ``name`` lives (a producer writes its adapter there, then ``record_expert``)."""
        return self.folder / "experts" / name

    def record_expert(
        self, name: str, anchor: list[float], *, fingerprint: str | None = None, source: dict | None = None
    ) -> LoraExpertEntry:
        """Register the adapter now in ``experts/<name>`` as a LoRA expert: its metadata file beside
        it, its entry in the spec (written to ``hoe.json`` by ``save``)."""
        path = self.expert_folder(name).relative_to(self.folder).as_posix()
        write_json(
            self.folder / path / EXPERT_META,
            {
                "format": 1,
                "objectives": self.objectives,
                "anchor": anchor,
                "source": source,
                "fingerprint": fingerprint,
            },
        )
        entry = LoraExpertEntry(name=name, path=path, anchor=anchor, fingerprint=fingerprint, source=source)
        self.spec.experts.append(entry)
        return entry

    def check_code_trusted(self, scorers: dict[str, str], trusted: bool) -> None:
        """Refuse, in one line, to run code this bundle names (a ``py:`` scorer from its
        ``hoe.json``) unless the user said they trust it; ``scorers`` are the ones in use, by
        objective. The user's own ``py:`` scorers (their options or config) are theirs to run."""
        for objective, spec in scorers.items():
            if spec.startswith("py:") and self.spec.scorers.get(objective) == spec and not trusted:
                raise HoEError(
                    f"bundle '{self.folder}' names code to run as the scorer of '{objective}' ({spec}); pass "
                    f"--trust-bundle-code if you trust it, or give that objective another scorer"
                )

    def save(self, folder: Path | None = None) -> None:
        """Write ``hoe.json`` (by rename: a reader sees the old or the new one)."""
        write_json((folder or self.folder) / BUNDLE_FILE, spec_record(self.spec))


def same_anchor(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> bool:
    """Whether two anchors are one: every coordinate within ``ANCHOR_TOLERANCE`` (absolute only)."""
    return bool(np.all(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) <= ANCHOR_TOLERANCE))


def router_name(anchor: Sequence[float] | np.ndarray) -> str:
    """The default name of the router at ``anchor``: 'router-0.25-0.75'."""
    return "router-" + "-".join(f"{a:g}" for a in anchor)


def _replace_atomically(target: Path, write: Callable[[Path], object]) -> None:
    remove_leftovers(target)
    tmp = target.with_name(f".{target.name}.tmp-{run_tag()}")
    write(tmp)
    os.replace(tmp, target)


def spec_record(spec: BundleSpec) -> dict:
    """``hoe.json``'s content; an empty scorer mapping is left out (bundles from before it existed stay
    byte-identical)."""
    return spec.model_dump(exclude={"scorers"} if not spec.scorers else None)


def load_bundle(folder: str | Path) -> Bundle:
    """Read and check a bundle folder; raises HoEError with one line on any problem."""
    folder = Path(folder)
    path = folder / BUNDLE_FILE
    if not path.is_file():
        raise HoEError(f"'{folder}' is not a HoE bundle (no {BUNDLE_FILE})")
    raw = read_json(path, kind=None)
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version != FORMAT_VERSION:
        raise HoEError(f"{path}: unknown format version {version!r} (this hoe reads version {FORMAT_VERSION})")
    try:
        spec = BundleSpec.model_validate(raw)
    except ValidationError as exc:
        raise HoEError(f"{path}: {first_error(exc)}") from None
    bundle = Bundle(folder, spec)
    _check_entries(bundle)
    return bundle


def _check_anchor(anchor: list[float], objectives: list[str], what: str) -> None:
    if len(anchor) != len(objectives):
        raise HoEError(f"{what} has an anchor of {len(anchor)} values for {len(objectives)} objectives")
    if any(math.isnan(a) or a < 0 for a in anchor) or abs(sum(anchor) - 1) > 1e-6:
        raise HoEError(f"{what} has anchor {anchor}: it must be non-negative and sum to 1")


def inside(folder: Path, relative: str) -> bool:
    """Whether ``relative`` names a place inside ``folder`` (not absolute, no way out through
    ``..`` or a link)."""
    if not relative or Path(relative).is_absolute():
        return False
    root = folder.resolve()
    return (root / relative).resolve().is_relative_to(root)


def _check_inside(folder: Path, relative: str, what: str) -> None:
    if not inside(folder, relative):
        raise HoEError(f"{what}: path '{relative}' leads outside the bundle; a bundle's paths stay inside it")


def _check_entries(bundle: Bundle) -> None:
    names = [e.name for e in bundle.experts]
    if len(set(names)) != len(names):
        raise HoEError("bundle lists two experts with the same name")
    if not bundle.experts:
        raise HoEError("bundle has no LoRA experts")
    routers = [r.name for r in bundle.routers]
    if len(set(routers)) != len(routers) or set(routers) & set(names):
        raise HoEError("bundle lists two experts or routers with the same name")
    for entry in bundle.experts:
        _check_anchor(entry.anchor, bundle.objectives, f"expert '{entry.name}'")
        _check_inside(bundle.folder, entry.path, f"expert '{entry.name}'")
        folder = bundle.expert_path(entry)
        if not (folder / "adapter_config.json").is_file():
            raise HoEError(f"expert '{entry.name}': missing expert folder '{folder}' (no adapter_config.json)")
    for router in bundle.routers:
        _check_anchor(router.anchor, bundle.objectives, f"router '{router.name}'")
        unknown = [c for c in router.covers if c not in names]
        if unknown:
            raise HoEError(f"router '{router.name}' covers unknown expert '{unknown[0]}'")
        _check_inside(bundle.folder, router.path, f"router '{router.name}'")
        if not bundle.router_path(router).is_file():
            raise HoEError(f"router '{router.name}': missing weights file '{bundle.router_path(router)}'")


def adapter_shapes(folder: Path) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """module -> (A shape, B shape) from an adapter's safetensors header (no weights read)."""
    header, _ = read_safetensors_header(folder / "adapter_model.safetensors")
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, entry in header.items():
        found = split_adapter_key(key)
        if found:
            shapes.setdefault(found[0], {})[found[1]] = tuple(entry["shape"])
    return {m: (p["lora_A"], p["lora_B"]) for m, p in shapes.items() if len(p) == 2}


def check_against_base(bundle: Bundle, base_shapes: dict[str, tuple[int, ...]]) -> dict[str, dict[str, int]]:
    """Every expert module must exist in the base with matching shapes; every router must hold a
    weight per target module. Returns module -> {expert name: rank}."""
    ranks: dict[str, dict[str, int]] = {}
    for entry in bundle.experts:
        folder = bundle.expert_path(entry)
        if not (folder / "adapter_model.safetensors").is_file():
            raise HoEError(f"expert '{entry.name}': '{folder}' has no adapter_model.safetensors")
        for module, (a_shape, b_shape) in adapter_shapes(folder).items():
            weight = base_shapes.get(f"{module}.weight")
            if weight is None:
                raise HoEError(f"expert '{entry.name}' adapts '{module}', which the base model does not have")
            if (b_shape[0], a_shape[1]) != tuple(weight):
                raise HoEError(
                    f"expert '{entry.name}' does not match the base: module '{module}' maps {a_shape[1]}→{b_shape[0]} "
                    f"but the base layer maps {weight[1]}→{weight[0]}"
                )
            ranks.setdefault(module, {})[entry.name] = a_shape[0]
    for router in bundle.routers:
        header, _ = read_safetensors_header(bundle.router_path(router))
        for module in ranks:
            weight = header.get(f"{module}.weight")
            if weight is None or tuple(weight["shape"]) != (len(router.covers), base_shapes[f"{module}.weight"][1]):
                raise HoEError(
                    f"router '{router.name}' has no weight of shape [{len(router.covers)}, in] for module '{module}'"
                )
    return ranks
