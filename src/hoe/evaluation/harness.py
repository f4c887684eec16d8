"""``hoe evaluate``: every method at every preference on the same prompts with the same decoding.

Generations are cached per (method, point) under ``OUT/generations`` and appended batch by batch,
so an interrupted run resumes where it stopped; ``OUT/run.json`` records what the generations
depend on and a run with other settings is refused rather than mixed in. Under ``accelerate
launch`` each process takes every n-th (method, point) job; the main process then scores and
writes the report (``hoe.evaluation.report``), which can also be rebuilt from the cache alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from hoe.checkpoints.chat import context_length, encode_prompts, fit_prompts
from hoe.checkpoints.loading import load_tokenizer
from hoe.data import load_prompts
from hoe.errors import HoEError
from hoe.evaluation.costs import measure_costs, representative_points
from hoe.evaluation.methods import METHODS, Context, Point, check_methods, merge_setting, single_experts
from hoe.evaluation.preference_sets import preference_set
from hoe.evaluation.report import build_report
from hoe.evaluation.settings import EvalSettings
from hoe.merging.merge_methods import get_method
from hoe.model.bundle import Bundle, load_bundle
from hoe.rewards.scoring import check_objective_name
from hoe.rl.config import check_objectives, load_config
from hoe.settings import flag_name
from hoe.utils.io import check_apart, one_writer, write_json
from hoe.utils.resumable import resumable_batches

log = logging.getLogger(__name__)
RUN_FILE = "run.json"
LOCK_FILE = ".evaluate.lock"
TIMING_FILE = "timing.json"


@dataclass
class Plan:
    settings: EvalSettings
    bundle: object
    prompts: list[str]
    preferences: list[np.ndarray]
    points: list[Point]
    scorers: dict[str, str]


def plan(settings: EvalSettings) -> Plan:
    """Validate the whole run (methods, preferences, prompts, scorers, experts) without loading a model."""
    check_methods(settings.methods)
    if settings.merge_method is not None:
        get_method(settings.merge_method)
    bundle = load_bundle(settings.bundle)
    preferences = preference_set(settings.preferences, bundle.objectives, anchors=bundle.pool())
    unknown = [k for k in settings.scorers if k not in bundle.objectives]
    if unknown:
        raise HoEError(
            f"--scorers names '{unknown[0]}', which is not an objective of the bundle ({', '.join(bundle.objectives)})"
        )
    scorers = {o: settings.scorers.get(o, bundle.spec.scorers.get(o, o)) for o in bundle.objectives}
    bundle.check_code_trusted(scorers, settings.trust_bundle_code)
    for objective, spec in scorers.items():
        try:
            check_objective_name(spec)
        except HoEError as exc:
            raise HoEError(f"objective '{objective}' needs a scorer (--scorers {objective}=SPEC): {exc}") from None
    if settings.reference is not None and len(settings.reference) != len(bundle.objectives):
        raise HoEError(
            f"{flag_name('reference')} has {len(settings.reference)} values for {len(bundle.objectives)} objectives"
        )
    prompts = load_prompts(settings.prompts, settings.split, limit=settings.limit)
    _check_room(bundle, settings)
    if "morlhf" in settings.methods or settings.morlhf_config is not None:
        check_objectives(_morlhf_config(settings), bundle.objectives)  # unknown keys and bad values fail here
    if any(METHODS[m].needs_experts for m in settings.methods):
        single_experts(bundle, settings.task_vectors)
    context = Context(bundle, None, settings.decoding, Path("."), settings.task_vectors)
    points = [p for m in settings.methods for p in METHODS[m](context).points(preferences)]
    return Plan(settings, bundle, prompts, preferences, points, scorers)


def _check_room(bundle: Bundle, settings: EvalSettings) -> None:
    """The model's context must hold a prompt and the new tokens: found from the config and the
    tokenizer (no weights), before the run folder is written."""
    tokenizer = load_tokenizer(bundle.spec.base_model, trust_remote_code=settings.trust_remote_code)
    fit_prompts(
        tokenizer,
        [],
        context_length(bundle.spec.base_model),
        settings.decoding.max_new_tokens,
        settings.chat,
        settings.decoding.max_prompt_tokens,
    )


def evaluate(settings: EvalSettings, out: str | Path, *, overwrite: bool = False, progress: bool = True) -> dict:
    """Generate what is not cached yet, then (main process) score and write the report."""
    from accelerate import PartialState

    the_plan = plan(settings)
    out = Path(out)
    check_apart(out, (the_plan.bundle.folder,))
    state = PartialState(cpu=settings.device == "cpu")
    with contextlib.ExitStack() as held:
        if state.is_main_process:
            held.enter_context(_output_lock(out))
            _claim_output(out, the_plan, overwrite)
        return _evaluate_claimed(the_plan, settings, out, state, progress)


@contextlib.contextmanager
def _output_lock(out: Path):
    """One ``hoe evaluate`` per output folder at a time: a second run (which could clear the first's
    generations with --overwrite, or interleave its report) gets one line instead."""
    out.mkdir(parents=True, exist_ok=True)
    with one_writer(out, "hoe evaluate", lock=out / LOCK_FILE, keep=True):
        yield


def _evaluate_claimed(the_plan: Plan, settings: EvalSettings, out: Path, state, progress: bool) -> dict:
    state.wait_for_everyone()
    device = str(state.device) if settings.device == "auto" else settings.device
    mine = the_plan.points[state.process_index :: state.num_processes]
    _generate(the_plan, mine, out, device, progress and state.is_main_process, timing=False)
    state.wait_for_everyone()
    if state.is_main_process:  # timing runs alone, so processes do not slow each other down
        _generate(the_plan, [], out, device, progress, timing=True)
    state.wait_for_everyone()
    if not state.is_main_process:
        return {}
    return build_report(out, reference=settings.reference)


def _fingerprint(the_plan: Plan) -> dict:
    """What the cached generations depend on (methods and preferences may change between runs)."""
    s = the_plan.settings
    fingerprint = {
        **the_plan.bundle.part_fingerprints(),
        "prompts_sha": hashlib.sha256("\0".join(the_plan.prompts).encode()).hexdigest()[:16],
        "decoding": s.decoding.model_dump(),
        "task_vectors": s.task_vectors,
        "merge_method": s.merge_method,
        "chat": s.chat,
        "dtype": s.dtype,
    }
    if "morlhf" in s.methods:
        fingerprint["morlhf"] = _morlhf_config(s).model_dump()
    return fingerprint


def _claim_output(out: Path, the_plan: Plan, overwrite: bool) -> None:
    """Refuse to mix generations of different settings in one output folder."""
    fingerprint = _fingerprint(the_plan)
    run_file = out / RUN_FILE
    if run_file.is_file():
        old = json.loads(run_file.read_text()).get("fingerprint")
        if old != fingerprint:
            if not overwrite:
                changed = [k for k in fingerprint if (old or {}).get(k) != fingerprint[k]]
                kept = " (only the routers differ: with it, only HoE's answers are generated again)"
                raise HoEError(
                    f"'{out}' holds generations of another run ({changed[0]} differs); pass --overwrite or choose "
                    f"another --out{kept if changed == ['routers_sha'] else ''}"
                )
            _clear_stale(out, old or {}, fingerprint)
    s = the_plan.settings
    write_json(
        run_file,
        {
            "format": 1,
            "fingerprint": fingerprint,
            "bundle": str(Path(s.bundle).resolve()),
            "objectives": the_plan.bundle.objectives,
            "scorers": the_plan.scorers,
            "methods": s.methods,
            "preferences": [[float(v) for v in p] for p in the_plan.preferences],
            "points": [asdict(p) for p in the_plan.points],
            "prompts": {"spec": s.prompts, "split": s.split, "limit": s.limit, "count": len(the_plan.prompts)},
            "decoding": s.decoding.model_dump(),
            "task_vectors": s.task_vectors,
            "device": s.device,
            "merge": dict(zip(("method", "params"), merge_setting(the_plan.bundle, s.merge_method))),
        },
    )


def _clear_stale(out: Path, old: dict, new: dict) -> None:
    """Remove what another run's settings generated. When only the routers changed (a router trained
    again), the answers of every method that does not route keep: re-evaluating a retrained bundle then
    generates HoE's answers only, not every peer's again (most of a full evaluation's time)."""
    only_routers = {k: v for k, v in old.items() if k != "routers_sha"} == {
        k: v for k, v in new.items() if k != "routers_sha"
    }
    keep = {name for name, method in METHODS.items() if not method.uses_routers} if only_routers else set()
    generations = out / "generations"
    for folder in generations.iterdir() if generations.is_dir() else ():
        if folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)
    if not only_routers:
        shutil.rmtree(out / "work", ignore_errors=True)  # merged and MORLHF adapters of the other experts
    (out / TIMING_FILE).unlink(missing_ok=True)  # it timed the other run's models side by side


