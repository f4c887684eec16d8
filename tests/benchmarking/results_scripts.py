"""Loading a script of benchmarks/results or benchmarks/experts as a module in a test (as serving_helpers
serves tests/serving)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
RESULTS, EXPERTS = BENCHMARKS / "results", BENCHMARKS / "experts"
# the scripts that import each other by name; both folders have a run.py, so none may outlive its test
SIBLINGS = ("run", "retrain_routers", "curve_difference", "router_levers", "rank_curve", "trained_lora")


def load_benchmark_script(monkeypatch, folder: Path, name: str):
    """FOLDER/NAME.py as a module. The scripts import their siblings by name, so those, and the script
    itself, leave sys.modules when the test ends."""
    monkeypatch.syspath_prepend(str(folder))
    for sibling in SIBLINGS:
        monkeypatch.delitem(sys.modules, sibling, raising=False)
    module = importlib.import_module(name)
    for sibling in SIBLINGS:
        monkeypatch.delitem(sys.modules, sibling, raising=False)
    return module


def load_results_script(monkeypatch, name: str):
    """benchmarks/results/NAME.py as a module."""
    return load_benchmark_script(monkeypatch, RESULTS, name)
