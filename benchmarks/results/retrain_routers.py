"""A suite's routers trained again (a change to router training) and HoE evaluated again, the peers reused.

    .venv/bin/python benchmarks/results/retrain_routers.py --run helpful-harmless-134-prompts \\
        --bundle work/helpful-harmless/helpful-harmless/bundle --tag calibrated        # ~30 min on 2 CPU cores

Why: the peers (soup, per-λ merging, Rewarded Soups, MOD, the experts, the base) do not depend on the
routers, so after a change to router training only HoE needs new answers. This checks that the demo's
evaluation settings (``suite_eval_settings``) give the run's preferences, prompts and decoding, copies the
bundle to ``work/RUN-TAG/bundle``, checks that its single-objective experts answer the run's prompts word
for word as the run's did (else the peers' reused answers would not be those of these experts: a bundle
rebuilt elsewhere stops here, after one evaluation of the expert points), trains its routers under the
demo's full profile (``train_routers``: a router whose recorded settings or calibration rule differ is
trained again; ``--set KEY=VALUE`` changes one key of that config, e.g. ``--set kl_coef=0.2``, for a
change to router training tried before it becomes a default; with ``--untrained`` every router is set to
its static mix instead, the ablation of router training), copies the committed run's generations of every
method but HoE into a fresh evaluation folder (the harness reuses them) and evaluates with the run's
settings; the result is copied to ``RUN-TAG/`` beside the run, so the two are compared on the same prompts
and the same peers' answers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError
from run import copy_evaluation

from hoe.evaluation import EvalSettings, evaluate, methods_table, verdict
from hoe.evaluation.harness import plan
from hoe.model.bundle import load_bundle
from hoe.pipeline.demo import PROFILES, Profile, router_config, suite_eval_settings, train_routers
from hoe.rl import TrainConfig
from hoe.settings import first_error
from hoe.utils.io import read_jsonl

HERE = Path(__file__).resolve().parent


def copy_router_records(bundle: Path, target: Path) -> None:
    """Each router's PPO curve and training record (normalisation, z*, OMD weights) into target/routers/."""
    (target / "routers").mkdir(parents=True, exist_ok=True)
    for curve in (bundle / "routers").glob("*.curve.csv"):
        shutil.copy2(curve, target / "routers" / curve.name)
    keys = {"name", "anchor", "covers", "training"}
    records = [router.model_dump(include=keys) for router in load_bundle(bundle).routers]
    (target / "routers" / "training.json").write_text(json.dumps(records, indent=2) + "\n")


def reset_routers(bundle: Path) -> list[dict]:
    """Every router of ``bundle`` as untrained: its weights give its static mix exactly (the ablation of
    router training; the record of the training it replaces stays, marked untrained)."""
    from hoe.checkpoints.loading import resolve_checkpoint
    from hoe.checkpoints.tensors import CheckpointTensors
    from hoe.model.router_weights import router_inputs

    held = load_bundle(bundle)
    inputs = router_inputs(CheckpointTensors(resolve_checkpoint(held.spec.base_model)), held.spec.target_modules)
    for router in held.spec.routers:
        held.write_untrained_router(router, inputs)
        router.trained = False
        (bundle / "routers" / f"{router.name}.curve.csv").unlink(missing_ok=True)  # a curve it no longer follows
        router.training = {k: v for k, v in (router.training or {}).items() if k != "curve"}
    held.save()
    return [{"router": router.name, "anchor": router.anchor, "untrained": True} for router in held.spec.routers]


def varied_config(profile: Profile, pairs: list[str], flag: str = "--set") -> TrainConfig:
    """The full profile's router config with each ``KEY=VALUE`` applied (VALUE read as YAML: 0.2, 32, sd);
    an unknown key or a bad value is a ValueError of one line naming ``flag``, raised before anything is copied."""
    updates = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} takes KEY=VALUE, got {pair!r}")
        updates[key.strip()] = yaml.safe_load(value)
    try:
        return TrainConfig.model_validate({**router_config(profile).model_dump(), **updates})
    except ValidationError as exc:
        raise ValueError(f"{flag}: {first_error(exc)}") from None


