"""What PPO trains: one router of a HoE model (the paper's Level 2), or a LoRA on the base (for
``make-expert --method ppo`` and the MORLHF baseline). A policy says which parameters learn, how
to route a forward as the policy or as the reference, and how to save what it learned."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, ContextManager, Iterator, Protocol

import numpy as np
import torch
from peft import get_peft_model_state_dict, set_peft_model_state_dict

from hoe.experts.trainable_lora import LoraSettings, attach_lora
from hoe.model.hoe_model import HoEModel
from hoe.model.router_weights import router_init
from hoe.routing import convex_weights

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class Policy(Protocol):
    """What PPO trains (``hoe.rl.trainer.Trainer``): a model whose ``parameters()`` learn, routed
    as the policy or as the frozen reference it is kept close to, with a state to checkpoint."""

    model: torch.nn.Module  # a transformers causal LM; generate() and forward() are routed by ``routed``
    tokenizer: object
    preference: np.ndarray  # the λ it is trained for (scalarises the rewards)

    def parameters(self) -> list[torch.nn.Parameter]: ...

    def routed(self, reference: bool = False) -> ContextManager[None]:
        """Forwards inside act as the policy, or as the reference with ``reference=True``."""
        ...

    def after_update(self) -> None:
        """Called after each optimiser step (a router syncs its inference copy)."""
        ...

    def trainable_state(self) -> dict[str, torch.Tensor]: ...

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None: ...

    def trainable_count(self) -> int: ...


class RouterPolicy:
    """A HoE model at a router's anchor: only that router's rows learn; the reference policy is
    the static convex mix of the experts it covers (what the untrained router reproduces)."""

    def __init__(self, hoe: HoEModel, router_index: int) -> None:
        self.hoe, self.router_index = hoe, router_index
        self.model, self.tokenizer = hoe.model, hoe.tokenizer
        router = hoe.bundle.routers[router_index]
        names = [e.name for e in hoe.bundle.experts]
        covered = [names.index(c) for c in router.covers]
        self.preference = np.asarray(router.anchor)
        self._policy_routing = {len(names) + router_index: 1.0}
        weights = (router.training or {}).get("initial_weights")
        if weights is None:
            weights, _ = convex_weights(np.asarray([hoe.bundle.experts[c].anchor for c in covered]), self.preference)
        self._static_weights = [float(w) for w in weights]
        self._reference_routing = {c: float(w) for c, w in zip(covered, weights) if w > 0}
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self._params = []
        for layer in hoe.layers.values():
            rows = layer.router_slice(router_index)
            for parameter in (layer.router_weight, layer.router_bias):
                parameter.requires_grad_(True)
                mask = torch.zeros_like(parameter)
                mask[rows] = 1
                parameter.register_hook(lambda grad, mask=mask: grad * mask)  # other routers' rows never move
                self._params.append(parameter)

    def parameters(self) -> list[torch.nn.Parameter]:
        return self._params

    def reference_weights(self) -> list[float]:
        """The static convex weights over the covered experts (the untrained router's gates)."""
        return list(self._static_weights)

    def reset_to_static_mix(self) -> None:
        """The router as untrained: it reproduces the static mix of its experts exactly."""
        layers = {m: (layer.in_features, torch.float32) for m, layer in self.hoe.layers.items()}
        self.load_trainable_state(router_init(self.reference_weights(), layers))

    @contextlib.contextmanager
    def routed(self, reference: bool = False) -> Iterator[None]:
        """Route every forward in the block as the policy (the router) or the reference (static mix)."""
        self.hoe.state.set([self._reference_routing if reference else self._policy_routing])
        try:
            yield
        finally:
            self.hoe.state.clear()

    def after_update(self) -> None:
        self.hoe.sync_routers()  # generation reads the inference copy of the router rows

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """This router's tensors, per adapted module (the bundle's router file format)."""
        state = {}
        for name, layer in self.hoe.layers.items():
            rows = layer.router_slice(self.router_index)
            state[f"{name}.weight"] = layer.router_weight[rows].detach().clone().contiguous()
            state[f"{name}.bias"] = layer.router_bias[rows].detach().clone().contiguous()
        return state

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, layer in self.hoe.layers.items():
                rows = layer.router_slice(self.router_index)
                layer.router_weight[rows].copy_(state[f"{name}.weight"])
                layer.router_bias[rows].copy_(state[f"{name}.bias"])
        self.after_update()

    def trainable_count(self) -> int:
        return sum(int(t.numel()) for t in self.trainable_state().values())


class LoraPolicy:
    """A fresh peft LoRA on the base model; the reference is the base (adapter disabled)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        preference: np.ndarray,
        rank: int = 8,
        alpha: float = 16.0,
        seed: int = 0,
    ) -> None:
        self.model = attach_lora(model, LoraSettings(rank=rank, alpha=alpha), seed=seed)
        self.tokenizer = tokenizer
        self.preference = np.asarray(preference, dtype=np.float64)
        self._params = [p for p in self.model.parameters() if p.requires_grad]

    def parameters(self) -> list[torch.nn.Parameter]:
        return self._params

    @contextlib.contextmanager
    def routed(self, reference: bool = False) -> Iterator[None]:
        if reference:
            with self.model.disable_adapter():
                yield
        else:
            yield

    def after_update(self) -> None:
        pass

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone().contiguous() for k, v in get_peft_model_state_dict(self.model).items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        set_peft_model_state_dict(self.model, state)

    def trainable_count(self) -> int:
        return sum(p.numel() for p in self._params)
