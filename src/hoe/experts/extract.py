"""``hoe extract``: a LoRA expert from a fine-tuned model by task-SVD, streamed tensor by tensor."""

from __future__ import annotations

import math
import resource
import time
from pathlib import Path
from typing import TypedDict

import torch
from pydantic import Field
from tqdm.auto import tqdm

from hoe.checkpoints.loading import hub_name_of, is_lora_folder, parse_dtype, resolve_checkpoint
from hoe.checkpoints.tensors import CheckpointTensors
from hoe.errors import HoEError
from hoe.experts.lora import LoraModule, read_lora, write_lora
from hoe.experts.modules import LinearSpec, check_adapter_shapes, check_same_architecture, linear_layers, select_targets
from hoe.experts.svd import LowRankFactors, SvdBackend, rerank_lora, single_threaded_lapack, task_svd
from hoe.settings import DtypeName, Settings, flag_name
from hoe.utils.io import atomic_dir, check_output_dir, write_json

REPORT_NAME = "extract_report.json"


class ModuleRecord(TypedDict):
    """One compressed module: its shape (out, in), rank, ‖τ‖_F and what the rank kept of it."""

    module: str
    shape: list[int]
    rank: int
    delta_norm: float
    retained_energy: float
    relative_error: float


class ExtractTotals(TypedDict, total=False):
    modules: int
    zero_delta_modules: int
    adapter_parameters: int
    mean_relative_error: float
    overall_relative_error: float  # ‖τ − B A‖_F / ‖τ‖_F over every module together
    left_out_delta_norm: float  # of the changed tensors the adapter cannot hold (embeddings, norms)
    wall_time_s: float
    peak_rss_mb: float
    cuda_peak_mb: float


class ExtractReport(TypedDict):
    """What ``extract_expert`` returns and writes as ``extract_report.json``."""

    base: str
    finetuned: str
    source: str  # "full" or "lora"
    settings: dict
    modules: list[ModuleRecord]
    left_out: dict[str, float | None]
    totals: ExtractTotals


def extract_summary(report: ExtractReport, out: str | Path) -> str:
    """The one line ``hoe extract`` prints."""
    totals = report["totals"]
    return (
        f"{out}: {totals['modules']} modules, {totals['adapter_parameters']:,} parameters, "
        f"mean relative error {totals['mean_relative_error']:.4f}, {totals['wall_time_s']:.1f} s, "
        f"peak RSS {totals['peak_rss_mb']:.0f} MB (report: {Path(out) / REPORT_NAME})"
    )


class ExtractSettings(Settings):
    """One ``extract`` job: everything that decides the expert, recorded in its report (a recipe's
    expert entry gives ``rank`` and ``svd``)."""

    rank: int = Field(16, gt=0, description="Rank of every module (the cap when energy is given).")
    rank_attn: int | None = Field(None, gt=0, description="Rank of attention projections (overrides rank).")
    rank_mlp: int | None = Field(None, gt=0, description="Rank of MLP projections (overrides rank).")
    energy: float | None = Field(
        None, gt=0, le=1, description="Smallest rank keeping this share of ||tau||_F^2, capped by the ranks."
    )
    svd: SvdBackend = Field("exact", description="SVD backend: exact | randomized.")
    dtype: DtypeName = Field("float32", description="dtype of the saved factors (computation is float32/float64).")
    device: str = Field("cpu", description="cpu, cuda or cuda:N.")
    target_modules: list[str] | None = Field(
        None, description="Module names (peft rules); default: every linear layer of the blocks."
    )
    seed: int = Field(0, description="Seed of the randomized backend.")

    def validate_machine(self) -> None:
        """What only the machine can answer: is the asked-for device there."""
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise HoEError(f"{flag_name('device')} is {self.device}, but no CUDA device is available")

    def rank_for(self, spec: LinearSpec) -> int:
        if spec.family == "attn" and self.rank_attn:
            return self.rank_attn
        if spec.family == "mlp" and self.rank_mlp:
            return self.rank_mlp
        return self.rank


