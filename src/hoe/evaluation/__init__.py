"""Pareto-front evaluation of HoE against its peers (``hoe evaluate``)."""

from hoe.evaluation.harness import evaluate, plan
from hoe.evaluation.methods import METHODS
from hoe.evaluation.metrics import controllability, hypervolume, nondominated, tchebycheff_gap
from hoe.evaluation.preference_sets import preference_set
from hoe.evaluation.report import build_report, methods_table, verdict
from hoe.evaluation.settings import DEFAULT_METHODS, Decoding, EvalSettings

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "Decoding",
    "EvalSettings",
    "build_report",
    "controllability",
    "evaluate",
    "hypervolume",
    "methods_table",
    "nondominated",
    "plan",
    "preference_set",
    "tchebycheff_gap",
    "verdict",
]
