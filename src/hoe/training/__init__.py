"""Single-objective experts: supervised fine-tuning (full or LoRA) and ``hoe make-expert`` (RAFT, DPO, PPO);
router PPO lives in ``hoe.rl``."""

from hoe.training.sft import SFTSettings, supervised_finetune

__all__ = ["SFTSettings", "supervised_finetune"]
