"""Objectives: offline scorers, reward models, a score cache and shared normalisation.

The names below load on first use (PEP 562), so that importing a light submodule such as
``hoe.rewards.settings`` (the CLI does, to declare its options) does not import torch through the
reward-model scorer: ``hoe --help`` stays quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_HOMES = {
    "OFFLINE_SCORERS": "hoe.rewards.offline",
    "NAMED_SCORERS": "hoe.rewards.scoring",
    "NormStats": "hoe.rewards.scoring",
    "ScoreCache": "hoe.rewards.scoring",
    "get_scorer": "hoe.rewards.scoring",
    "load_stats": "hoe.rewards.scoring",
    "save_stats": "hoe.rewards.scoring",
    "score_objectives": "hoe.rewards.scoring",
}

__all__ = [
    "NAMED_SCORERS",
    "OFFLINE_SCORERS",
    "NormStats",
    "ScoreCache",
    "get_scorer",
    "load_stats",
    "save_stats",
    "score_objectives",
]

if TYPE_CHECKING:
    from hoe.rewards.offline import OFFLINE_SCORERS
    from hoe.rewards.scoring import (
        NAMED_SCORERS,
        NormStats,
        ScoreCache,
        get_scorer,
        load_stats,
        save_stats,
        score_objectives,
    )


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'hoe.rewards' has no attribute '{name}'")
    return getattr(importlib.import_module(_HOMES[name]), name)