def _morlhf_config(settings: EvalSettings):
    return load_config(settings.morlhf_config).model_copy(update={"trainable": "lora", "scalarisation": "linear"})


def job_path(out: Path, point: Point) -> Path:
    return out / "generations" / point.method / f"{point.label}.jsonl"


def _generate(the_plan: Plan, points: list[Point], out: Path, device: str, progress: bool, timing: bool) -> None:
    """Generate the missing jobs; with ``timing`` (the main process) also time every method side by
    side once (``timing.json``: interleaved rounds, the cost ratios the report quotes)."""
    s = the_plan.settings
    todo = [
        p for p in points if not (job_path(out, p).is_file() and job_path(out, p).with_suffix(".meta.json").is_file())
    ]
    timing = timing and "base" in s.methods and not _timing_covers(out, the_plan.points)
    if not todo and not timing:
        return
    tokenizer = load_tokenizer(the_plan.bundle.spec.base_model, trust_remote_code=s.trust_remote_code)
    tokenizer.padding_side = "left"
    prompts, truncated = fit_prompts(
        tokenizer,
        the_plan.prompts,
        context_length(the_plan.bundle.spec.base_model),
        s.decoding.max_new_tokens,
        s.chat,
        s.decoding.max_prompt_tokens,
    )
    if truncated:
        log.warning(
            "%d of %d prompts were longer than the context or --max-prompt-tokens allow and were cut from the left",
            truncated,
            len(prompts),
        )
    context = Context(
        the_plan.bundle,
        tokenizer,
        s.decoding,
        out / "work",
        s.task_vectors,
        s.merge_method,
        device,
        s.dtype,
        s.trust_remote_code,
        scorers=the_plan.scorers,
        progress=progress,
        morlhf=_morlhf_config(s) if "morlhf" in s.methods else None,
    )
    methods: dict[str, object] = {}
    bar = tqdm(todo, desc="evaluate", unit="model", disable=not progress or not todo)
    for point in bar:
        bar.set_postfix_str(f"{point.method} {point.label}")
        method = methods.setdefault(point.method, METHODS[point.method](context))
        _run_job(method, point, prompts, context, job_path(out, point), s.chat, truncated)
    if timing:
        write_json(
            out / TIMING_FILE, measure_costs(methods, the_plan.points, context, prompts, chat=s.chat, progress=progress)
        )


