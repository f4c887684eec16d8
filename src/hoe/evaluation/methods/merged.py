"""``merged``: a merged LoRA expert made for each λ with the bundle's merge method (PCB unless the
bundle records another), folded into the base weights: one forward pass, one merge per λ."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hoe.evaluation.methods.common import AdapterPerPreferenceMethod, Context, lora_rank, register
from hoe.evaluation.preference_sets import preference_label
from hoe.merging import MergeSettings, merge_experts


def merged_adapter(context: Context, preference: np.ndarray) -> Path:
    """The single experts merged at λ (made once per λ, cached in the work folder)."""
    experts = context.single_experts()
    active = [(e, float(w)) for e, w in zip(experts, preference) if w > 0]
    if len(active) == 1:
        return active[0][0].lora
    method, params = context.merge_setting()
    out = context.work / "merged" / f"{method}-{preference_label(preference)}"
    if not (out / "adapter_config.json").is_file():
        rank = max(lora_rank(e.lora) for e, _ in active)
        settings = MergeSettings(method=method, weights=[w for _, w in active], rank=rank, params=params)
        merge_experts(
            context.bundle.spec.base_model, [e.lora for e, _ in active], out, settings, overwrite=True, progress=False
        )
    return out


@register
class MergedMethod(AdapterPerPreferenceMethod):
    """A merged LoRA expert made for each λ and folded into the base weights (one forward pass)."""

    name = "merged"

    def adapter(self, preference: np.ndarray) -> Path:
        return merged_adapter(self.context, preference)
