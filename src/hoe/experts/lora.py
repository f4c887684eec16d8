"""Read and write standard peft LoRA folders (``adapter_config.json`` + ``adapter_model.safetensors``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hoe.errors import HoEError
from hoe.utils.io import read_json

PEFT_PREFIX = "base_model.model."
WEIGHTS_NAME = "adapter_model.safetensors"
EXPERT_META = "hoe_expert.json"  # beside a hoe-made adapter: its objectives, anchor and source


@dataclass
class LoraModule:
    """One adapted linear layer: its delta is ``scale · B @ A`` with B (out, r) and A (r, in)."""

    B: torch.Tensor
    A: torch.Tensor
    scale: float = 1.0

    @property
    def rank(self) -> int:
        return int(self.A.shape[0])

    def delta(self) -> torch.Tensor:
        return self.scale * (self.B.float() @ self.A.float())


@dataclass
class LoraAdapter:
    """A LoRA adapter as module name -> factors, plus the config entries that matter to HoE."""

    modules: dict[str, LoraModule]
    base_model: str | None = None
    fan_in_fan_out: bool = False
    extra_config: dict = field(default_factory=dict)


def split_adapter_key(key: str) -> tuple[str, str] | None:
    """(module name, 'lora_A' | 'lora_B') of a saved peft LoRA tensor name, None for other tensors."""
    for part in ("lora_A", "lora_B"):
        marker = f".{part}."
        if marker in key:
            return key.split(marker)[0].removeprefix(PEFT_PREFIX), part
    return None


def _pattern_key(patterns, module: str) -> str:
    """peft's rule for rank_pattern/alpha_pattern keys: the first key that matches a dotted
    suffix of the module name as a regular expression."""
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module):
            return key
    return module


def _scale(config: dict, module: str) -> tuple[int, float]:
    """Rank and scaling of one module under peft's rules (rank/alpha patterns, rsLoRA)."""
    rank_pattern = config.get("rank_pattern") or {}
    alpha_pattern = config.get("alpha_pattern") or {}
    r = rank_pattern.get(_pattern_key(rank_pattern, module), config["r"])
    alpha = alpha_pattern.get(_pattern_key(alpha_pattern, module), config.get("lora_alpha", r))
    scale = alpha / (r**0.5) if config.get("use_rslora") else alpha / r
    return r, float(scale)


def read_lora(folder: str | Path) -> LoraAdapter:
    """Load a peft LoRA folder (safetensors, or a legacy .bin read with ``weights_only=True``)."""
    folder = Path(folder)
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise HoEError(f"'{folder}' is not a LoRA adapter folder (no adapter_config.json)")
    config = read_json(config_file)
    if config.get("peft_type", "LORA") != "LORA":
        raise HoEError(f"'{folder}' is a {config.get('peft_type')} adapter; only LoRA adapters are supported")
    if config.get("use_dora"):
        raise HoEError(f"'{folder}' is a DoRA adapter; its magnitude vector is not a low-rank delta")
    if not _is_positive_int(config.get("r")):
        raise HoEError(f"{config_file}: 'r' (the LoRA rank) must be a positive integer, got {config.get('r')!r}")
    state = _read_adapter_weights(folder)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        found = split_adapter_key(key)
        if found:
            pairs.setdefault(found[0], {})[found[1]] = tensor
    modules = {}
    for module, pair in pairs.items():
        if set(pair) != {"lora_A", "lora_B"}:
            raise HoEError(f"adapter '{folder}' has an incomplete pair for module '{module}'")
        rank, scale = _scale(config, module)
        _check_pair(folder, module, pair["lora_A"], pair["lora_B"], rank)
        modules[module] = LoraModule(B=pair["lora_B"], A=pair["lora_A"], scale=scale)
    if not modules:
        raise HoEError(f"adapter '{folder}' holds no LoRA weights")
    return LoraAdapter(
        modules=modules,
        base_model=config.get("base_model_name_or_path"),
        fan_in_fan_out=bool(config.get("fan_in_fan_out")),
        extra_config={k: config.get(k) for k in ("modules_to_save", "target_modules")},
    )


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_pair(folder: Path, module: str, a: torch.Tensor, b: torch.Tensor, rank: int) -> None:
    """B (out × r) A (r × in) with the rank its config gives: peft and vLLM would refuse anything
    else, and a product of mismatched factors is no delta at all."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
        raise HoEError(
            f"adapter '{folder}', module '{module}': lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)} "
            "do not make a low-rank product (B is out × r, A is r × in)"
        )
    if a.shape[0] != rank:
        raise HoEError(
            f"adapter '{folder}', module '{module}': the weights have rank {a.shape[0]}, adapter_config.json "
            f"says {rank}"
        )


def _read_adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / WEIGHTS_NAME).is_file():
        from safetensors.torch import load_file

        return load_file(folder / WEIGHTS_NAME)
    if (folder / "adapter_model.bin").is_file():
        return torch.load(folder / "adapter_model.bin", map_location="cpu", weights_only=True)
    raise HoEError(f"adapter folder '{folder}' has no adapter_model.safetensors")


def _target_modules(module_names: list[str], all_candidates: list[str] | None) -> list[str]:
    """Suffixes (``q_proj``...) when every candidate of those types is adapted, else full names."""
    suffixes = sorted({name.rsplit(".", 1)[-1] for name in module_names})
    if all_candidates is not None:
        covered = [c for c in all_candidates if c.rsplit(".", 1)[-1] in suffixes]
        if set(covered) == set(module_names):
            return suffixes
        return sorted(module_names)
    return suffixes


def write_lora(
    folder: str | Path,
    modules: dict[str, LoraModule],
    *,
    base_model: str | None,
    dtype: torch.dtype = torch.float32,
    fan_in_fan_out: bool = False,
    candidates: list[str] | None = None,
) -> dict:
    """Save factors as a standard peft LoRA folder with scaling 1 (lora_alpha = r per module).

    The most common rank becomes ``r``; others go to ``rank_pattern``/``alpha_pattern`` under their
    full module names, as mergekit does. The config is written as peft's ``LoraConfig`` fields
    (peft fills the rest with its defaults on load); peft itself is not imported, since that
    alone costs seconds. Returns the adapter config as written.
    """
    from safetensors.torch import save_file

    if not modules:
        raise HoEError("nothing to save: every selected module has a zero delta")
    ranks = {name: m.rank for name, m in modules.items()}
    common = max(sorted(set(ranks.values())), key=list(ranks.values()).count)
    pattern = {name: r for name, r in ranks.items() if r != common}
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": common,
        "lora_alpha": common,
        "rank_pattern": pattern,
        "alpha_pattern": dict(pattern),
        "target_modules": _target_modules(list(modules), candidates),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": fan_in_fan_out,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    tensors = {}
    for name, module in modules.items():
        # scaling is 1: fold any input scale into B
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = module.A.to(dtype).contiguous()
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = (module.B * module.scale).to(dtype).contiguous()
    save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    return config


def add_deltas(model, modules: dict[str, LoraModule]) -> None:
    """Fold LoRA modules into a transformers model's weights in place: W += scale · B A."""
    with torch.no_grad():
        for name, module in modules.items():
            target = model.get_submodule(name).weight
            target += module.delta().to(target.dtype)
