"""``hoe make-expert``: a single-objective aligned model of the base, for objectives that have
no off-the-shelf expert. Candidates are sampled once per (base, prompts, sampling settings) and
shared by every objective; scores go through the shared cache. Then, on the whole model (a full
fine-tune, so task-SVD has real work to do afterwards) or, with ``lora_rank``, on a new LoRA of it
(the output is then the merged model plus the peft adapter in ``adapter/``):

- ``raft`` (Dong et al. 2023): supervised fine-tuning on the best of k responses per prompt;
- ``dpo`` (Rafailov et al. 2023): TRL's ``DPOTrainer`` on best-versus-worst pairs;
- ``distill`` (context distillation, Askell et al. 2021; Snell et al. 2022): the candidates are sampled
  with an instruction put before each prompt (e.g. a P-Soups preference), and the best of k is learnt
  as the answer to the bare prompt, so the expert behaves as instructed without being told. Why: best-of-k
  can only select among what the base already says; an instruction moves the samples themselves;
- ``dpo`` with an instruction: contrastive distillation (as RLCD, Yang et al. 2023): the best answer
  sampled with the instruction is preferred to the worst sampled without it. Why: the pair then
  differs by the behaviour the instruction asks for, not by the luck of one draw;
- kept prompts (``keep_prompts``): prompts the objective should leave alone, answered by one of the
  base's own samples, not selected by the objective, and learnt beside the selected answers (dpo:
  preferred to the answer the objective would pick there: the best one sampled with the instruction,
  or without one the best of the base's). Why: a reward that prefers refusals (or brevity) everywhere
  teaches an expert to refuse benign requests too; the kept prompts show it where the base's
  behaviour is to stay, and dpo's pairs also push the objective's behaviour down there;
- ``dpo`` with ``sft_weight``: DPO's loss plus that weight times the NLL of the chosen answers (as RPO,
  Pang et al. 2024). Why: DPO can lower the chosen answers' likelihood too, so a strong update drifts
  off the answers it prefers (e.g. into boilerplate); the NLL term keeps them, on kept prompts the base's own;
- iterated DPO (``round_steps``, as Xu et al. 2023; Yuan et al. 2024): DPO again from the expert of the
  previous round, on candidates sampled from it, with it as the reference. Why: one round only
  reorders what the base already says; each round starts from a model whose samples score higher;
- ``ppo``: hoe's own PPO (``hoe.rl.lora_ppo``, as MORLHF) on a LoRA of the base with the objective
  alone (rank 16 unless ``lora_rank`` says otherwise), merged into a full model at the end.

All resume after an interruption: RAFT from its own checkpoints, DPO from the trainer's, PPO
from ``hoe.rl``'s.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TypedDict

import numpy as np

from hoe.checkpoints.loading import cache_root, load_model, load_tokenizer
from hoe.data import load_prompts
from hoe.errors import HoEError
from hoe.experts.trainable_lora import LoraSettings, save_adapter_and_merge
from hoe.rewards import ScoreCache, get_scorer, score_objectives
from hoe.rewards.scoring import check_objective_name
from hoe.rl.config import TrainConfig
from hoe.rl.lora_ppo import train_lora_ppo
from hoe.training.sampling import sample_candidates
from hoe.training.settings import METHODS, REPORT_NAME, MakeExpertSettings
from hoe.training.sft import check_prompt_room, supervised_finetune
from hoe.utils.io import atomic_dir, check_output_dir, read_json, write_json

__all__ = ["METHODS", "REPORT_NAME", "MakeExpertReport", "MakeExpertSettings", "make_expert", "make_expert_summary"]


class MakeExpertReport(TypedDict, total=False):
    """What ``make_expert`` returns (and, without the training's own figures, writes as
    ``make_expert_report.json``). RAFT and DPO: the candidates' mean score and the chosen ones';
    PPO: the objective's reward over its steps."""

    base: str
    settings: dict
    method: str
    prompts: int
    pairs: int
    candidate_mean: float
    chosen_mean: float
    kept: int  # raft, distill: the base's own answers learnt beside the selected ones
    below_floor: int  # with a floor: prompts left out, none of their candidates at it
    rounds: list[dict]  # iterated dpo: each round's steps, pairs and scores
    mean_margin: float  # dpo
    resumed_from: str | None  # dpo
    first_reward: float  # ppo
    last_reward: float  # ppo
    steps: int  # ppo
    config: dict  # ppo: its TrainConfig
    final_loss: float | None
    train_seconds: float


