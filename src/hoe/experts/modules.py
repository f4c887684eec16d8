"""Which weights of a model are linear layers that a LoRA expert can carry.

Found from the checkpoint's tensor names and shapes plus ``config.json``, without importing the
model's code: importing a transformers modeling module costs seconds, more than extracting a
small model. The test suite checks this agrees with the ``nn.Linear`` modules of the real classes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hoe.errors import HoEError
from hoe.utils.io import read_json

TIED_HEADS = {"lm_head.weight"}  # absent from checkpoints that tie it to the input embedding

ATTENTION_HINTS = ("attn", "attention")
MLP_HINTS = ("mlp", "feed_forward", "ffn")
EMBEDDING_HINTS = ("embed", "wte", "wpe", "lm_head", "embed_out")
# architectures whose projections are transformers' Conv1D, with weights stored (in, out)
CONV1D_MODEL_TYPES = {"gpt2", "openai-gpt", "imagegpt", "decision_transformer"}


@dataclass(frozen=True)
class LinearSpec:
    """A linear layer: module name, its weight's tensor name, and whether the weight is stored (in, out)."""

    module: str
    weight: str
    transposed: bool = False  # GPT-2's Conv1D

    def out_in(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(out, in) features of the layer from its stored weight shape."""
        return (shape[1], shape[0]) if self.transposed else (shape[0], shape[1])

    @property
    def family(self) -> str:
        """'attn', 'mlp' or 'other': the groups that --rank-attn / --rank-mlp address."""
        lowered = self.module.lower()
        if any(h in lowered for h in ATTENTION_HINTS):
            return "attn"
        if any(h in lowered for h in MLP_HINTS):
            return "mlp"
        return "other"


def read_config(folder: str | Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise HoEError(f"'{folder}' has no config.json")
    return read_json(path)


def _vocab_size(config: dict) -> int | None:
    for source in (config, config.get("text_config") or {}):
        if "vocab_size" in source:
            return int(source["vocab_size"])
    return None


def linear_layers(folder: str | Path, shapes: dict[str, tuple[int, ...]]) -> list[LinearSpec]:
    """All linear layers except embeddings and the output head: 2-D ``*.weight`` tensors that are
    not embedding tables (by name, or by a vocabulary-sized dimension)."""
    config = read_config(folder)
    vocab = _vocab_size(config)
    transposed = config.get("model_type") in CONV1D_MODEL_TYPES
    specs = []
    for name, shape in shapes.items():
        if len(shape) != 2 or not name.endswith(".weight"):
            continue
        module = name[: -len(".weight")]
        leaf = module.rsplit(".", 1)[-1].lower()
        if any(h in leaf for h in EMBEDDING_HINTS) or (vocab is not None and vocab in shape):
            continue
        specs.append(LinearSpec(module, name, transposed=transposed))
    return specs


def select_targets(layers: list[LinearSpec], target_modules: list[str] | None) -> list[LinearSpec]:
    """Keep the layers named by ``target_modules`` (peft rules: exact name or dotted suffix;
    'all-linear' or None keeps all)."""
    if not target_modules or target_modules == ["all-linear"]:
        return layers
    chosen = [
        spec
        for spec in layers
        if any(
            spec.module == t or spec.module.endswith(f".{t}") or re.fullmatch(t, spec.module) for t in target_modules
        )
    ]
    if not chosen:
        available = sorted({spec.module.rsplit(".", 1)[-1] for spec in layers})
        raise HoEError(
            f"--target-modules {','.join(target_modules)} matches no linear layer (available: {', '.join(available)})"
        )
    return chosen


def check_same_architecture(
    base_folder: Path, other_folder: Path, base, other, label: str = "fine-tuned model"
) -> None:
    """Refuse a pair that is not the same architecture, naming the first tensor that differs."""
    base_type, other_type = read_config(base_folder).get("model_type"), read_config(other_folder).get("model_type")
    if base_type != other_type:
        raise HoEError(f"base is a '{base_type}' model but the {label} is a '{other_type}' model")
    for name in base.names():
        if name not in other:
            if name in TIED_HEADS:
                continue
            raise HoEError(f"tensor '{name}' of the base is missing from the {label}")
        if base.shape(name) != other.shape(name):
            raise HoEError(
                f"tensor '{name}' has shape {list(base.shape(name))} in the base but {list(other.shape(name))} in the "
                f"{label}"
            )
    extra = [name for name in other.names() if name not in base and name not in TIED_HEADS]
    if extra:
        raise HoEError(f"tensor '{extra[0]}' of the {label} is not in the base")


def check_adapter_shapes(adapter, folder, base, layers: list[LinearSpec]) -> None:
    """Refuse an adapter with a module the base lacks or whose B A does not fit the base layer."""
    by_module = {spec.module: spec for spec in layers}
    for name, module in adapter.modules.items():
        weight = f"{name}.weight"
        if weight not in base:
            raise HoEError(f"adapter '{folder}': module '{name}' does not exist in the base model")
        spec = by_module.get(name, LinearSpec(name, weight))
        out_dim, in_dim = spec.out_in(base.shape(weight))
        if (module.B.shape[0], module.A.shape[1]) != (out_dim, in_dim):
            raise HoEError(
                f"adapter '{folder}': module '{name}' maps {module.A.shape[1]}→{module.B.shape[0]} "
                f"but the base layer maps {in_dim}→{out_dim}"
            )
