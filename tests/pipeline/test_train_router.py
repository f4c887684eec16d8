"""``hoe train-router`` on the tiny bundle: only router parameters learn, a killed run resumes
bit for bit, the router lands in the bundle, two processes work, bad input is refused early."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import DEVICE, free_port, interrupt_at_call
from safetensors.torch import load_file

from hoe.errors import HoEError
from hoe.model import HoEModel
from hoe.pipeline import train_router
from hoe.rl import load_config
from hoe.rl import trainer as trainer_module

SCORERS = {"helpful": "py:toy_rewards:first_letters", "harmless": "py:toy_rewards:second_letters"}


@pytest.fixture()
def bundle(bundle_dir, tmp_path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    (tmp_path / "prompts.txt").write_text("".join(f"say {i}\n" for i in range(40)))
    return copy


def config(tmp_path, **overrides):
    values = dict(
        scorers=SCORERS,
        prompts=f"file:{tmp_path / 'prompts.txt'}",
        prompt_count=24,
        batch_size=4,
        max_new_tokens=4,
        steps=4,
        checkpoint_every=2,
        calibration_prompts=4,
        ppo_epochs=2,
        minibatches=2,
        max_prompt_tokens=12,
    )
    values.update(overrides)
    return load_config(None, **values)


def test_gradients_reach_the_router_only(bundle):
    from hoe.rl.policies import RouterPolicy
    from hoe.rl.ppo import token_logprobs

    hoe = HoEModel.from_bundle(bundle)
    policy = RouterPolicy(hoe, 0)
    ids = torch.randint(5, 100, (2, 10))
    with policy.routed():
        logprobs, _, _ = token_logprobs(hoe.model, ids, torch.ones(2, 10), 4)
    logprobs.sum().backward()
    trainable = {id(p) for p in policy.parameters()}
    for name, parameter in hoe.model.named_parameters():
        if id(parameter) in trainable:
            continue
        assert parameter.grad is None and not parameter.requires_grad, name
    grads = [p.grad for p in policy.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    # the reference (static mix) has no router in the path: no gradient at all
    for p in policy.parameters():
        p.grad = None
    with torch.no_grad(), policy.routed(reference=True):
        token_logprobs(hoe.model, ids, torch.ones(2, 10), 4)
    assert policy.trainable_count() == sum(p.numel() for p in policy.parameters())  # one router in this bundle


def test_trains_writes_back_and_resumes_bit_for_bit(bundle, tmp_path, monkeypatch):
    settings = config(tmp_path)
    whole = tmp_path / "whole"
    shutil.copytree(bundle, whole)
    summary = train_router(whole, [0.25, 0.75], settings, progress=False, device=DEVICE)
    spec = json.loads((whole / "hoe.json").read_text())
    router = spec["routers"][0]
    assert router["trained"] and router["training"]["steps"] == 4 and router["training"]["config"]["steps"] == 4
    assert (whole / router["training"]["curve"]).read_text().count("\n") == 5
    assert summary["trainable_parameters"] > 0 and summary["last"]["step"] == 4
    final = load_file(str(whole / router["path"]))

    restore = interrupt_at_call(
        monkeypatch, trainer_module.Trainer, "train_step", 4
    )  # dies in step 4; last checkpoint: step 2
    with pytest.raises(KeyboardInterrupt):
        train_router(bundle, [0.25, 0.75], settings, progress=False, device=DEVICE)
    restore()
    assert not json.loads((bundle / "hoe.json").read_text())["routers"][0]["trained"]
    train_router(bundle, [0.25, 0.75], settings, progress=False, resume=True, device=DEVICE)
    resumed = load_file(str(bundle / json.loads((bundle / "hoe.json").read_text())["routers"][0]["path"]))
    assert final.keys() == resumed.keys()
    for key in final:
        assert torch.equal(final[key], resumed[key]), key
    # trained already: refused unless --overwrite
    with pytest.raises(HoEError, match="trained already"):
        train_router(bundle, [0.25, 0.75], settings, progress=False)


def test_a_time_budget_stops_early_and_resume_finishes_the_same_run(bundle, tmp_path):
    settings = config(tmp_path)
    whole = tmp_path / "whole"
    shutil.copytree(bundle, whole)
    train_router(whole, [0.25, 0.75], settings, progress=False, device=DEVICE)
    summary = train_router(bundle, [0.25, 0.75], settings, progress=False, device=DEVICE, max_minutes=1e-9)
    router = json.loads((bundle / "hoe.json").read_text())["routers"][0]
    assert summary["stopped_early"] and summary["steps"] == 1
    assert router["trained"] and router["training"]["steps"] == 1 and not router["training"]["complete"]
    summary = train_router(bundle, [0.25, 0.75], settings, progress=False, device=DEVICE, resume=True)
    router = json.loads((bundle / "hoe.json").read_text())["routers"][0]
    assert not summary["stopped_early"] and router["training"]["steps"] == 4 and router["training"]["complete"]
    final = load_file(str(whole / router["path"]))
    resumed = load_file(str(bundle / router["path"]))
    for key in final:
        assert torch.equal(final[key], resumed[key]), key
    with pytest.raises(HoEError, match=r"max_minutes \(--max-minutes\) must be positive"):
        train_router(bundle, [0.25, 0.75], settings, progress=False, overwrite=True, max_minutes=0)


def test_a_checkpoint_of_an_older_calibration_rule_is_not_resumed(bundle, tmp_path, monkeypatch):
    """z* is fixed at calibration; resuming a run calibrated by the older rule (the head of a
    '+'-joined prompt list) would carry its z* on, so the resume is refused before weights load."""
    settings = config(tmp_path)
    train_router(bundle, [0.25, 0.75], settings, progress=False, device=DEVICE, max_minutes=1e-9)
    name = json.loads((bundle / "hoe.json").read_text())["routers"][0]["name"]
    state_file = bundle / "training" / name / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    assert state["calibration"] == trainer_module.CALIBRATION
    del state["calibration"]  # as an older version wrote it
    state_file.write_text(json.dumps(state))

    def no_weights(*args, **kwargs):
        raise AssertionError("weights loaded")

    monkeypatch.setattr(HoEModel, "from_loaded_bundle", no_weights)
    with pytest.raises(HoEError, match="calibrated by an older rule .* train again without --resume"):
        train_router(bundle, [0.25, 0.75], settings, progress=False, device=DEVICE, resume=True)
    with pytest.raises(HoEError, match=r"another config \(steps differs\)"):
        train_router(bundle, [0.25, 0.75], config(tmp_path, steps=5), progress=False, device=DEVICE, resume=True)
    del state["config"]["reward_scale"]  # a checkpoint from before the setting existed: named, not a StopIteration
    state_file.write_text(json.dumps(state))
    with pytest.raises(HoEError, match=r"another config \(reward_scale differs\)"):
        train_router(bundle, [0.25, 0.75], settings, progress=False, device=DEVICE, resume=True)


def test_a_new_anchor_adds_a_router(bundle, tmp_path):

    train_router(bundle, "helpful=0.6,harmless=0.4", config(tmp_path, steps=1, scalarisation="linear"), progress=False)
    spec = json.loads((bundle / "hoe.json").read_text())
    assert [r["anchor"] for r in spec["routers"]] == [[0.25, 0.75], [0.6, 0.4]]
    assert spec["routers"][1]["trained"] and spec["routers"][1]["covers"]
    model = HoEModel.from_bundle(bundle)  # the bundle still loads and routes through the new router
    assert "router-0.6-0.4" in model.describe_routing([0.6, 0.4])


@pytest.mark.parametrize(
    "anchor, overrides, message",
    [
        ([0.2, 0.3, 0.5], {}, "preference has 3 values but the bundle has 2"),
        ([1, 0], {}, "is the anchor of expert 'helpful'"),
        ([0.5, 0.5], {}, "is the anchor of expert 'balanced'"),
        ([0.3, 0.7], {"scorers": {"helpful": "nope"}}, "objective 'helpful' needs a scorer"),
        ([0.3, 0.7], {"trainable": "lora"}, "trains a router"),
        ([0.3, 0.7], {"scalarisation": "single", "objective": "funny"}, "objective 'funny' is not one of"),
        ([0.3, 0.7], {"ideal": [1.0]}, "training config: ideal has 1 values for 2 objectives"),
    ],
)
def test_bad_input_before_training(bundle, tmp_path, monkeypatch, anchor, overrides, message):
    import hoe.checkpoints.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("model loaded")))
    with pytest.raises(HoEError, match=message):
        train_router(bundle, anchor, config(tmp_path, **overrides), progress=False)


def test_unknown_config_key_and_unreachable_anchor(bundle, tmp_path):
    (tmp_path / "train.yaml").write_text("steps: 3\nlearning_rat: 0.1\n")
    with pytest.raises(HoEError, match="training config: learning_rat: unknown key"):
        load_config(tmp_path / "train.yaml")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(HoEError, match="is not a router-training folder"):
        train_router(bundle, [0.3, 0.7], config(tmp_path), work=precious, progress=False)
    assert (precious / "notes.txt").read_text() == "keep me"
    spec = json.loads((bundle / "hoe.json").read_text())
    spec["experts"] = [e for e in spec["experts"] if e["name"] != "harmless"]
    spec["routers"] = []
    (bundle / "hoe.json").write_text(json.dumps(spec))
    with pytest.raises(HoEError, match="cannot reach it"):
        train_router(bundle, [0.2, 0.8], config(tmp_path), progress=False)


def test_two_processes(bundle, tmp_path):
    launcher = Path(sys.executable).parent / "accelerate"
    if not launcher.exists():
        pytest.skip("accelerate launcher not installed")
    (tmp_path / "train.yaml").write_text(
        f"scorers: {json.dumps(SCORERS)}\nprompts: 'file:{tmp_path / 'prompts.txt'}'\nprompt_count: 16\nbatch_size: 2\n"
        "max_new_tokens: 3\nsteps: 2\ncheckpoint_every: 1\ncalibration_prompts: 2\nmax_prompt_tokens: 10\n"
    )
    command = [
        str(launcher),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        "hoe.cli",
        "train-router",
        "--bundle",
        str(bundle),
        "--anchor",
        "0.25,0.75",
        "--config",
        str(tmp_path / "train.yaml"),
        "--device",
        "cpu",
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("router 'mostly-harmless'") == 1
    assert json.loads((bundle / "hoe.json").read_text())["routers"][0]["trained"]


def test_a_rebuild_keeps_trained_routers_whose_experts_are_unchanged(bundle, recipe_dir, tmp_path):
    from hoe.pipeline.build import build_bundle

    train_router(bundle, [0.25, 0.75], config(tmp_path, steps=1, scalarisation="linear"), progress=False)
    trained = json.loads((bundle / "hoe.json").read_text())["routers"][0]
    weights = load_file(str(bundle / trained["path"]))
    build_bundle(recipe_dir / "recipe.yaml", bundle, progress=False)  # same recipe: nothing to redo
    kept = json.loads((bundle / "hoe.json").read_text())["routers"][0]
    assert kept == trained and (bundle / kept["training"]["curve"]).is_file()
    assert all(torch.equal(weights[k], v) for k, v in load_file(str(bundle / kept["path"])).items())

    changed = (
        (recipe_dir / "recipe.yaml").read_text().replace("method: linear", "method: ties")
    )  # the covered 'balanced' changes
    (tmp_path / "recipe.yaml").write_text(changed)
    for name in ("ft-helpful", "ft-harmless"):
        (tmp_path / name).symlink_to(recipe_dir / name)
    build_bundle(tmp_path / "recipe.yaml", bundle, progress=False)
    assert not json.loads((bundle / "hoe.json").read_text())["routers"][0]["trained"]  # back to the static mix


def test_calibration_prompts_come_from_the_training_order_not_the_lists_head(monkeypatch):
    """A '+'-joined prompt spec lists its parts one after the other: z* fitted on the list's head would see one
    part only (benign prompts alone put the harmlessness ideal below what red-team batches reach)."""
    trainer = object.__new__(trainer_module.Trainer)
    trainer.config = load_config(None, scorers=SCORERS, calibration_prompts=8)
    trainer.prompts = [f"benign {i}" for i in range(20)] + [f"harmful {i}" for i in range(20)]
    trainer.objectives, trainer.dist = ["helpful", "harmless"], trainer_module.Distributed(cpu=True)
    trainer.policy = SimpleNamespace(routed=lambda reference=False: nullcontext(), preference=[0.5, 0.5])
    scored: list[list[str]] = []
    trainer.sample = lambda prompts, routed=None: (None, None, 0, [f"answer to {p}" for p in prompts])
    trainer.raw_scores = lambda prompts, texts: scored.append(list(prompts)) or torch.rand(len(prompts), 2)
    trainer.calibrate()
    first_batches = [trainer.prompts[i] for i in trainer.shuffled_order(0)[:8].tolist()]
    assert scored == [first_batches]
    assert {p.split()[0] for p in scored[0]} == {"benign", "harmful"}
    assert trainer.prompts_for(0) == first_batches[: trainer.config.batch_size]  # the first training batch leads
