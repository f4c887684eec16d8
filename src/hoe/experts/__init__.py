"""Level 1 of HoE: LoRA experts (task-SVD extraction; merging joins in hoe.merging)."""

from hoe.experts.extract import ExtractSettings, extract_expert
from hoe.experts.lora import LoraAdapter, LoraModule, read_lora, write_lora
from hoe.experts.svd import LowRankFactors, rerank_lora, task_svd

__all__ = [
    "ExtractSettings",
    "LoraAdapter",
    "LoraModule",
    "LowRankFactors",
    "extract_expert",
    "read_lora",
    "rerank_lora",
    "task_svd",
    "write_lora",
]
