"""Three short supervised fine-tunes of the embedded model on packaged data (helpful, harmless,
instruct), made once and cached: the real fine-tuned models that the extract, merge and
inference benchmarks start from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from hoe.checkpoints.loading import DEFAULT_MODEL, cache_root
from hoe.data import sft_pairs
from hoe.experts import ExtractSettings, extract_expert
from hoe.training.settings import SFTSettings
from hoe.training.sft import supervised_finetune

REFERENCE_SFT = SFTSettings(steps=30, batch_size=8, max_length=128, learning_rate=5e-5)

# fine-tune name -> packaged dataset it learns from
REFERENCE_DATA = {"helpful": "hh-helpful-sft", "harmless": "hh-harmless", "instruct": "alpaca-davinci"}


def reference_finetune(
    name: str = "helpful", base: str = DEFAULT_MODEL, settings: SFTSettings = REFERENCE_SFT, progress: bool = True
) -> Path:
    """A full fine-tune of the embedded model on one packaged dataset; made once, then cached."""
    data = REFERENCE_DATA[name]
    recipe = [base, data, settings.model_dump(mode="json")]
    key = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    out = cache_root() / "finetunes" / f"{name}-sft-{key}"
    if not (out / "sft_log.json").is_file():
        supervised_finetune(base, sft_pairs(data), out, settings, progress=progress)
    return out


def reference_experts(root: str | Path, rank: int = 16, progress: bool = True) -> dict[str, Path]:
    """Rank-``rank`` LoRA experts of the three fine-tunes under ``root`` (made once)."""
    experts = {}
    for name in REFERENCE_DATA:
        folder = Path(root) / name
        if not (folder / "adapter_config.json").is_file():
            extract_expert(
                DEFAULT_MODEL,
                reference_finetune(name, progress=progress),
                folder,
                ExtractSettings(rank=rank),
                overwrite=True,
                progress=progress,
            )
        experts[name] = folder
    return experts
