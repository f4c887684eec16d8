"""Orchestration above the method's levels: a recipe into a bundle (``build_bundle``), a bundle's
router trained and written back (``train_router``), and the embedded demo. Nothing below imports it."""

from hoe.pipeline.build import build_bundle
from hoe.pipeline.recipe import Recipe, load_recipe
from hoe.pipeline.train_router import train_router

__all__ = ["Recipe", "build_bundle", "load_recipe", "train_router"]
