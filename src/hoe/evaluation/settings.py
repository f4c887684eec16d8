"""One evaluation run's settings (``hoe evaluate``): the decoding every method shares and the run
around it. Everything else is checked by ``hoe.evaluation.harness.plan`` before a model loads."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from hoe.checkpoints.loading import resolve_device
from hoe.settings import DtypeName, Settings

DEFAULT_METHODS = ["hoe", "soup", "merged", "rs", "mod", "experts", "base"]


def _known_device(name: str) -> str:
    """A device this machine has ('auto' stays: accelerate gives each process its own)."""
    if name != "auto":
        resolve_device(name)
    return name


class Decoding(Settings):
    """Shared by every method of a run."""

    max_new_tokens: int = Field(64, gt=0, description="Tokens to generate per answer.")
    do_sample: bool = Field(False, description="Sample (seeded) or decode greedily; the same for every method.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (not used by mod).")
    batch_size: int = Field(16, gt=0, description="Prompts per batch, the same for every method.")
    seed: int = Field(0, description="Seed of everything random in the run.")
    max_prompt_tokens: int | None = Field(
        None, gt=0, description="Cut longer prompts from the left (the latest turn stays; always to fit the context)."
    )

    def generate_kwargs(self, tokenizer) -> dict:
        kwargs = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "pad_token_id": tokenizer.pad_token_id,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


class EvalSettings(Settings):
    """One evaluation run; everything is checked by ``plan`` before a model loads."""

    bundle: str = Field(description="Bundle folder.")
    preferences: str = Field(
        "grid:5",
        description="grid:K (K points per simplex edge), simplex:STEP, anchors (the bundle's experts, merges and "
        "routers), or a file of preferences; '+' unites sets (grid:6+anchors).",
    )
    methods: list[str] = Field(
        default_factory=lambda: list(DEFAULT_METHODS),
        description="hoe, soup, merged, rs, mod, morlhf (a PPO run per λ), experts, base.",
    )
    prompts: str = Field(
        "packaged:hh-helpful-test", description="Prompt spec: packaged:NAME, hub:DATASET@SPLIT#FIELD, A+B."
    )
    split: str = Field("heldout", description="train, eval, heldout or all (hash split of each prompt).")
    limit: int | None = Field(64, gt=0, description="At most this many prompts.")
    decoding: Decoding = Field(default_factory=Decoding)
    scorers: dict[str, str] = Field(
        default_factory=dict, description="objective -> scorer spec, where an objective is not itself a scorer name."
    )
    task_vectors: Literal["auto", "lora", "full"] = Field(
        "auto", description="For rs and the expert models: full (fine-tuned models), lora, or auto."
    )
    merge_method: str | None = Field(None, description="Merge method of `merged` (default: the bundle's, else pcb).")
    reference: list[float] | None = Field(None, description="Hypervolume reference point (default: from the run).")
    morlhf_config: str | None = Field(
        None, description="PPO config (YAML, hoe.rl.TrainConfig) of morlhf's per-λ LoRA runs."
    )
    device: Annotated[str, AfterValidator(_known_device)] = Field(
        "cpu", description="cpu, cuda, or auto (each accelerate process takes its own device)."
    )
    dtype: DtypeName = Field("float32", description="Model dtype.")
    chat: bool = Field(True, description="Wrap prompts in the model's chat template.")
    trust_remote_code: bool = Field(False, description="Let transformers run code the model's folder names.")
    trust_bundle_code: bool = Field(False, description="Run py: scorers that the bundle's hoe.json names.")
