"""``hoe merge``: a multi-objective LoRA expert from several experts (method doc, Level 1, step 3).

Per module: gather each input's delta (LoRA factors, or the dense W_i − W_0 of a full model),
merge them with the chosen method, compress the result by task-SVD to the requested rank, and
write a standard peft LoRA folder. The expert's anchor in preference space is recorded beside
it in ``hoe_expert.json``.
"""

from __future__ import annotations

import hashlib
import math
import resource
import time
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from pydantic import Field, field_validator
from tqdm.auto import tqdm

from hoe.checkpoints.loading import hub_name_of, is_lora_folder, parse_dtype, resolve_checkpoint
from hoe.checkpoints.tensors import CheckpointTensors
from hoe.errors import HoEError
from hoe.experts.lora import EXPERT_META, LoraAdapter, LoraModule, read_lora, write_lora
from hoe.experts.modules import check_adapter_shapes, check_same_architecture, linear_layers, select_targets
from hoe.experts.svd import LowRankFactors, SvdBackend, rerank_lora, single_threaded_lapack, task_svd
from hoe.merging.merge_methods import get_method
from hoe.settings import DtypeName, Settings, flag_name
from hoe.utils.io import atomic_dir, check_output_dir, read_json, write_json

REPORT_NAME = "merge_report.json"


class MergeReport(TypedDict):
    """What ``merge_experts`` returns and writes as ``merge_report.json``."""

    method: str
    parameters: dict  # the method's, defaults filled in
    weights: list[float]
    experts: list[str]
    objectives: list[str]
    anchor: list[float]  # Σ w_i anchor_i / Σ w_i, in the objectives' order
    settings: dict
    modules: list[dict]  # per module: rank, what the final compression kept
    totals: dict  # modules, factored_modules, mean_relative_error, wall_time_s, peak_rss_mb


def merge_summary(report: MergeReport, out: str | Path) -> str:
    """The one line ``hoe merge`` prints."""
    anchor = ", ".join(f"{n}={a:g}" for n, a in zip(report["objectives"], report["anchor"]))
    return (
        f"{out}: {report['method']} merge of {len(report['experts'])} experts at rank {report['settings']['rank']}, "
        f"anchor ({anchor}), {report['totals']['modules']} modules, {report['totals']['wall_time_s']:.1f} s "
        f"(report: {Path(out) / REPORT_NAME})"
    )


class MergeSettings(Settings):
    """One ``merge`` job (a recipe's merge entry gives method, weights, params and rank)."""

    method: str = Field("linear", description="linear | ties | dare_linear | dare_ties | pcb | tsv.")
    weights: list[float] | None = Field(
        None, description="Non-negative weights, one per expert, with a positive sum (default: equal)."
    )
    rank: int = Field(16, gt=0, description="Rank of the merged expert.")
    params: dict = Field(default_factory=dict, description="The method's parameters (density, seed, ...).")
    svd: SvdBackend = Field(
        "randomized", description="SVD backend of the final compression: randomized (within 1% of exact) | exact."
    )
    dtype: DtypeName = Field("float32", description="dtype of the saved factors.")
    device: str = Field("cpu", description="cpu, cuda or cuda:N.")
    target_modules: list[str] | None = Field(None, description="Module names (peft rules); default: all shared.")
    objectives: list[str] | None = Field(None, description="Objective names of the experts, in order (for the anchor).")

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        try:
            get_method(value)
        except HoEError as exc:
            raise ValueError(str(exc)) from None
        return value

    def validate_for(self, count: int) -> dict:
        """What depends on the experts given, checked before any weight is read; returns the
        method's full parameters."""
        if count < 2:
            raise HoEError(f"merging needs at least two experts, got {count}")
        weights = self.weights if self.weights is not None else [1.0 / count] * count
        if len(weights) != count:
            raise HoEError(f"{flag_name('weights')} has {len(weights)} values for {count} experts")
        if any(w < 0 for w in weights):
            raise HoEError(f"{flag_name('weights')} must be non-negative, got {weights}")
        if sum(weights) <= 0:
            raise HoEError(f"{flag_name('weights')} are all zero: at least one expert must have a positive weight")
        if self.objectives is not None and len(self.objectives) != count:
            raise HoEError(f"{flag_name('objectives')} has {len(self.objectives)} names for {count} experts")
        if self.objectives is not None and len(set(self.objectives)) != len(self.objectives):
            raise HoEError(f"{flag_name('objectives')} names an objective twice: {', '.join(self.objectives)}")
        self.weights = [float(w) for w in weights]
        return get_method(self.method).resolve(self.params)


