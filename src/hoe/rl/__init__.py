"""Level 2 training: PPO for router experts (and LoRA policies) under Tchebycheff + OMD, linear
or single-objective scalarisation. Training a bundle's router end to end (checks, loading, writing
it back) is ``hoe.pipeline.train_router``."""

from hoe.rl.config import TrainConfig, load_config
from hoe.rl.scalarisation import Scalarisation

__all__ = ["Scalarisation", "TrainConfig", "load_config"]
