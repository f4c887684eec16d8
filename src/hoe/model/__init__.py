"""Levels 2 and 3 for inference: the HoE bundle and the mixture-of-experts model."""

from hoe.model.bundle import Bundle, load_bundle
from hoe.model.hoe_model import HoEModel

__all__ = ["Bundle", "HoEModel", "load_bundle"]