def make_expert_summary(report: MakeExpertReport, out: str | Path) -> str:
    """The one line ``hoe make-expert`` prints: PPO's reward over its steps, or the selected
    responses against all candidates for RAFT and DPO."""
    objective, method = report["settings"]["objective"], report["settings"]["method"]
    if method == "ppo":
        first, last = report["first_reward"], report["last_reward"]
        gain = f"mean {objective} reward {first:.4f} → {last:.4f} over {report['steps']} PPO steps"
    else:
        chosen, candidates = report["chosen_mean"], report["candidate_mean"]
        gain = f"chosen responses score {chosen:.4f} against {candidates:.4f} for all candidates"
        if report.get("rounds"):
            gain += f" in the last of {len(report['rounds'])} rounds"
        if report.get("kept") and method == "dpo":
            gain += f", the base's own answer preferred to the objective's pick on {report['kept']} kept prompts"
        elif report.get("kept"):
            gain += f", learnt beside {report['kept']} of the base's own answers to the kept prompts"
        if report.get("below_floor"):
            gain += f"; {report['below_floor']} prompts left out, no candidate at the floor"
    return f"{out}: {objective} expert by {method}; {gain}; {report['train_seconds']:.0f} s of training"


def instructed(prompts: list[str], instruction: str | None) -> list[str]:
    """The prompts as distill samples them: the instruction, a blank line, the prompt (unchanged
    without an instruction). In the user's turn, so any chat template carries it."""
    if instruction is None:
        return prompts
    return [f"{instruction.strip()}\n\n{prompt}" for prompt in prompts]


def prompts_to_keep(settings: MakeExpertSettings, prompts: list[str]) -> list[str]:
    """The kept prompts (train split), none without ``keep_prompts``; loaded before any
    sampling so that a bad spec, or one that shares prompts with the training prompts (which
    would then be learnt with two contradicting answers), fails first."""
    if settings.keep_prompts is None:
        return []
    limit = settings.keep_count or settings.prompt_count
    kept = load_prompts(settings.keep_prompts, "train", limit=limit)
    training = set(prompts)
    shared = [prompt for prompt in kept if prompt in training]
    if shared:
        raise HoEError(
            f"{len(shared)} of the kept prompts are also training prompts (first: {shared[0][:60]!r}); "
            "keep_prompts must not overlap prompts"
        )
    return kept


def base_answers(
    base: str, prompts: list[str], settings: MakeExpertSettings, *, device: str, progress: bool
) -> list[tuple[str, str]]:
    """(prompt, the base's first sampled answer) for each kept prompt: a draw from the base's
    own distribution, never picked by the objective (the sampling cache is shared with any run
    that samples the same prompts)."""
    rows = sample_candidates(base, prompts, settings.sampling, device=device, progress=progress)
    return [(row["prompt"], row["responses"][0]) for row in rows if row["responses"][0].strip()]


def scored_candidates(
    base: str,
    prompts: list[str],
    instruction: str | None,
    settings: MakeExpertSettings,
    *,
    device: str,
    progress: bool,
) -> list[tuple[dict, list[float]]]:
    """(row, the objective's score of each of its k responses) per prompt: sampled with the
    instruction before the prompt if one is given (cached, shared with any run that samples the
    same prompts), and judged, as the expert learns them, as answers to the bare prompt."""
    rows = sample_candidates(
        base, instructed(prompts, instruction), settings.sampling, device=device, progress=progress
    )
    rows = [{**row, "prompt": prompt} for row, prompt in zip(rows, prompts)]
    return list(zip(rows, scores_per_row([settings.objective], rows)[settings.objective]))


