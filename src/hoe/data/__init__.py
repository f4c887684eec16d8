"""Data shipped with the package (see files/ATTRIBUTION.md) and its loaders."""

from hoe.data.packaged import PACKAGED, load_packaged, sft_pairs
from hoe.data.prompts import load_prompts, split_of

__all__ = ["PACKAGED", "load_packaged", "load_prompts", "sft_pairs", "split_of"]
