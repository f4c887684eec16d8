"""The embedded default run, offline and end to end (``hoe demo`` / ``make demo``).

Two suites on HH-RLHF prompts, scored offline. Two objectives, concision against helpfulness (the style
suite ``recipes/concise-informative.yaml``, whose two experts each move their own objective by a large
effect and cost the other one: benchmarks/experts); three objectives, the same two and readability
(``recipes/elementary-concise-informative.yaml``: P-Soups' "elementary" preference, distilled from its
own prompt; the two-objective suite's experts are reused from the cache). For each: make the single-
objective experts of SmolLM2-135M-Instruct (by the methods their recipe names; every step cached),
extract them by task-SVD, merge with PCB, build the HoE bundle, train its routers by PPO (Tchebycheff +
OMD), answer under several preferences with one model, and evaluate HoE against soup, merged, Rewarded
Soups, MOD, the experts and the base on held-out prompts: fronts, hypervolume, cost per token.

``full`` runs both suites from the shipped recipes as they are and makes the numbers the README quotes.
``quick`` is a tour of the same steps on the two-objective suite in about 20 minutes: fewer prompts
and steps per expert (one DPO round where the recipe iterates), randomized SVD, 12 held-out prompts;
its experts are weaker than the recipes'.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from hoe.checkpoints.loading import DEFAULT_MODEL, resolve_checkpoint
from hoe.errors import HoEError
from hoe.evaluation import Decoding, EvalSettings, evaluate, methods_table, verdict
from hoe.model import HoEModel
from hoe.model.bundle import load_bundle
from hoe.pipeline.build import build_bundle
from hoe.pipeline.recipe import Recipe, load_recipe
from hoe.pipeline.train_router import train_router
from hoe.recipes import shipped_recipe
from hoe.rl import TrainConfig, load_config
from hoe.rl.trainer import CALIBRATION
from hoe.settings import flag_name

TRAIN_PROMPTS = "packaged:hh-helpful-sft+packaged:hh-harmless"
EVAL_PROMPTS = "packaged:hh-helpful-test+packaged:hh-harmless"  # the heldout split: no expert trained on these


# suite -> the shipped recipe it runs (recipes/<name>.yaml), under the profile's overrides
SUITES = {
    "2-objectives": "concise-informative",
    "3-objectives": "elementary-concise-informative",
    "helpful-harmless": "helpful-harmless",  # the paper's headline setting: benchmarks/results, not the demo
}
DEMO_SUITES = ("2-objectives", "3-objectives")  # what `hoe demo --profile full` runs, in order


@dataclass(frozen=True)
class Profile:
    prompt_count: int | None  # training prompts per expert; None: the recipe's own
    steps: int | None  # fine-tuning steps per expert (one round where the recipe iterates); None: the recipe's own
    eval_prompts: int
    max_new_tokens: int
    preferences_2: str
    preferences_3: str
    max_prompt_tokens: int  # held-out prompts are cut from the left to this (prefill dominates on the CPU)
    router_steps: int  # PPO steps per router (Tchebycheff + OMD at its anchor)
    router_batch: int  # prompts per PPO step
    router_tokens: int  # sampled tokens per answer in PPO
    svd: str = "exact"
    router_learning_rate: float = 5e-3
    router_calibration: int = 8  # prompts that fit the reward normalisation and z*
    suites: tuple[str, ...] = DEMO_SUITES  # the suites it runs, in order


PROFILES = {
    # the two-objective suite only, with answers long enough (48 tokens) for concision to show
    "quick": Profile(
        prompt_count=48,
        steps=24,
        eval_prompts=12,
        max_new_tokens=48,
        preferences_2="grid:3+anchors",
        preferences_3="simplex:0.5+anchors",
        max_prompt_tokens=96,
        router_steps=3,
        router_batch=8,
        router_tokens=24,
        svd="randomized",
        suites=("2-objectives",),
    ),
    "full": Profile(
        prompt_count=None,
        steps=None,
        eval_prompts=64,
        max_new_tokens=48,
        preferences_2="grid:6+anchors",
        preferences_3="simplex:0.5+anchors",
        max_prompt_tokens=192,
        router_steps=16,
        router_batch=16,
        router_tokens=48,
        router_calibration=16,
    ),
}

SAMPLE_PROMPT = "How can I get my neighbour's dog to stop barking at night?"


def suite_recipe(suite: str, profile: Profile, rank: int | None = None) -> Recipe:
    """The shipped recipe of one suite with the profile's overrides (prompts and steps per expert,
    the SVD backend) and ``rank`` if given (else the recipe's own, chosen there by a measurement). A rank
    given here is every expert's and merge's: an expert's own ``rank:`` in the recipe does not outlive it."""
    recipe, _ = load_recipe(shipped_recipe(SUITES[suite]))
    if rank:
        recipe.rank = rank
        for part in [*recipe.experts, *recipe.merges]:
            part.rank = None
    for expert in recipe.experts:
        expert.svd = profile.svd
        if expert.make is None:
            continue
        if profile.prompt_count is not None:
            expert.make.prompt_count = profile.prompt_count
        if profile.steps is not None:  # a shorter tour: one DPO round instead of the recipe's iterations
            expert.make.steps, expert.make.round_steps = profile.steps, None
    return recipe


def write_suite_recipe(folder: Path, suite: str, profile: Profile, recipe: Recipe) -> Path:
    """The recipe the suite builds (``suite_recipe``'s), written for the record: the shipped one with the
    profile's overrides."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "recipe.yaml"
    header = f"# recipes/{SUITES[suite]}.yaml under the demo's '{profile_name(profile)}' profile\n"
    body = yaml.safe_dump(recipe.model_dump(exclude_defaults=True), sort_keys=False)
    path.write_text(header + body)
    return path


def profile_name(profile: Profile) -> str:
    return next((name for name, known in PROFILES.items() if known == profile), "custom")


def summarise(report: dict) -> str:
    """A short table of an extraction report, grouped by projection."""
    groups: dict[str, list[dict]] = {}
    for module in report["modules"]:
        groups.setdefault(module["module"].rsplit(".", 1)[-1], []).append(module)
    lines = [f"{'projection':<12} {'modules':>7} {'rank':>5} {'energy kept':>12} {'rel. error':>11}"]
    for name, modules in groups.items():
        ranks = sorted({m["rank"] for m in modules})
        energy = sum(m["retained_energy"] for m in modules) / len(modules)
        error = sum(m["relative_error"] for m in modules) / len(modules)
        rank_text = str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]}-{ranks[-1]}"
        lines.append(f"{name:<12} {len(modules):>7} {rank_text:>5} {energy:>12.3f} {error:>11.3f}")
    totals = report["totals"]
    lines.append(
        f"total: {totals['modules']} modules, {totals['adapter_parameters']:,} adapter parameters, "
        f"overall relative error {totals['overall_relative_error']:.3f}, "
        f"{totals['wall_time_s']:.1f} s, peak RSS {totals['peak_rss_mb']:.0f} MB"
    )
    return "\n".join(lines)


def run_suite(suite: str, profile: Profile, out: Path, rank: int | None, progress: bool) -> dict:
    """Build one suite's bundle and evaluate every method on held-out prompts."""
    folder = out / suite
    recipe = suite_recipe(suite, profile, rank)
    recipe_file = write_suite_recipe(folder, suite, profile, recipe)
    start = time.perf_counter()
    bundle = build_bundle(recipe_file, folder / "bundle", progress=progress)
    built = time.perf_counter() - start
    first = bundle.experts[0]
    report = json.loads((bundle.expert_path(first) / "extract_report.json").read_text())
    print(
        f"  bundle {folder / 'bundle'} ({built:.0f} s): LoRA experts {', '.join(e.name for e in bundle.experts)}; "
        f"routers {', '.join(r.name for r in bundle.routers)}"
    )
    # the ranks are the table's: an expert may have its own rank in the recipe
    print(f"  task-SVD of expert '{first.name}' ({profile.svd}):\n" + _indent(summarise(report), 4))
    routers = train_routers(folder / "bundle", profile, progress)
    settings = suite_eval_settings(folder / "bundle", len(bundle.objectives), profile)
    start = time.perf_counter()
    results = evaluate(settings, folder / "evaluation", overwrite=True, progress=progress)
    print(
        f"  evaluation ({time.perf_counter() - start:.0f} s), {results['settings']['prompts']['count']} held-out "
        "prompts, "
        f"{len(results['points'])} models:\n" + _indent(methods_table(results), 4)
    )
    print(_indent(verdict(results).replace("**", ""), 4))
    print(f"  report: {folder / 'evaluation' / 'report.md'}; fronts: {folder / 'evaluation' / 'fronts.png'}")
    return {
        "bundle": str(folder / "bundle"),
        "build_seconds": round(built, 1),
        "routers": routers,
        "methods": results["methods"],
    }


def suite_eval_settings(bundle: Path, objectives: int, profile: Profile) -> EvalSettings:
    """How a suite's bundle is evaluated under the profile: its preference grid, the held-out prompts, decoding."""
    return EvalSettings(
        bundle=str(bundle),
        preferences=profile.preferences_2 if objectives == 2 else profile.preferences_3,
        prompts=EVAL_PROMPTS,
        split="heldout",
        limit=profile.eval_prompts,
        decoding=Decoding(
            max_new_tokens=profile.max_new_tokens, batch_size=16, max_prompt_tokens=profile.max_prompt_tokens
        ),
    )


def router_config(profile: Profile):
    return load_config(
        None,
        prompts=TRAIN_PROMPTS,
        prompt_count=profile.router_steps * profile.router_batch,
        steps=profile.router_steps,
        batch_size=profile.router_batch,
        max_new_tokens=profile.router_tokens,
        max_prompt_tokens=profile.max_prompt_tokens,
        learning_rate=profile.router_learning_rate,
        calibration_prompts=profile.router_calibration,
        checkpoint_every=4,
    )


def train_routers(bundle_path: Path, profile: Profile, progress: bool, config: TrainConfig | None = None) -> list[dict]:
    """PPO for every router of the bundle at its anchor (Tchebycheff + OMD) under the profile's config (or
    ``config``: a benchmark's variant of it); a router already trained with these settings and calibration
    rule (kept by the rebuild) is not trained again."""
    config = config or router_config(profile)
    wanted = {k: v for k, v in config.model_dump().items() if k != "scorers"}
    summaries = []
    for router in load_bundle(bundle_path).routers:
        recorded = (router.training or {}).get("config") or {}
        current = (router.training or {}).get("calibration") == CALIBRATION
        if router.trained and current and {k: v for k, v in recorded.items() if k != "scorers"} == wanted:
            first, last, seconds = router.training["first"], router.training["last"], None
        else:
            start = time.perf_counter()
            summary = train_router(bundle_path, router.anchor, config, overwrite=True, progress=progress)
            first, last, seconds = summary["first"], summary["last"], round(time.perf_counter() - start, 1)
        took = "cached" if seconds is None else f"{seconds:.0f} s"
        print(
            f"  router {router.name}: {config.steps} PPO steps × {config.batch_size} prompts ({took}); Tchebycheff "
            "objective "
            f"{first['tchebycheff']:+.3f} → {last['tchebycheff']:+.3f} (training batches), KL to the static mix "
            f"{last['kl']:.3f}"
        )
        summaries.append(
            {
                "router": router.name,
                "anchor": router.anchor,
                "steps": config.steps,
                "train_seconds": seconds,
                "first_tchebycheff": first["tchebycheff"],
                "last_tchebycheff": last["tchebycheff"],
                "last_kl": last["kl"],
            }
        )
    return summaries


SAMPLE_PREFERENCES = [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]


def measured_points(results_file: Path, objectives: list[str]) -> list[str]:
    """HoE's means over the held-out prompts at the closing sample's preferences, from the evaluation:
    one prompt's three answers may happen not to show the trade-off; these means are what was measured."""
    results = json.loads(results_file.read_text())
    lines = []
    for preference in SAMPLE_PREFERENCES:
        point = next((p for p in results["points"] if p["method"] == "hoe" and p["preference"] == preference), None)
        if point is None:
            continue
        label = ", ".join(f"{o}={v:g}" for o, v in zip(objectives, preference))
        means = ", ".join(f"{o} {m:.3g} ± {se:.2g}" for o, m, se in zip(objectives, point["mean"], point["se"]))
        lines.append(f"    [{label}] {means}; {point['tokens_per_response']:.0f} tokens per answer")
    if lines:
        print(f"  measured on the {results['points'][0]['prompts']} held-out prompts (HoE's mean ± SE per objective):")
        print("\n".join(lines))
    return lines


def sample_answers(bundle: Path, objectives: list[str]) -> list[dict]:
    """One prompt answered under three preferences in one batch: one model, a λ per row. Each line
    says how many words the answer has: the answer itself is cut to fit the terminal."""
    model = HoEModel.from_bundle(bundle)
    preferences = SAMPLE_PREFERENCES
    texts = model.generate([SAMPLE_PROMPT] * 3, preferences=preferences, max_new_tokens=40, do_sample=False)
    answers = []
    print(f"  prompt: {SAMPLE_PROMPT}")
    for preference, text in zip(preferences, texts):
        label = ", ".join(f"{o}={v:g}" for o, v in zip(objectives, preference))
        words = text.split()
        print(f"    [{label}] ({len(words)} words) {' '.join(words)[:150]}")
        answers.append({"preference": preference, "response": text})
    return answers


def run_demo(
    out: str | Path = "runs/demo", profile: str = "quick", rank: int | None = None, progress: bool = True
) -> dict:
    """The profile's suites end to end; returns (and writes) a summary with every artifact's place."""
    if profile not in PROFILES:
        raise HoEError(f"unknown profile '{profile}' (choose from {', '.join(PROFILES)})")
    if rank is not None and rank <= 0:
        raise HoEError(f"{flag_name('rank')} must be positive, got {rank}")
    chosen = PROFILES[profile]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    last = len(chosen.suites) + 2
    print(f"[1/{last}] embedded base model {DEFAULT_MODEL}: {resolve_checkpoint(DEFAULT_MODEL)} (profile '{profile}')")
    summary = {"profile": profile, "settings": asdict(chosen), "suites": {}}
    for step, suite in enumerate(chosen.suites, 2):
        objectives = suite_recipe(suite, chosen, rank).objectives
        print(
            f"[{step}/{last}] {suite} ({', '.join(objectives)}): experts (by their recipe's methods; cached), "
            "task-SVD, PCB merge, bundle, router PPO, evaluation"
        )
        summary["suites"][suite] = run_suite(suite, chosen, out, rank, progress)
    print(f"[{last}/{last}] one model, a preference per row (greedy, 40 new tokens):")
    objectives = suite_recipe("2-objectives", chosen, rank).objectives
    summary["answers"] = sample_answers(out / "2-objectives" / "bundle", objectives)
    measured_points(out / "2-objectives" / "evaluation" / "results.json", objectives)
    summary["total_seconds"] = round(time.perf_counter() - start, 1)
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(
        f"artifacts: {out.resolve()} (per suite: recipe.yaml, bundle/, evaluation/report.md, evaluation/fronts.png); "
        f"{summary['total_seconds']} s in all"
    )
    return summary


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())
