"""benchmarks/results/retrain_routers.py's ``--untrained``: the ablation of router training must give back
each router's static mix exactly, and leave no trace of the training it replaces that a report could read."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from results_scripts import RESULTS, load_results_script
from safetensors.torch import load_file, save_file

from hoe.pipeline.demo import PROFILES, router_config


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
    script = load_results_script(monkeypatch, "retrain_routers")
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


def test_set_changes_one_key_of_the_full_profiles_router_config(monkeypatch):
    """`--set KEY=VALUE` (VALUE as YAML) on the profile's config; bad keys and values are one line each."""
    script = load_results_script(monkeypatch, "retrain_routers")
    profile = PROFILES["full"]
    varied = script.varied_config(profile, ["kl_coef=0.2", "steps=32", "reward_scale=sd"])
    assert (varied.kl_coef, varied.steps, varied.reward_scale) == (0.2, 32, "sd")
    assert varied.model_copy(update={"kl_coef": 0.05, "steps": 16, "reward_scale": "range"}) == router_config(profile)
    assert script.varied_config(profile, []) == router_config(profile)
    for pairs, message in [
        (["kl_coef"], "--set takes KEY=VALUE, got 'kl_coef'"),
        (["=1"], "--set takes KEY=VALUE"),
        (["kl_coeff=0.2"], "--set: kl_coeff: Extra inputs are not permitted"),
        (["kl_coef=-1"], "--set: kl_coef: Input should be greater than or equal to 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            script.varied_config(profile, pairs)


def test_set_and_untrained_together_exit_2_with_one_line():
    script = RESULTS / "retrain_routers.py"
    args = ["--run", "x", "--bundle", "y", "--tag", "t", "--set", "kl_coef=0.2", "--untrained"]
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith("--set changes router training and --untrained skips it: give one of them")
    )
