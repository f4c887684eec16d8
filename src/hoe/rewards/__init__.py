"""Objectives: offline scorers, reward models, a score cache and shared normalisation."""

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