def scores_per_row(objectives: list[str], rows: list[dict]) -> dict[str, list[list[float]]]:
    """Each objective's score of each row's responses, as answers to the row's prompt, grouped by row
    (through the shared score cache)."""
    prompts = [row["prompt"] for row in rows for _ in row["responses"]]
    responses = [response for row in rows for response in row["responses"]]
    flat = score_objectives(objectives, prompts, responses, cache=ScoreCache(cache_root() / "scores.sqlite"))
    grouped: dict[str, list[list[float]]] = {name: [] for name in objectives}
    start = 0
    for row in rows:
        end = start + len(row["responses"])
        for name in objectives:
            grouped[name].append(flat[name][start:end])
        start = end
    return grouped


def floor_masks(groups: list[tuple[dict, list[float]]], floor: dict[str, float] | None) -> list[list[bool]]:
    """Per prompt, whether each candidate may be chosen: it reaches every floor (all may without one),
    each floor's objective judging the candidate as an answer to the bare prompt."""
    if not floor:
        return [[True] * len(group) for _, group in groups]
    scores = scores_per_row(list(floor), [row for row, _ in groups])
    return [
        [all(scores[name][g][i] >= value for name, value in floor.items()) for i in range(len(group))]
        for g, (_, group) in enumerate(groups)
    ]


def best_eligible(group: list[float], mask: list[bool], *, last_of_ties: bool = False) -> int | None:
    """The index of the best-scoring eligible candidate, the first of tied ones or with ``last_of_ties`` the
    last (None if none is eligible)."""
    allowed = [i for i in range(len(group)) if mask[i]]
    if not allowed:
        return None
    return sorted(allowed, key=lambda i: group[i])[-1] if last_of_ties else max(allowed, key=lambda i: group[i])


def lora_of(settings: MakeExpertSettings) -> LoraSettings | None:
    """The LoRA the job trains, alpha twice the rank (None: a full fine-tune)."""
    rank = settings.trained_lora_rank
    return None if rank is None else LoraSettings(rank=rank, alpha=2.0 * rank)


def make_expert(
    base: str,
    settings: MakeExpertSettings,
    out: str | Path,
    *,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
) -> MakeExpertReport:
    """Make the expert at ``out`` (a transformers folder with ``make_expert_report.json``)."""
    check_output_dir(out, overwrite, inputs=(base,), marker="config.json")
    check_dpo_precision(settings, device)
    for name in [settings.objective, *(settings.floor or {})]:
        check_objective_name(name)
        get_scorer(name)  # a scorer that cannot load fails here, before any sampling
    prompts = load_prompts(settings.prompts, "train", limit=settings.prompt_count)
    kept = prompts_to_keep(settings, prompts)
    if settings.method != "ppo":  # the fine-tuning methods learn within max_length tokens
        check_prompt_room(load_tokenizer(base), prompts + kept, settings.max_length)
    if settings.method == "ppo":
        return _ppo(base, prompts, settings, Path(out), device=device, progress=progress)
    if settings.round_steps is not None:
        return _iterated_dpo(base, settings, Path(out), device=device, overwrite=overwrite, progress=progress)
    groups = scored_candidates(base, prompts, settings.instruction, settings, device=device, progress=progress)
    eligible = floor_masks(groups, settings.floor)
    scores = [score for _, group in groups for score in group]
    report = {
        "base": base,
        "settings": settings.model_dump(),
        "prompts": len(prompts),
        "candidate_mean": round(sum(scores) / len(scores), 6),
    }
    if settings.floor:
        report["below_floor"] = sum(not any(mask) for mask in eligible)
    if settings.method == "dpo":
        rows = dpo_rows(base, prompts, kept, groups, eligible, settings, device=device, progress=progress)
        return _dpo(
            base, rows, settings, Path(out), device=device, overwrite=overwrite, progress=progress, report=report
        )
    pairs, chosen_scores = [], []
    for (row, group), mask in zip(groups, eligible):
        best = best_eligible(group, mask)
        if best is not None and row["responses"][best].strip():
            pairs.append((row["prompt"], row["responses"][best]))
            chosen_scores.append(group[best])
    if not pairs:
        raise HoEError("every chosen response is empty or below the floor: nothing to learn from")
    report |= {"pairs": len(pairs), "chosen_mean": round(sum(chosen_scores) / len(chosen_scores), 6)}
    if kept:
        own_pairs = base_answers(base, kept, settings, device=device, progress=progress)
        pairs += own_pairs
        report["kept"] = len(own_pairs)
    log = supervised_finetune(
        base,
        pairs,
        out,
        settings.sft,
        device=device,
        overwrite=overwrite,
        progress=progress,
        extra_json={REPORT_NAME: report},
        lora=lora_of(settings),
    )
    return {**report, "final_loss": log["losses"][-1], "train_seconds": round(log["seconds"], 1)}


