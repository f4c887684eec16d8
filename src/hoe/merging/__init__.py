"""Level 1, step 3: multi-objective LoRA experts by merging task vectors."""

from hoe.merging.merge import MergeSettings, merge_experts
from hoe.merging.merge_methods import MERGE_METHODS, MergeMethod, get_method, merge_method

__all__ = ["MERGE_METHODS", "MergeMethod", "MergeSettings", "get_method", "merge_experts", "merge_method"]
