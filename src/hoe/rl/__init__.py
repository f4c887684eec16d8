"""Level 2 training: PPO for router experts (and LoRA policies) under Tchebycheff + OMD, linear
or single-objective scalarisation."""

from hoe.rl.config import TrainConfig, load_config
from hoe.rl.scalarisation import Scalarisation
from hoe.rl.train_router import train_router

__all__ = ["Scalarisation", "TrainConfig", "load_config", "train_router"]
