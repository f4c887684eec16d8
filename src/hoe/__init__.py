"""hoe: multi-objective alignment of language models with hierarchical experts (HoE)."""

__version__ = "0.1.0"

from hoe.errors import HoEError  # noqa: E402

__all__ = ["HoEError", "__version__"]
