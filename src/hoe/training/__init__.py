"""Training loops: supervised fine-tuning now; PPO for routers joins later."""

from hoe.training.sft import SFTSettings, supervised_finetune

__all__ = ["SFTSettings", "supervised_finetune"]
