"""The HoE bundle: ``hoe.json`` plus expert folders (peft LoRA) and router weights (safetensors).

``hoe.json`` records the format version, the base model reference, the objectives in order,
the adapted modules, every LoRA expert with its anchor and path, and every router expert with
its anchor, the experts it covers, its weights file and how it was trained. Everything is
checked against the base checkpoint's tensor headers before any weight is loaded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from hoe.errors import HoEError
from hoe.experts.lora import split_adapter_key
from hoe.models.tensors import read_safetensors_header

BUNDLE_FILE = "hoe.json"
FORMAT_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraExpertEntry(_Strict):
    name: str
    path: str  # relative to the bundle
    anchor: list[float]
    fingerprint: str | None = None  # of the recipe entry that built it
    source: dict | None = None


class RouterEntry(_Strict):
    name: str
    anchor: list[float]
    covers: list[str]  # names of the LoRA experts it mixes
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

    def pool(self):
        """Anchors of the routing pool: LoRA experts first, then router experts."""
        import numpy as np

        return np.asarray([e.anchor for e in self.experts] + [r.anchor for r in self.routers], dtype=np.float64)

    def pool_names(self) -> list[str]:
        return [e.name for e in self.experts] + [r.name for r in self.routers]

    def route(self, preference) -> dict[int, float]:
        """Pool index -> weight for one λ (Level 3)."""
        from hoe.routing import parse_preference, route

        return route(self.pool(), parse_preference(preference, self.objectives), len(self.objectives))

    def save(self, folder: Path | None = None) -> None:
        from hoe.utils.io import write_json

        write_json((folder or self.folder) / BUNDLE_FILE, spec_record(self.spec))


def spec_record(spec: BundleSpec) -> dict:
    """``hoe.json``'s content; an empty scorer mapping is left out (bundles from before it existed stay byte-identical)."""
    return spec.model_dump(exclude={"scorers"} if not spec.scorers else None)


def load_bundle(folder: str | Path) -> Bundle:
    """Read and check a bundle folder; raises HoEError with one line on any problem."""
    folder = Path(folder)
    path = folder / BUNDLE_FILE
    if not path.is_file():
        raise HoEError(f"'{folder}' is not a HoE bundle (no {BUNDLE_FILE})")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise HoEError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
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


def first_error(exc: ValidationError) -> str:
    """pydantic's first error as 'field.path: message'."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    return f"{where}: {error['msg']}"


def _check_anchor(anchor: list[float], objectives: list[str], what: str) -> None:
    if len(anchor) != len(objectives):
        raise HoEError(f"{what} has an anchor of {len(anchor)} values for {len(objectives)} objectives")
    if any(math.isnan(a) or a < 0 for a in anchor) or abs(sum(anchor) - 1) > 1e-6:
        raise HoEError(f"{what} has anchor {anchor}: it must be non-negative and sum to 1")


def _check_entries(bundle: Bundle) -> None:
    names = [e.name for e in bundle.experts]
    if len(set(names)) != len(names):
        raise HoEError("bundle lists two experts with the same name")
    if not bundle.experts:
        raise HoEError("bundle has no LoRA experts")
    for entry in bundle.experts:
        _check_anchor(entry.anchor, bundle.objectives, f"expert '{entry.name}'")
        folder = bundle.expert_path(entry)
        if not (folder / "adapter_config.json").is_file():
            raise HoEError(f"expert '{entry.name}': missing expert folder '{folder}' (no adapter_config.json)")
    for router in bundle.routers:
        _check_anchor(router.anchor, bundle.objectives, f"router '{router.name}'")
        unknown = [c for c in router.covers if c not in names]
        if unknown:
            raise HoEError(f"router '{router.name}' covers unknown expert '{unknown[0]}'")
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
                raise HoEError(f"router '{router.name}' has no weight of shape [{len(router.covers)}, in] for module '{module}'")
    return ranks
