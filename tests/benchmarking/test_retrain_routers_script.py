"""benchmarks/results/retrain_routers.py's ``--untrained``: the ablation of router training must give back
each router's static mix exactly, and leave no trace of the training it replaces that a report could read."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def load_script(monkeypatch):
    """The script as a module; it imports its sibling ``run``, so both leave sys.modules afterwards."""
    monkeypatch.syspath_prepend(str(RESULTS))
    for name in ("run", "retrain_routers"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module("retrain_routers")
    for name in ("run", "retrain_routers"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return module


def as_if_trained(bundle: Path) -> None:
    """What `hoe train-router` leaves: moved weights, a curve file named in the record, trained: true."""
    spec = json.loads((bundle / "hoe.json").read_text())
    for router in spec["routers"]:
        weights = load_file(bundle / router["path"])
        save_file({k: v + torch.randn_like(v) for k, v in weights.items()}, bundle / router["path"])
        curve = f"routers/{router['name']}.curve.csv"
        (bundle / curve).write_text("step,tchebycheff,kl\n1,-0.5,0\n")
        router["trained"], router["training"] = True, {**router["training"], "curve": curve, "steps": 1}
    (bundle / "hoe.json").write_text(json.dumps(spec))


def test_untrained_routers_are_the_static_mix_the_build_wrote(bundle_dir, tmp_path, monkeypatch):
    script = load_script(monkeypatch)
    bundle = tmp_path / "bundle"
    shutil.copytree(bundle_dir, bundle)
    built = json.loads((bundle / "hoe.json").read_text())["routers"]
    assert built, "the tiny bundle has no router to reset"
    static = {r["name"]: load_file(bundle / r["path"]) for r in built}
    as_if_trained(bundle)
    records = script.reset_routers(bundle)
    routers = json.loads((bundle / "hoe.json").read_text())["routers"]
    assert records == [{"router": r["name"], "anchor": r["anchor"], "untrained": True} for r in built]
    for router in routers:
        weights = load_file(bundle / router["path"])
        assert weights.keys() == static[router["name"]].keys()
        assert all(torch.equal(weights[k], static[router["name"]][k]) for k in weights)
        assert router["trained"] is False and "curve" not in router["training"]
        assert (
            router["training"]["initial_weights"]
            == next(r for r in built if r["name"] == router["name"])["training"]["initial_weights"]
        )
    assert not list((bundle / "routers").glob("*.curve.csv"))
