"""Model references: local folders, hub names, GGUF files and the embedded default."""

from hoe.checkpoints.loading import (
    EMBEDDED_MODELS,
    cache_root,
    load_model,
    load_tokenizer,
    resolve_checkpoint,
)
from hoe.checkpoints.tensors import CheckpointTensors

__all__ = [
    "EMBEDDED_MODELS",
    "CheckpointTensors",
    "cache_root",
    "load_model",
    "load_tokenizer",
    "resolve_checkpoint",
]
