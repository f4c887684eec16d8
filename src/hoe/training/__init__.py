"""Single-objective experts: supervised fine-tuning (full or LoRA, ``sft``) and ``hoe make-expert``
(RAFT, DPO, PPO, ``make_expert``); their settings models are in ``settings`` (light to import).
Router PPO lives in ``hoe.rl``."""