class _Input:
    """One expert: a LoRA adapter (factors per module) or a full model (dense deltas on demand)."""

    def __init__(self, ref, base_folder: Path, base: CheckpointTensors, layers):
        self.ref = str(ref)
        path = Path(self.ref).expanduser()
        self.adapter: LoraAdapter | None = None
        self.tensors: CheckpointTensors | None = None
        if is_lora_folder(path):
            self.adapter = read_lora(path)
            check_adapter_shapes(self.adapter, path, base, layers)
            self.meta = _read_meta(path)
        else:
            folder = resolve_checkpoint(ref)
            self.tensors = CheckpointTensors(folder)
            check_same_architecture(base_folder, folder, base, self.tensors, label=f"expert '{ref}'")
            self.meta = None

    def modules(self, targets) -> set[str]:
        if self.adapter is not None:
            return set(self.adapter.modules)
        return {t.module for t in targets}

    def factors(self, module: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        lora = self.adapter.modules.get(module) if self.adapter is not None else None
        return None if lora is None else (lora.scale * lora.B.double(), lora.A.double())

    def dense(self, spec, base: CheckpointTensors, base_weight: torch.Tensor | None, device) -> torch.Tensor:
        """This input's delta of one module as an (out, in) float32 matrix; ``base_weight`` is
        read once per module by the caller, when some input is a full model."""
        if self.adapter is not None:
            lora = self.adapter.modules.get(spec.module)
            if lora is None:
                return torch.zeros(spec.out_in(base.shape(spec.weight)), device=device)
            return lora.delta().to(device)
        delta = self.tensors.get(spec.weight).to(device, torch.float32) - base_weight
        return delta.T if spec.transposed else delta


def _read_meta(folder: Path) -> dict | None:
    path = folder / EXPERT_META
    return read_json(path) if path.is_file() else None


def _module_seed(seed: int, module: str) -> int:
    """A seed per module that does not depend on the order modules are visited in."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{module}".encode()).digest()[:8], "little")


def anchor_of(
    inputs: list[_Input], weights: list[float], objectives: list[str] | None
) -> tuple[list[str], list[float]]:
    """Where the merged expert sits in preference space: the normalised weights over the inputs'
    own anchors when every input records one over the same objectives, else over the inputs."""
    share = [w / sum(weights) for w in weights]
    metas = [i.meta for i in inputs]
    if objectives is None and all(metas) and len({tuple(m["objectives"]) for m in metas}) == 1:
        names = list(metas[0]["objectives"])
        anchor = [sum(s * m["anchor"][k] for s, m in zip(share, metas)) for k in range(len(names))]
        return names, [round(a, 6) for a in anchor]
    names = objectives or [Path(i.ref).name or i.ref for i in inputs]
    return names, [round(s, 6) for s in share]


def merge_experts(
    base: str | Path,
    experts: list[str | Path],
    out: str | Path,
    settings: MergeSettings | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Merge ``experts`` (LoRA folders or full models of ``base``) into one LoRA expert at ``out``."""
    settings = settings or MergeSettings()
    params = settings.validate_for(len(experts))
    method = get_method(settings.method)
    check_output_dir(out, overwrite, inputs=(base, *experts), marker="adapter_config.json")
    start = time.perf_counter()
    base_folder = resolve_checkpoint(base)
    base_tensors = CheckpointTensors(base_folder)
    layers = linear_layers(base_folder, base_tensors.shapes())
    targets = select_targets(layers, settings.target_modules)
    inputs = [_Input(e, base_folder, base_tensors, layers) for e in experts]
    wanted = set().union(*(i.modules(targets) for i in inputs))
    specs = [t for t in targets if t.module in wanted]
    if not specs:
        raise HoEError("the experts adapt none of the selected modules")
    weights = torch.tensor(settings.weights, dtype=torch.float64)
    device = torch.device(settings.device)
    merged: dict[str, LowRankFactors] = {}
    factored_modules = 0
    any_full = any(i.tensors is not None for i in inputs)
    with single_threaded_lapack():
        for spec in tqdm(specs, desc=f"merge ({settings.method})", unit="module", disable=not progress):
            factors = [i.factors(spec.module) for i in inputs]
            if method.factored is not None and all(i.adapter is not None for i in inputs):
                present = [(f, w) for f, w in zip(factors, weights) if f is not None]
                pairs = [(b.to(device), a.to(device)) for (b, a), _ in present]
                B, A = method.factored(
                    pairs, torch.stack([w for _, w in present]), **{k: v for k, v in params.items() if k != "seed"}
                )
                merged[spec.module] = rerank_lora(B, A, 1.0, settings.rank).cpu()
                factored_modules += 1
                continue
            base_weight = base_tensors.get(spec.weight).to(device, torch.float32) if any_full else None
            deltas = torch.stack([i.dense(spec, base_tensors, base_weight, device) for i in inputs])
            generator = np.random.default_rng(_module_seed(int(params.get("seed", 0)), spec.module))
            delta = method.function(deltas, weights.to(device), generator=generator, **params)
            merged[spec.module] = task_svd(
                delta, settings.rank, method=settings.svd, seed=int(params.get("seed", 0))
            ).cpu()
    objectives, anchor = anchor_of(inputs, settings.weights, settings.objectives)
    report = _report(merged, settings, params, experts, objectives, anchor, factored_modules)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_lora(
            tmp,
            {name: LoraModule(B=f.B, A=f.A) for name, f in merged.items() if f.rank > 0},
            base_model=hub_name_of(base),
            dtype=parse_dtype(settings.dtype),
            fan_in_fan_out=any(s.transposed for s in specs),
            candidates=[t.module for t in targets],
        )
        write_json(
            tmp / EXPERT_META,
            {
                "format": 1,
                "objectives": objectives,
                "anchor": anchor,
                "source": {
                    "kind": "merge",
                    "method": settings.method,
                    "experts": [str(e) for e in experts],
                    "weights": settings.weights,
                },
            },
        )
        report["totals"]["wall_time_s"] = round(time.perf_counter() - start, 3)
        report["totals"]["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        write_json(tmp / REPORT_NAME, report)
    return report


def _report(merged, settings: MergeSettings, params, experts, objectives, anchor, factored_modules) -> dict:
    modules = [
        {
            "module": name,
            "rank": f.rank,
            "merged_norm": round(math.sqrt(f.total_energy), 6),
            "retained_energy": round(f.retained_energy, 6),
            "relative_error": round(f.relative_error, 6),
        }
        for name, f in merged.items()
    ]
    settings_record = settings.model_dump(exclude={"params"})
    return {
        "method": settings.method,
        "parameters": params,
        "weights": settings.weights,
        "experts": [str(e) for e in experts],
        "objectives": objectives,
        "anchor": anchor,
        "settings": settings_record,
        "modules": modules,
        "totals": {
            "modules": len(modules),
            "factored_modules": factored_modules,
            "mean_relative_error": round(sum(m["relative_error"] for m in modules) / max(1, len(modules)), 6),
        },
    }