def finished_round(folder: Path, model: str, settings: MakeExpertSettings) -> dict | None:
    """The report of the round in ``folder`` if this job already finished it (made from ``model`` with these
    settings), else None. Why: a job killed after a round leaves it in ``<out>.rounds/``; a later job for the
    same ``out`` with other settings must train its own round, not continue from the other job's."""
    if not (folder / REPORT_NAME).is_file():
        return None
    report = read_json(folder / REPORT_NAME)
    return report if report.get("base") == model and report.get("settings") == settings.model_dump() else None


def _iterated_dpo(
    base: str, settings: MakeExpertSettings, out: Path, *, device: str, overwrite: bool, progress: bool
) -> MakeExpertReport:
    """One DPO job per round, each from the previous round's model; the rounds before the last are kept
    in ``<out>.rounds/`` until the last one is written to ``out``, so a rerun skips finished rounds."""
    rounds_dir = out.with_name(out.name + ".rounds")
    model, summaries = base, []
    for number, steps in enumerate(settings.round_steps, start=1):
        last = number == len(settings.round_steps)
        target = out if last else rounds_dir / f"round-{number}"
        one_round = settings.model_copy(update={"round_steps": None, "steps": steps})
        report = None if last else finished_round(target, model, one_round)  # finished before an interruption
        if report is None:
            report = make_expert(
                model, one_round, target, device=device, overwrite=overwrite or not last, progress=progress
            )
        summaries.append({"steps": steps, **{k: report[k] for k in ("pairs", "candidate_mean", "chosen_mean")}})
        model = str(target)
    # the saved report describes the whole job (its base and settings), not only the last round
    saved = read_json(out / REPORT_NAME)
    write_json(out / REPORT_NAME, {**saved, "base": base, "settings": settings.model_dump(), "rounds": summaries})
    shutil.rmtree(rounds_dir, ignore_errors=True)
    return {**report, "base": base, "settings": settings.model_dump(), "rounds": summaries}


def _ppo(
    base: str, prompts: list[str], settings: MakeExpertSettings, out: Path, *, device: str, progress: bool
) -> dict:
    """PPO on a LoRA of the base for the one objective; checkpoints in ``<out>.partial``."""
    objective, lora = settings.objective, lora_of(settings)
    config = TrainConfig(
        trainable="lora",
        scalarisation="single",
        objective=objective,
        prompt_count=len(prompts),
        steps=settings.steps,
        batch_size=settings.batch_size,
        max_new_tokens=settings.max_new_tokens,
        learning_rate=settings.effective_learning_rate,
        temperature=settings.temperature,
        top_p=settings.top_p,
        seed=settings.seed,
        checkpoint_every=settings.save_every,
        calibration_prompts=min(16, len(prompts)),
        lora_rank=lora.rank,
        lora_alpha=lora.alpha,
    )

    def report(rows: list[dict], seconds: float) -> tuple[str, dict]:
        first, last = rows[0][f"raw_{objective}"], rows[-1][f"raw_{objective}"]
        return REPORT_NAME, {
            "base": base,
            "settings": settings.model_dump(),
            "prompts": len(prompts),
            "method": "ppo",
            "config": config.model_dump(),
            "first_reward": first,
            "last_reward": last,
            "candidate_mean": first,
            "chosen_mean": last,
            "steps": len(rows),
            "train_seconds": round(seconds, 1),
        }

    tokenizer = load_tokenizer(base)
    train_lora_ppo(
        load_model(base, device=device),
        tokenizer,
        np.array([1.0]),
        [objective],
        {},
        config,
        prompts,
        out,
        merge=True,
        curve_name="ppo_curve.csv",
        report=report,
        device=device,
        progress=progress,
    )
    return json.loads((out / REPORT_NAME).read_text())


