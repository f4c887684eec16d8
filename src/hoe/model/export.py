"""``hoe export``: one preference folded into a plain peft LoRA folder (or a full model), so peft
or vLLM can serve it without hoe. Only preferences that LoRA experts alone reach qualify: a
router's gates depend on the input and cannot be folded into fixed weights.

The folded adapter is exact, and its rank is the sum of the active experts' ranks (two rank-16
experts give rank 32), which can exceed what a server allows (vLLM's ``--max-lora-rank``, 16 by
default). ``rank`` recompresses each module to its best rank-r factors (an SVD of the small
core, no dense product) and records the relative error this costs, per module and overall."""

from __future__ import annotations

from pathlib import Path

import torch

from hoe.checkpoints.loading import hub_name_of, load_model, load_tokenizer, parse_dtype
from hoe.errors import HoEError
from hoe.experts.lora import LoraModule, add_deltas, read_lora, write_lora
from hoe.experts.svd import rerank_lora
from hoe.model.bundle import Bundle, load_bundle
from hoe.routing import PreferenceLike, parse_preference, route
from hoe.settings import flag_name
from hoe.utils.io import atomic_dir, check_output_dir, write_json


def static_gates(bundle: Bundle, preference: PreferenceLike) -> dict[str, float]:
    """Expert name -> gate for a λ served by LoRA experts alone; refuses router-routed λ."""
    routing = bundle.route(preference)
    names = bundle.pool_names()
    through_router = [names[i] for i in routing if i >= len(bundle.experts)]
    if through_router:
        raise HoEError(
            f"this preference routes through router expert '{through_router[0]}', whose gates depend on the input; "
            "export folds preferences that the LoRA experts alone reach"
        )
    return {names[i]: w for i, w in routing.items()}


def fold(bundle: Bundle, gates: dict[str, float]) -> dict[str, LoraModule]:
    """Σ g_k B_k A_k per module as one exact LoRA pair: B = [g_1 B_1 …], A = [A_1; …]."""
    parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for entry in bundle.experts:
        if entry.name not in gates:
            continue
        for module, lora in read_lora(bundle.expert_path(entry)).modules.items():
            parts.setdefault(module, []).append((gates[entry.name] * lora.scale * lora.B.float(), lora.A.float()))
    return {
        m: LoraModule(B=torch.cat([b for b, _ in p], 1), A=torch.cat([a for _, a in p], 0)) for m, p in parts.items()
    }


def recompress(modules: dict[str, LoraModule], rank: int) -> tuple[dict[str, LoraModule], dict]:
    """Each module at rank ≤ ``rank`` (modules already within it unchanged), with the relative
    Frobenius error per recompressed module and over the whole adapter."""
    if rank <= 0:
        raise HoEError(f"rank must be positive, got {rank}")
    out, errors, lost, total = {}, {}, 0.0, 0.0
    for name, module in modules.items():
        energy = float(module.delta().double().pow(2).sum())
        total += energy
        if module.rank <= rank:
            out[name] = module
            continue
        factors = rerank_lora(module.B, module.A, module.scale, rank)
        out[name] = LoraModule(B=factors.B.float(), A=factors.A.float())
        errors[name] = round(factors.relative_error, 6)
        lost += factors.relative_error**2 * energy
    overall = (lost / total) ** 0.5 if total > 0 else 0.0
    return out, {"rank": rank, "relative_error": round(overall, 6), "recompressed_modules": errors}


def export_preference(
    bundle_path: str | Path,
    preference: PreferenceLike,
    out: str | Path,
    *,
    merged: bool = False,
    overwrite: bool = False,
    dtype: str = "float32",
    rank: int | None = None,
) -> dict:
    """Write the model for one λ at ``out``: a peft LoRA folder, or with ``merged`` a full model.
    With ``rank``, the LoRA is recompressed to that rank and the record says what it cost."""
    if rank is not None and rank <= 0:
        raise HoEError(f"{flag_name('rank')} must be positive, got {rank}")
    if rank is not None and merged:
        raise HoEError(f"{flag_name('rank')} recompresses a LoRA export; a merged model (--merged) has no rank")
    bundle = load_bundle(bundle_path)
    vector = parse_preference(preference, bundle.objectives)
    gates = static_gates(bundle, vector)
    check_output_dir(
        out,
        overwrite,
        inputs=(bundle_path, bundle.spec.base_model),
        marker="config.json" if merged else "adapter_config.json",
    )
    modules = fold(bundle, gates)
    record = {
        "bundle": str(bundle_path),
        "preference": dict(zip(bundle.objectives, map(float, vector))),
        "gates": gates,
        "merged": merged,
        "rank": max((m.rank for m in modules.values()), default=0),
    }
    if rank is not None:
        modules, record["recompression"] = recompress(modules, rank)
        record["rank"] = max((m.rank for m in modules.values()), default=0)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        if merged:
            model = load_model(bundle.spec.base_model, dtype="float32")
            add_deltas(model, modules)
            model.to(parse_dtype(dtype)).save_pretrained(tmp, safe_serialization=True)
            load_tokenizer(bundle.spec.base_model).save_pretrained(tmp)
        else:
            write_lora(tmp, modules, base_model=hub_name_of(bundle.spec.base_model), dtype=parse_dtype(dtype))
        write_json(tmp / "hoe_export.json", record)
    return record


