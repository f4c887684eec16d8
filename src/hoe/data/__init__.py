"""Data shipped with the package (see files/ATTRIBUTION.md) and its loaders."""

from hoe.data.packaged import PACKAGED, load_packaged, sft_pairs

__all__ = ["PACKAGED", "load_packaged", "sft_pairs"]