def dpo_pair(prompt: str, chosen: str, rejected: str, margin: float, chosen_score: float) -> dict | None:
    """One pair in TRL's conversational format, or None where there is nothing to learn: the
    objective's margin between the two is not positive, the chosen answer is empty, or both are
    the same text."""
    if margin <= 0 or not chosen.strip() or chosen == rejected:
        return None
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "margin": margin,
        "chosen_score": chosen_score,
    }


def preference_pairs(chosen_from, rejected_from=None, eligible: list[list[bool]] | None = None) -> list[dict]:
    """The best response of each prompt in ``chosen_from`` (among the ``eligible`` ones: those at or above
    the floor) against the worst in ``rejected_from`` (the same groups by default: best versus worst of k),
    ties, empty answers and prompts with no eligible answer skipped."""
    rows = []
    eligible = eligible or floor_masks(chosen_from, None)
    for (row, group), (other, other_group), mask in zip(chosen_from, rejected_from or chosen_from, eligible):
        best = best_eligible(group, mask, last_of_ties=True)  # the last of tied best ones, as always
        if best is None:
            continue
        worst = min(range(len(other_group)), key=lambda i: other_group[i])
        margin = group[best] - other_group[worst]
        pair = dpo_pair(row["prompt"], row["responses"][best], other["responses"][worst], margin, group[best])
        if pair is not None:
            rows.append(pair)
    return rows


def kept_pairs(own_answers, pulled) -> list[dict]:
    """On kept prompts: the base's own first answer preferred to the answer the objective picks
    (the best of ``pulled``), where the objective scores that one higher: the pull the expert must
    not follow there."""
    rows = []
    for (row, group), (other, other_group) in zip(own_answers, pulled):
        best = max(range(len(other_group)), key=lambda i: other_group[i])
        # the margin is the objective's preference for the rejected answer: the pull resisted
        margin = other_group[best] - group[0]
        pair = dpo_pair(row["prompt"], row["responses"][0], other["responses"][best], margin, group[0])
        if pair is not None:
            rows.append(pair)
    return rows


def dpo_rows(
    base: str,
    prompts: list[str],
    kept: list[str],
    groups,
    eligible: list[list[bool]],
    settings: MakeExpertSettings,
    *,
    device: str,
    progress: bool,
) -> dict[str, list[dict]]:
    """DPO's pairs: ``training`` on the training prompts (best versus worst of the candidates, or with
    an instruction the best instructed one versus the worst bare one; the best among the ``eligible``)
    and ``kept`` on the kept prompts."""
    sample = {"settings": settings, "device": device, "progress": progress}
    bare = groups if settings.instruction is None else scored_candidates(base, prompts, None, **sample)
    rows = {"training": preference_pairs(groups, bare, eligible), "kept": []}
    if kept:
        own = scored_candidates(base, kept, None, **sample)
        pulled = own if settings.instruction is None else scored_candidates(base, kept, settings.instruction, **sample)
        rows["kept"] = kept_pairs(own, pulled)
    return rows


def quiet_progress(trainer) -> None:
    """transformers' progress bar on TRL's trainer, with the loss on the bar instead of a dict of a dozen
    metrics printed under it at every step (the quick demo printed 24 of them in the middle of its output)."""
    from transformers import ProgressCallback

    class QuietProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{float(logs['loss']):.4f}")

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(QuietProgress)


def dpo_precision(device: str, precision: str = "auto") -> dict:
    """TRL's DPOConfig turns bf16 autocast on by default; on a CPU without native bf16 (AVX2 only) a step
    then takes 11x as long as in float32 (239 s against 21 s for 8 pairs on SmolLM2-135M, 2 cores:
    benchmarks/experts/dpo_step.py --compare precision). So DPO trains in float32 like ``hoe finetune``, and in bf16
    on a CUDA device that has it; ``precision: bf16`` asks for it on a CPU with AMX too (1.6x faster there),
    ``float32`` for float32 everywhere. ``check_dpo_precision`` has refused bf16 where it would be emulated."""
    auto = device != "cpu" and native_bf16(device)
    return {"bf16": {"auto": auto, "float32": False, "bf16": True}[precision], "fp16": False}