def _timing_covers(out: Path, points: list[Point]) -> bool:
    """Whether timing.json timed every method of this run. A run that adds a method to a folder of the
    same settings (the fingerprint leaves the method list out) times them all again, side by side:
    ratios measured in different runs are not comparable."""
    path = out / TIMING_FILE
    if not path.is_file():
        return False
    return set(representative_points(points)) <= set(json.loads(path.read_text()).get("methods", {}))


def _run_job(
    method, point: Point, prompts: list[str], context: Context, path: Path, chat: bool, truncated: int
) -> None:
    start = time.perf_counter()
    method.setup(point)
    setup_s = time.perf_counter() - start
    tokenizer, decoding = context.tokenizer, context.decoding

    def answer(index: int, batch: list[dict]) -> list[dict]:
        torch.manual_seed(_seed(decoding.seed, point, index))
        inputs = {
            k: v.to(context.device)
            for k, v in encode_prompts(tokenizer, [r["prompt"] for r in batch], chat=chat).items()
        }
        begin = time.perf_counter()
        with torch.no_grad():
            ids = method.generate(inputs, point).cpu()
        wall = time.perf_counter() - begin
        counts = token_counts(ids, tokenizer.eos_token_id)
        total = max(1, sum(counts))
        texts = [tokenizer.decode(row[:n], skip_special_tokens=True) for row, n in zip(ids.tolist(), counts)]
        return [{**r, "response": t, "tokens": n, "wall_s": wall * n / total} for r, t, n in zip(batch, texts, counts)]

    requests = [{"index": i, "prompt": p} for i, p in enumerate(prompts)]
    resumable_batches(
        requests, answer, batch_size=decoding.batch_size, output=path, key_fields=("index", "prompt"), progress=False
    )
    write_json(path.with_suffix(".meta.json"), {**asdict(point), "setup_s": setup_s, "truncated_prompts": truncated})


def token_counts(ids: torch.Tensor, eos_token_id: int | None) -> list[int]:
    """Generated tokens per row: up to and including the first end-of-sequence token."""
    counts = []
    for row in ids.tolist():
        counts.append(row.index(eos_token_id) + 1 if eos_token_id is not None and eos_token_id in row else len(row))
    return counts


def _seed(seed: int, point: Point, batch: int) -> int:
    digest = hashlib.sha256(f"{seed}/{point.method}/{point.label}/{batch}".encode()).digest()
    return int.from_bytes(digest[:4], "big")