# vLLM accepts these --max-lora-rank values only (vllm/config/lora.py, MaxLoRARanks)
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def experts_only_gates(bundle: Bundle, preference: PreferenceLike) -> tuple[dict[str, float], bool]:
    """Expert name -> gate for λ routed over the LoRA experts alone (HoE without its routers), and
    whether the full bundle would have routed this λ through a router instead."""
    vector = parse_preference(preference, bundle.objectives)
    routing = route(bundle.pool()[: len(bundle.experts)], vector, len(bundle.objectives))
    names = bundle.pool_names()
    return {names[i]: w for i, w in routing.items()}, any(i >= len(bundle.experts) for i in bundle.route(vector))


def pad_to_rank(modules: dict[str, LoraModule], rank: int) -> dict[str, LoraModule]:
    """Every module at exactly ``rank`` (zero rows of A, zero columns of B: the same delta), so the
    adapter needs no ``rank_pattern``, which vLLM before 0.11 ignores (its scaling would be wrong)."""
    padded = {}
    for name, module in modules.items():
        missing = rank - module.rank
        A = torch.cat([module.A, module.A.new_zeros(missing, module.A.shape[1])]) if missing else module.A
        B = torch.cat([module.B, module.B.new_zeros(module.B.shape[0], missing)], 1) if missing else module.B
        padded[name] = LoraModule(B=B * module.scale, A=A)
    return padded


def grid_name(vector, objectives: list[str]) -> str:
    """A LoRA name vLLM's --lora-modules accepts (no '='): hoe-helpful-0.75-harmless-0.25."""
    return "hoe-" + "-".join(f"{name}-{weight:.4g}" for name, weight in zip(objectives, vector))


def export_grid(
    bundle_path: str | Path,
    preferences: list,
    out: str | Path,
    *,
    rank: int | None = None,
    dtype: str = "float32",
    overwrite: bool = False,
) -> dict:
    """One vLLM-ready LoRA per preference under ``out``, with ``manifest.json`` (name, λ, gates, and
    whether HoE itself would route that λ through a router) and ``vllm-serve.sh``: the command that
    serves them all, one LoRA name per preference, with the smallest ``--max-lora-rank`` that fits."""
    if rank is not None and not 0 < rank <= VLLM_MAX_LORA_RANKS[-1]:
        raise HoEError(f"{flag_name('rank')} must lie in [1, {VLLM_MAX_LORA_RANKS[-1]}] (vLLM's limit), got {rank}")
    bundle = load_bundle(bundle_path)
    vectors = [parse_preference(p, bundle.objectives) for p in preferences]
    if not vectors:
        raise HoEError("no preferences to export")
    check_output_dir(out, overwrite, inputs=(bundle_path, bundle.spec.base_model), marker="manifest.json")
    adapters, entries = {}, []
    for vector in vectors:
        gates, via_router = experts_only_gates(bundle, vector)
        modules = fold(bundle, gates)
        entry = {
            "name": grid_name(vector, bundle.objectives),
            "preference": dict(zip(bundle.objectives, map(float, vector))),
        }
        entry |= {"gates": gates, "hoe_routes_through_a_router": via_router, "folded_rank": _rank(modules)}
        if rank is not None:
            modules, cost = recompress(modules, rank)
            entry["recompression_relative_error"] = cost["relative_error"]
        adapters[entry["name"]] = modules
        entries.append(entry)
    top = max(_rank(m) for m in adapters.values())
    max_lora_rank = next((r for r in VLLM_MAX_LORA_RANKS if r >= top), None)
    if max_lora_rank is None:
        raise HoEError(f"the folded adapters have rank {top}, above vLLM's limit of 512: pass --rank to recompress")
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for entry in entries:
            write_lora(
                tmp / entry["name"],
                pad_to_rank(adapters[entry["name"]], top),
                base_model=hub_name_of(bundle.spec.base_model),
                dtype=parse_dtype(dtype),
            )
            entry["path"] = entry["name"]
        manifest = {"bundle": str(bundle_path), "objectives": bundle.objectives, "rank": top}
        manifest |= {"max_lora_rank": max_lora_rank, "adapters": entries}
        write_json(tmp / "manifest.json", manifest)
        (tmp / "vllm-serve.sh").write_text(vllm_command(bundle.spec.base_model, Path(out), entries, max_lora_rank))
        (tmp / "vllm-serve.sh").chmod(0o755)
    return manifest


def vllm_command(base_model: str, out: Path, entries: list[dict], max_lora_rank: int) -> str:
    modules = " \\\n    ".join(f"{e['name']}={out.resolve() / e['path']}" for e in entries)
    return (
        "#!/bin/sh\n# Serves every exported preference; a request picks one by its LoRA name as 'model'.\n"
        f"exec vllm serve {hub_name_of(base_model)} --enable-lora --max-lora-rank {max_lora_rank} "
        f"--max-loras {min(len(entries), 8)} \\\n  --lora-modules \\\n    {modules}\n"
    )


def _rank(modules: dict[str, LoraModule]) -> int:
    return max((m.rank for m in modules.values()), default=0)
