"""Peer methods a user would otherwise pick, implemented for side-by-side comparison."""

from hoe.baselines.mod import mod_generate

__all__ = ["mod_generate"]
