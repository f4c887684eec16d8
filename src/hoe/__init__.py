"""hoe: multi-objective alignment of language models with hierarchical experts (HoE).

The short way in::

    from hoe import HoEModel, build_bundle, train_router, evaluate

    bundle = build_bundle("recipes/concise-informative.yaml", "runs/concise-informative")
    model = HoEModel.from_bundle("runs/concise-informative")
    model.generate(["How do I ...?"], preferences=[[0.3, 0.7]])

Names load on first use (importing ``hoe`` does not import torch); each lives in its level's
package, named in ``_EXPORTS``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hoe.errors import HoEError

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "HoEModel": "hoe.model.hoe_model",
    "Bundle": "hoe.model.bundle",
    "load_bundle": "hoe.model.bundle",
    "ExtractSettings": "hoe.experts.extract",
    "extract_expert": "hoe.experts.extract",
    "MergeSettings": "hoe.merging.merge",
    "merge_experts": "hoe.merging.merge",
    "MakeExpertSettings": "hoe.training.settings",
    "make_expert": "hoe.training.make_expert",
    "TrainConfig": "hoe.rl.config",
    "load_config": "hoe.rl.config",
    "EvalSettings": "hoe.evaluation.settings",
    "evaluate": "hoe.evaluation.harness",
    "build_report": "hoe.evaluation.report",
    "Recipe": "hoe.pipeline.recipe",
    "load_recipe": "hoe.pipeline.recipe",
    "build_bundle": "hoe.pipeline.build",
    "train_router": "hoe.pipeline.train_router",
}

__all__ = [
    "Bundle",
    "EvalSettings",
    "ExtractSettings",
    "HoEError",
    "HoEModel",
    "MakeExpertSettings",
    "MergeSettings",
    "Recipe",
    "TrainConfig",
    "__version__",
    "build_bundle",
    "build_report",
    "evaluate",
    "extract_expert",
    "load_bundle",
    "load_config",
    "load_recipe",
    "make_expert",
    "merge_experts",
    "train_router",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from hoe.evaluation.harness import evaluate
    from hoe.evaluation.report import build_report
    from hoe.evaluation.settings import EvalSettings
    from hoe.experts.extract import ExtractSettings, extract_expert
    from hoe.merging.merge import MergeSettings, merge_experts
    from hoe.model.bundle import Bundle, load_bundle
    from hoe.model.hoe_model import HoEModel
    from hoe.pipeline.build import build_bundle
    from hoe.pipeline.recipe import Recipe, load_recipe
    from hoe.pipeline.train_router import train_router
    from hoe.rl.config import TrainConfig, load_config
    from hoe.training.make_expert import make_expert
    from hoe.training.settings import MakeExpertSettings


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hoe' has no attribute '{name}'")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
