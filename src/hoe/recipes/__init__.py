"""The recipes hoe ships (``recipes/`` in the repository is this folder): ``shipped_recipe(name)``
finds one by its file name without ``.yaml``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from hoe.errors import HoEError


def shipped_recipes() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))


def shipped_recipe(name: str) -> Path:
    """The path of the shipped recipe ``name`` (an identifier, never a path)."""
    if name not in shipped_recipes():
        raise HoEError(f"no shipped recipe '{name}' (shipped: {', '.join(shipped_recipes())})")
    return Path(str(resources.files(__name__) / f"{name}.yaml"))