def native_bf16(device: str) -> bool:
    """Whether ``device`` multiplies bf16 in hardware: a CUDA device that says so, or a CPU with Intel AMX (the
    one kind of CPU measured faster in bf16 autocast than in float32). On a CPU, torch's own probe, private,
    so a torch without it counts as no."""
    import torch

    if device != "cpu":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def check_dpo_precision(settings: MakeExpertSettings, device: str) -> None:
    """``precision: bf16`` on a device that would emulate it is one line, before anything loads."""
    if settings.method != "dpo" or settings.precision != "bf16" or native_bf16(device):
        return
    where = "this CPU has no AMX" if device == "cpu" else f"device '{device}' has no bf16"
    raise HoEError(
        f"precision bf16: {where}, so every bf16 matmul would be emulated (11x slower than float32 on an AVX2 "
        "CPU); use precision auto or float32"
    )


def dpo_losses(settings: MakeExpertSettings) -> dict:
    """TRL's loss options: DPO's sigmoid loss alone, or beside an NLL term on the chosen answers."""
    if not settings.sft_weight:
        return {}
    return {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, settings.sft_weight]}


def _dpo(
    base: str,
    rows: dict[str, list[dict]],
    settings: MakeExpertSettings,
    out: Path,
    *,
    device: str,
    overwrite: bool,
    progress: bool,
    report: dict,
) -> dict:
    """DPO through TRL, checkpointing to ``<out>.partial`` and resuming from the last checkpoint."""
    try:  # optional: the training extra
        from datasets import Dataset
        from transformers.trainer_utils import get_last_checkpoint
        from trl import DPOConfig, DPOTrainer
    except ImportError as exc:
        raise HoEError(
            f"--method dpo needs TRL and datasets ({exc.name} is missing): pip install 'hoe[training]'"
        ) from None
    if not rows["training"]:
        raise HoEError("no prompt has a better and a worse response: nothing to learn from")
    training, rows = rows["training"], rows["training"] + rows["kept"]
    partial = out.with_name(out.name + ".partial")
    sft, lora = settings.sft, lora_of(settings)
    config = DPOConfig(
        output_dir=str(partial),
        per_device_train_batch_size=sft.batch_size,
        max_steps=sft.steps,
        learning_rate=sft.learning_rate,
        beta=settings.beta,
        **dpo_losses(settings),
        max_length=sft.max_length,
        logging_steps=1,
        save_strategy="steps",
        save_steps=sft.save_every,
        report_to=[],
        use_cpu=device == "cpu",
        **dpo_precision(device, settings.precision),
        seed=sft.seed,
        data_seed=sft.seed,
        disable_tqdm=not progress,
    )
    tokenizer = load_tokenizer(base)
    model = load_model(base, device=device)
    trainer = DPOTrainer(
        model=model,
        args=config,
        processing_class=tokenizer,
        train_dataset=Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows]),
        peft_config=lora.peft_config(model) if lora else None,
    )
    if progress:  # the metrics per step go to dpo_log.json
        quiet_progress(trainer)
    start = time.perf_counter()
    resume = get_last_checkpoint(str(partial)) if partial.is_dir() else None
    trainer.train(resume_from_checkpoint=resume)
    report = {
        **report,
        "pairs": len(training),
        "chosen_mean": round(sum(r["chosen_score"] for r in training) / len(training), 6),
        "mean_margin": round(sum(r["margin"] for r in training) / len(training), 6),
        **({"kept": len(rows) - len(training)} if settings.keep_prompts else {}),
        "resumed_from": resume,
        "precision": "bf16" if config.bf16 else "float32",
    }
    history = [h for h in trainer.state.log_history if "loss" in h]
    with atomic_dir(out, overwrite=overwrite) as tmp:
        trained = trainer.model if lora is None else save_adapter_and_merge(trainer.model, tmp)
        trained.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / REPORT_NAME, report)
        write_json(tmp / "dpo_log.json", {"history": history})
    shutil.rmtree(partial, ignore_errors=True)
    return {
        **report,
        "final_loss": history[-1]["loss"] if history else None,
        "train_seconds": round(time.perf_counter() - start, 1),
    }
