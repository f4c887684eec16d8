"""``HoEModel``: a transformers causal LM whose adapted linear layers mix LoRA experts per token,
routed by the user's preference vector (method doc, Levels 2 and 3)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from hoe.checkpoints.chat import encode_prompts
from hoe.checkpoints.loading import load_model, load_tokenizer, resolve_checkpoint
from hoe.checkpoints.tensors import CheckpointTensors
from hoe.errors import HoEError
from hoe.experts.lora import read_lora
from hoe.model.bundle import Bundle, BundleSpec, LoraExpertEntry, RouterEntry, check_against_base, load_bundle
from hoe.model.layer import MixtureLinear
from hoe.model.router_weights import router_bias
from hoe.model.state import RoutingState
from hoe.routing import PreferenceLike, convex_weights

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class HoEModel(nn.Module):
    """One model, any preference: see ``from_bundle``, ``forward`` and ``generate``."""

    def __init__(
        self,
        bundle: Bundle,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        ranks: dict[str, dict[str, int]],
    ) -> None:
        super().__init__()
        self.bundle, self.model, self.tokenizer = bundle, model, tokenizer
        names = [e.name for e in bundle.experts]
        self.state = RoutingState(len(names), [[names.index(c) for c in r.covers] for r in bundle.routers])
        self.layers: dict[str, MixtureLinear] = {}
        router_sizes = [len(r.covers) for r in bundle.routers]
        for module_name, expert_ranks in ranks.items():
            base = model.get_submodule(module_name)
            if not isinstance(base, nn.Linear):
                raise HoEError(f"module '{module_name}' is a {type(base).__name__}; HoE mixes nn.Linear layers only")
            layer = MixtureLinear(base, [expert_ranks.get(n, 0) for n in names], router_sizes, self.state)
            parent, _, child = module_name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, layer)
            self.layers[module_name] = layer

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        dtype: str | torch.dtype = "float32",
        trust_remote_code: bool = False,
    ) -> "HoEModel":
        """Load a bundle: every check runs on tensor headers before any weight is read."""
        return cls.from_loaded_bundle(
            load_bundle(path), device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )

    @classmethod
    def from_loaded_bundle(
        cls,
        bundle: Bundle,
        *,
        device: str = "cpu",
        dtype: str | torch.dtype = "float32",
        trust_remote_code: bool = False,
    ) -> "HoEModel":
        """A model for an in-memory (already checked) bundle, e.g. one with a router being added."""
        base_shapes = CheckpointTensors(resolve_checkpoint(bundle.spec.base_model)).shapes()
        ranks = check_against_base(bundle, base_shapes)
        tokenizer = load_tokenizer(
            bundle.spec.base_model, trust_remote_code=trust_remote_code
        )  # before any weight is read
        model = load_model(bundle.spec.base_model, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
        hoe = cls(bundle, model, tokenizer, ranks)
        hoe._load_weights()
        return hoe.eval()

    @classmethod
    def from_modules(
        cls,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        objectives: list[str],
        experts: list[tuple[str, list[float], dict[str, tuple[torch.Tensor, torch.Tensor]]]],
        routers: Sequence[tuple[str, list[float], list[str]]] = (),
    ) -> "HoEModel":
        """An in-memory HoE model (benchmarks, experiments): ``experts`` are (name, anchor,
        {module: (B, A)}); ``routers`` are (name, anchor, covered expert names), initialised to
        reproduce their anchor's static convex weights."""
        entries = [LoraExpertEntry(name=n, path="", anchor=list(a)) for n, a, _ in experts]
        router_entries = [RouterEntry(name=n, anchor=list(a), covers=list(c), path="") for n, a, c in routers]
        modules = sorted(set().union(*(f.keys() for _, _, f in experts)))
        spec = BundleSpec(
            format_version=1,
            base_model=getattr(model, "name_or_path", "") or "in-memory",
            objectives=objectives,
            target_modules=modules,
            experts=entries,
            routers=router_entries,
        )
        ranks = {m: {n: f[m][1].shape[0] for n, _, f in experts if m in f} for m in modules}
        hoe = cls(Bundle(Path("."), spec), model, tokenizer, ranks)
        for k, (_, _, factors) in enumerate(experts):
            for module_name, (B, A) in factors.items():
                layer = hoe.layers[module_name]
                layer.set_expert(k, B.to(layer.fused.dtype), A.to(layer.fused.dtype))
        anchors = np.asarray([e.anchor for e in entries])
        names = [e.name for e in entries]
        for j, router in enumerate(router_entries):
            weights, _ = convex_weights(anchors[[names.index(c) for c in router.covers]], np.asarray(router.anchor))
            for layer in hoe.layers.values():
                with torch.no_grad():
                    layer.router_weight[layer.router_slice(j)].zero_()
                    layer.router_bias[layer.router_slice(j)].copy_(router_bias(weights))
        hoe.sync_routers()
        return hoe.eval()

    def _load_weights(self) -> None:
        from safetensors.torch import load_file

        for k, entry in enumerate(self.bundle.experts):
            adapter = read_lora(self.bundle.expert_path(entry))
            for module_name, lora in adapter.modules.items():
                layer = self.layers[module_name]
                layer.set_expert(k, (lora.scale * lora.B).to(layer.fused.dtype), lora.A.to(layer.fused.dtype))
        for j, router in enumerate(self.bundle.routers):
            tensors = load_file(self.bundle.router_path(router))
            for module_name, layer in self.layers.items():
                with torch.no_grad():
                    layer.router_weight[layer.router_slice(j)].copy_(tensors[f"{module_name}.weight"])
                    layer.router_bias[layer.router_slice(j)].copy_(tensors[f"{module_name}.bias"])
        self.sync_routers()

    def sync_routers(self) -> None:
        """Refresh the inference copy of every router (after loading or training them)."""
        for layer in self.layers.values():
            layer.sync_routers()

    # ---- routing --------------------------------------------------------------------------
    @property
    def objectives(self) -> list[str]:
        return self.bundle.objectives

    def routing(self, preference: PreferenceLike) -> dict[int, float]:
        """Pool index -> weight for one λ (Level 3)."""
        return self.bundle.route(preference)

    def describe_routing(self, preference: PreferenceLike) -> dict[str, float]:
        names = self.bundle.pool_names()
        return {names[i]: round(w, 6) for i, w in sorted(self.routing(preference).items())}

    @contextlib.contextmanager
    def preference(
        self, preference: PreferenceLike | None = None, *, preferences: Sequence[PreferenceLike] | None = None
    ) -> Iterator[None]:
        """Route every forward inside the block: one λ for all rows, or one per row."""
        if (preference is None) == (preferences is None):
            raise HoEError("give either preference= (one λ for every row) or preferences= (one per row)")
        rows = [preference] if preferences is None else list(preferences)
        if not rows:
            raise HoEError("preferences= is empty")
        routings = [self.routing(p) for p in rows]
        self.state.set(routings)
        try:
            yield
        finally:
            self.state.clear()

    def forward(
        self,
        *args,
        preference: PreferenceLike | None = None,
        preferences: Sequence[PreferenceLike] | None = None,
        **kwargs,
    ) -> object:
        """The wrapped model's forward under a preference (one λ, or one per row)."""
        if preference is None and preferences is None:
            if not self.state.active:
                raise HoEError("no preference given: pass preference= or preferences=")
            return self.model(*args, **kwargs)
        with self.preference(preference, preferences=preferences):
            batch = _batch_size(args, kwargs)
            if preferences is not None and batch is not None and batch != len(preferences):
                raise HoEError(f"{len(preferences)} preferences for a batch of {batch} rows")
            return self.model(*args, **kwargs)

    # ---- generation -----------------------------------------------------------------------
    def chat_inputs(self, prompts: Sequence[str], chat: bool = True) -> dict[str, torch.Tensor]:
        """Tokenise prompts (chat template applied), left-padded for generation."""
        self.tokenizer.padding_side = "left"
        batch = encode_prompts(self.tokenizer, prompts, chat=chat)
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.no_grad()
    def generate(
        self,
        prompts: str | Sequence[str],
        preference: PreferenceLike | None = None,
        *,
        preferences: Sequence[PreferenceLike] | None = None,
        chat: bool = True,
        **generate_kwargs,
    ) -> list[str]:
        """Answer each prompt under its preference; generation arguments go to transformers."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if preferences is not None and len(preferences) != len(prompts):
            raise HoEError(f"{len(preferences)} preferences for {len(prompts)} prompts")
        inputs = self.chat_inputs(prompts, chat)
        generate_kwargs.setdefault("max_new_tokens", 128)
        generate_kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        with self.preference(preference, preferences=preferences):
            output = self.model.generate(**inputs, **generate_kwargs)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

    # ---- bookkeeping ----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def parameter_counts(self) -> dict[str, int]:
        """Base model, LoRA experts and router experts, in parameters."""
        experts = sum(layer.lora_A.numel() + layer.lora_B.numel() for layer in self.layers.values())
        routers = sum(layer.router_weight.numel() + layer.router_bias.numel() for layer in self.layers.values())
        inference_copies = sum(
            layer.router_weight.numel() for layer in self.layers.values()
        )  # router rows in the stacked GEMM
        total = sum(p.numel() for p in self.model.parameters())
        base = total - experts - routers - inference_copies
        return {
            "base": base,
            "lora_experts": experts,
            "routers": routers,
            "per_router": routers // max(1, len(self.bundle.routers)),
        }


def _batch_size(args: tuple, kwargs: dict) -> int | None:
    for value in (*args, kwargs.get("input_ids"), kwargs.get("inputs_embeds")):
        if isinstance(value, torch.Tensor):
            return value.shape[0]
    return None
