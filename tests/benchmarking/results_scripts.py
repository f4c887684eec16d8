"""Loading a script of benchmarks/results as a module in a test (as serving_helpers serves tests/serving)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
SIBLINGS = ("run", "retrain_routers", "curve_difference", "router_levers")  # the scripts that import each other


def load_results_script(monkeypatch, name: str):
    """benchmarks/results/NAME.py as a module. The scripts import their siblings by name, so those, and the
    script itself, leave sys.modules when the test ends."""
    monkeypatch.syspath_prepend(str(RESULTS))
    for sibling in SIBLINGS:
        monkeypatch.delitem(sys.modules, sibling, raising=False)
    module = importlib.import_module(name)
    for sibling in SIBLINGS:
        monkeypatch.delitem(sys.modules, sibling, raising=False)
    return module