def check_reproduced(eval_settings: EvalSettings, run: Path, work: Path) -> None:
    """Exit unless the bundle's single-objective experts give the run's answers to every prompt."""
    settings = eval_settings.model_copy(update={"methods": ["experts"]})
    evaluate(settings, work / "reproduced", overwrite=True, progress=True)
    for committed in sorted((run / "generations" / "experts").glob("*.jsonl")):
        answers = [row["response"] for row in read_jsonl(committed, required=("response",))]
        fresh = work / "reproduced" / "generations" / "experts" / committed.name
        again = [row["response"] for row in read_jsonl(fresh, required=("response",))]
        differ = sum(a != b for a, b in zip(answers, again)) + abs(len(answers) - len(again))
        if differ:
            sys.exit(f"expert '{committed.stem}' answers {differ} of {len(answers)} prompts otherwise than in {run}")
        print(f"expert '{committed.stem}': all {len(answers)} answers as in {run.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a committed run folder here (its generations are reused)")
    parser.add_argument("--bundle", type=Path, required=True, help="the run's bundle, relative to this directory")
    parser.add_argument("--tag", required=True, help="names the copy: work/RUN-TAG and RUN-TAG/")
    parser.add_argument(
        "--untrained", action="store_true", help="no training: every router at its static mix (the ablation)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a router-training config key changed"
    )
    args = parser.parse_args()
    if args.set and args.untrained:
        parser.error("--set changes router training and --untrained skips it: give one of them")
    run, source = HERE / args.run, HERE / args.bundle
    if not (run / "results.json").is_file() or not (run / "generations").is_dir():
        parser.error(f"{run}: no results.json and generations/ (a committed run folder)")
    if not (source / "hoe.json").is_file():
        parser.error(f"{source}: not a bundle (no hoe.json)")
    if not args.tag.isidentifier():
        parser.error(f"--tag must be an identifier, got {args.tag!r}")
    recorded = json.loads((run / "run.json").read_text())
    profile = dataclasses.replace(PROFILES["full"], eval_prompts=recorded["prompts"]["limit"])
    try:
        config = varied_config(profile, args.set)
    except ValueError as exc:
        parser.error(str(exc))
    eval_settings = suite_eval_settings(source, len(recorded["objectives"]), profile)
    planned = plan(eval_settings)  # the anchors are the bundle's, so the grid is known before training
    comparable = (
        [[float(v) for v in p] for p in planned.preferences] == recorded["preferences"]
        and (eval_settings.prompts, eval_settings.split) == (recorded["prompts"]["spec"], recorded["prompts"]["split"])
        and eval_settings.decoding.model_dump() == recorded["decoding"]
    )
    if not comparable:
        parser.error(f"{run} was evaluated with other preferences, prompts or decoding than the full profile's")
    work = HERE / "work" / f"{args.run}-{args.tag}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work / "bundle")
    eval_settings = eval_settings.model_copy(update={"bundle": str(work / "bundle")})
    check_reproduced(eval_settings, run, work)
    routers = (
        reset_routers(work / "bundle")
        if args.untrained
        else train_routers(work / "bundle", profile, progress=True, config=config)
    )
    generations = work / "evaluation" / "generations"
    for method in (path for path in (run / "generations").iterdir() if path.name != "hoe"):
        shutil.copytree(method, generations / method.name)
    results = evaluate(eval_settings, work / "evaluation", overwrite=True, progress=True)
    print(methods_table(results) + "\n" + verdict(results).replace("**", ""))
    shutil.copy2(run / "recipe.yaml", work / "recipe.yaml")
    target = HERE / f"{args.run}-{args.tag}"
    copy_evaluation(work, target)
    summary = {"routers": routers, **({"set": args.set} if args.set else {})}
    (target / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    copy_router_records(work / "bundle", target)
    print(f"copied to {target}")


if __name__ == "__main__":
    main()
