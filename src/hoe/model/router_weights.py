"""A router expert's weights when untrained: zero weight and bias = log of its anchor's static
convex weights, so that at every layer it reproduces the static mix exactly (training starts there)."""

from __future__ import annotations

import math
from typing import Sequence

import torch

from hoe.checkpoints.tensors import CheckpointTensors

LOG_FLOOR = 1e-12  # log of a zero static weight in a router's bias


def router_inputs(base: CheckpointTensors, modules: Sequence[str]) -> dict[str, int]:
    """Input features of each adapted module (module -> features): a router's rows there read the module's
    input, so they are as wide as the base weight's second dimension."""
    return {module: base.shape(f"{module}.weight")[1] for module in modules}


def router_bias(static_weights: Sequence[float]) -> torch.Tensor:
    """Bias of an untrained router: log of its anchor's static weights, so softmax gives them back."""
    return torch.tensor([math.log(max(float(w), LOG_FLOOR)) for w in static_weights], dtype=torch.float32)


def router_init(static_weights: Sequence[float], layers: dict[str, tuple[int, torch.dtype]]) -> dict[str, torch.Tensor]:
    """Router tensors that reproduce ``static_weights`` exactly: zero weight, bias = log w.

    ``layers`` maps module name -> (input features, dtype).
    """
    bias = router_bias(static_weights)
    tensors = {}
    for module, (in_features, dtype) in layers.items():
        tensors[f"{module}.weight"] = torch.zeros(len(static_weights), in_features, dtype=dtype)
        tensors[f"{module}.bias"] = bias.to(dtype).clone()
    return tensors