def extract_expert(
    base: str | Path,
    finetuned: str | Path,
    out: str | Path,
    settings: ExtractSettings | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Write a peft LoRA folder at ``out`` whose B A approximates ``finetuned − base`` per linear layer.

    ``finetuned`` is a full model (any reference form) or a peft LoRA folder, which is re-ranked
    without forming dense products. Returns the report, also saved as ``extract_report.json``.
    """
    settings = settings or ExtractSettings()
    settings.validate_machine()
    check_output_dir(out, overwrite, inputs=(base, finetuned), marker="adapter_config.json")
    if str(base) == str(finetuned) or (Path(base).exists() and Path(base).resolve() == Path(finetuned).resolve()):
        raise HoEError(f"--finetuned is the base itself ('{finetuned}'): there is no task vector to extract")
    start = time.perf_counter()
    if settings.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    base_folder = resolve_checkpoint(base)
    base_tensors = CheckpointTensors(base_folder)
    targets = select_targets(linear_layers(base_folder, base_tensors.shapes()), settings.target_modules)
    with single_threaded_lapack():
        factors, left_out, source = _factorise(finetuned, base_folder, base_tensors, targets, settings, progress)
    modules = {name: LoraModule(B=f.B, A=f.A) for name, f in factors.items() if f.rank > 0}
    if not modules:
        raise HoEError(f"'{finetuned}' does not differ from the base in any targeted module: nothing to extract")
    report = _report(factors, left_out, settings, source, str(base), str(finetuned))
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_lora(
            tmp,
            modules,
            base_model=hub_name_of(base),
            dtype=parse_dtype(settings.dtype),
            fan_in_fan_out=any(t.transposed for t in targets),
            candidates=[t.module for t in targets],
        )
        report["totals"]["wall_time_s"] = round(time.perf_counter() - start, 3)
        report["totals"]["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        if settings.device.startswith("cuda"):
            report["totals"]["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        write_json(tmp / REPORT_NAME, report)
    return report


def _factorise(finetuned, base_folder: Path, base_tensors: CheckpointTensors, targets, settings, progress):
    """Factors, left-out delta norms and the input kind, from a LoRA (re-rank) or a full model (task-SVD)."""
    ft_path = Path(str(finetuned)).expanduser()
    if is_lora_folder(ft_path):
        layers = linear_layers(base_folder, base_tensors.shapes())
        return (*_from_lora(ft_path, base_tensors, layers, targets, settings, progress), "lora")
    ft_folder = resolve_checkpoint(finetuned)
    ft_tensors = CheckpointTensors(ft_folder)
    check_same_architecture(base_folder, ft_folder, base_tensors, ft_tensors)
    return (*_from_full(base_tensors, ft_tensors, targets, settings, progress), "full")


def _from_full(base: CheckpointTensors, ft: CheckpointTensors, targets, settings, progress):
    """Stream tensor pairs: linear targets get task-SVD, everything else has its delta norm recorded."""
    device = torch.device(settings.device)
    by_weight = {t.weight: t for t in targets}
    factors: dict[str, LowRankFactors] = {}
    left_out: dict[str, float] = {}
    names = [n for n in base.names() if n in ft]
    for name in tqdm(names, desc="task-SVD", unit="tensor", disable=not progress):
        delta = ft.get(name).to(device, torch.float32) - base.get(name).to(device, torch.float32)
        spec = by_weight.get(name)
        if spec is None or delta.ndim != 2:
            left_out[name] = float(delta.norm())
            continue
        if spec.transposed:
            delta = delta.T
        factors[spec.module] = task_svd(
            delta, settings.rank_for(spec), energy=settings.energy, method=settings.svd, seed=settings.seed
        ).cpu()
    return factors, left_out


def _from_lora(folder: Path, base: CheckpointTensors, layers, targets, settings, progress):
    """Re-rank each module of a LoRA input by QR + small SVD; shapes are checked against the base."""
    adapter = read_lora(folder)
    check_adapter_shapes(adapter, folder, base, layers)
    device = torch.device(settings.device)
    by_module = {t.module: t for t in targets}
    factors: dict[str, LowRankFactors] = {}
    left_out: dict[str, float] = {}
    for name, module in tqdm(adapter.modules.items(), desc="re-rank", unit="module", disable=not progress):
        if name not in by_module:
            left_out[name] = float(module.delta().norm())
            continue
        factors[name] = rerank_lora(
            module.B.to(device),
            module.A.to(device),
            module.scale,
            settings.rank_for(by_module[name]),
            energy=settings.energy,
        ).cpu()
    for extra in adapter.extra_config.get("modules_to_save") or []:
        left_out[f"{extra} (modules_to_save)"] = float("nan")
    return factors, left_out


def _report(
    factors: dict[str, LowRankFactors], left_out: dict[str, float], settings, source, base, finetuned
) -> ExtractReport:
    per_module = [
        {
            "module": name,
            "shape": [int(f.B.shape[0]), int(f.A.shape[1])],
            "rank": f.rank,
            "delta_norm": round(math.sqrt(f.total_energy), 6),
            "retained_energy": round(f.retained_energy, 6),
            "relative_error": round(f.relative_error, 6),
        }
        for name, f in factors.items()
    ]
    total_energy = sum(f.total_energy for f in factors.values())
    discarded = sum(f.total_energy * (1 - f.retained_energy) for f in factors.values())
    params = sum(f.rank * (f.B.shape[0] + f.A.shape[1]) for f in factors.values())
    return {
        "base": base,
        "finetuned": finetuned,
        "source": source,
        "settings": settings.model_dump(),
        "modules": per_module,
        "left_out": {name: (None if math.isnan(v) else round(v, 6)) for name, v in left_out.items()},
        "totals": {
            "modules": len(per_module),
            "zero_delta_modules": sum(1 for f in factors.values() if f.rank == 0),
            "adapter_parameters": int(params),
            "mean_relative_error": round(sum(m["relative_error"] for m in per_module) / max(1, len(per_module)), 6),
            "overall_relative_error": round(math.sqrt(discarded / total_energy), 6) if total_energy > 0 else 0.0,
            "left_out_delta_norm": round(math.sqrt(sum(v * v for v in left_out.values() if not math.isnan(v))), 6),
        },
    }
