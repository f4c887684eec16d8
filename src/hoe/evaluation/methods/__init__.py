"""The methods ``hoe evaluate`` compares, in a registry (one class per method, one file each), all
decoding the same prompts the same way:

- ``hoe`` (hoe.py): the bundle as built (LoRA experts, merged experts, routers), one forward pass;
- ``soup`` (soup.py): the static λ-mix of the single-objective LoRA experts, one forward pass;
- ``merged`` (merged.py): a merged expert made for each λ (the bundle's merge method), folded into the base;
- ``rs`` (rewarded_soups.py): Rewarded Soups, θ₀ + Σ λ_i τ_i with the experts' full task vectors
  (LoRA deltas where the bundle records no full model), re-mixed for each λ;
- ``mod`` (mod.py): MOD, next token from Σ λ_i log π_i over the N expert models (N passes per token);
- ``morlhf`` (morlhf.py): MORLHF, one LoRA per λ trained by PPO with linear scalarisation Σ λ_i R_i
  (the expensive upper bound: a training run per preference; cached in the run's work folder);
- ``experts`` (experts.py): each single-objective expert alone; ``base`` (base.py): the base model.

What they share (registry, decoding, context, base classes) is in common.py.
"""

# each module registers its method on import; this order is the registry's (and the error messages')
from hoe.evaluation.methods import base, experts, hoe, soup, merged, rewarded_soups, morlhf, mod  # noqa: F401  isort: skip
from hoe.evaluation.methods.common import (
    METHODS,
    Context,
    Method,
    Point,
    SingleExpert,
    check_methods,
    merge_setting,
    new_tokens,
    single_experts,
)
from hoe.evaluation.methods.mod import mod_generate

__all__ = [
    "METHODS",
    "Context",
    "Method",
    "Point",
    "SingleExpert",
    "check_methods",
    "merge_setting",
    "mod_generate",
    "new_tokens",
    "single_experts",
]
