"""Settings of ``hoe train-reward`` (light to import: the CLI builds its options from them)."""

from __future__ import annotations

from pydantic import Field

from hoe.settings import Settings

HEAD_REPORT = "train_reward_report.json"


class RewardHeadSettings(Settings):
    """One learned reward: a Bradley–Terry head fitted on preference pairs."""

    pairs: str = Field(
        description="Preference pairs: packaged:NAME (hh-harmless, dove-helpful, alpaca-gpt4, hh-helpful-refusals) "
        "or a JSONL file with prompt/chosen/rejected (or instruction/output_1/output_2/preference 1|2|0) per line; "
        "'+' joins sources.",
    )
    folds: int = Field(5, ge=2, le=20, description="Cross-validation folds that choose the L2 strength (train split).")
    seed: int = Field(0, description="Seed of the cross-validation folds.")
