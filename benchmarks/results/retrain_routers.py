"""A suite's routers trained again (a change to router training) and HoE evaluated again, the peers reused.

    .venv/bin/python benchmarks/results/retrain_routers.py --run helpful-harmless-134-prompts \\
        --bundle work/helpful-harmless/helpful-harmless/bundle --tag calibrated        # ~30 min on 2 CPU cores

Why: the peers (soup, per-λ merging, Rewarded Soups, MOD, the experts, the base) do not depend on the
routers, so after a change to router training only HoE needs new answers. This copies the bundle to
``work/RUN-TAG/bundle``, trains its routers under the demo's full profile (``train_routers``: a router
whose recorded settings or calibration rule differ is trained again), copies the committed run's
generations of every method but HoE into a fresh evaluation folder (the harness reuses them) and
evaluates with the run's settings; the result is copied to ``RUN-TAG/`` beside the run, so the two
are compared on the same prompts and the same peers' answers.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from run import copy_evaluation

from hoe.evaluation import Decoding, EvalSettings, evaluate, methods_table, verdict
from hoe.pipeline.demo import PROFILES, train_routers

HERE = Path(__file__).resolve().parent


def copy_router_records(bundle: Path, target: Path) -> None:
    """Each router's PPO curve and training record (normalisation, z*, OMD weights) into target/routers/."""
    (target / "routers").mkdir(parents=True, exist_ok=True)
    for curve in (bundle / "routers").glob("*.curve.csv"):
        shutil.copy2(curve, target / "routers" / curve.name)
    routers = json.loads((bundle / "hoe.json").read_text())["routers"]
    records = [{key: router[key] for key in ("name", "anchor", "covers", "training")} for router in routers]
    (target / "routers" / "training.json").write_text(json.dumps(records, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a committed run folder here (its generations are reused)")
    parser.add_argument("--bundle", type=Path, required=True, help="the run's bundle, relative to this directory")
    parser.add_argument("--tag", required=True, help="names the copy: work/RUN-TAG and RUN-TAG/")
    args = parser.parse_args()
    run, source = HERE / args.run, HERE / args.bundle
    if not (run / "results.json").is_file() or not (run / "generations").is_dir():
        parser.error(f"{run}: no results.json and generations/ (a committed run folder)")
    if not (source / "hoe.json").is_file():
        parser.error(f"{source}: not a bundle (no hoe.json)")
    if not args.tag.isidentifier():
        parser.error(f"--tag must be an identifier, got {args.tag!r}")
    settings = json.loads((run / "results.json").read_text())["settings"]
    recorded = json.loads((run / "run.json").read_text())
    work = HERE / "work" / f"{args.run}-{args.tag}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work / "bundle")
    profile = PROFILES["full"]
    routers = train_routers(work / "bundle", profile, progress=True)
    generations = work / "evaluation" / "generations"
    for method in (path for path in (run / "generations").iterdir() if path.name != "hoe"):
        shutil.copytree(method, generations / method.name)
    prompts, decoding = settings["prompts"], settings["decoding"]
    two = len(recorded["objectives"]) == 2
    eval_settings = EvalSettings(
        bundle=str(work / "bundle"),
        preferences=profile.preferences_2 if two else profile.preferences_3,  # as run_suite evaluates
        prompts=prompts["spec"],
        split=prompts["split"],
        limit=prompts["limit"],
        decoding=Decoding(**decoding),
    )
    results = evaluate(eval_settings, work / "evaluation", overwrite=True, progress=True)
    if json.loads((work / "evaluation" / "run.json").read_text())["preferences"] != recorded["preferences"]:
        raise SystemExit(f"the preferences differ from {run}'s: not comparable")
    print(methods_table(results) + "\n" + verdict(results).replace("**", ""))
    shutil.copy2(run / "recipe.yaml", work / "recipe.yaml")
    target = HERE / f"{args.run}-{args.tag}"
    copy_evaluation(work, target)
    (target / "summary.json").write_text(json.dumps({"routers": routers}, indent=2) + "\n")
    copy_router_records(work / "bundle", target)
    print(f"copied to {target}")


if __name__ == "__main__":
    main()
