"""Seconds per DPO step under two settings of TRL's DPOConfig, side by side on this CPU.

    .venv/bin/python benchmarks/experts/dpo_step.py --compare precision       # ~6 min; dpo-precision.json
    .venv/bin/python benchmarks/experts/dpo_step.py --compare checkpointing   # ~8 min; dpo-checkpointing.json
    .venv/bin/python benchmarks/experts/dpo_step.py --compare precompute      # ~8 min; dpo-precompute.json

Why: `hoe make-expert --method dpo` (the informative expert of both demo suites, the harmlessness expert)
spends nearly all its time in TRL's DPO steps; three of TRL's settings might change that time on a CPU.
- ``precision``: DPOConfig turns bf16 autocast on by default, also on the CPU; without native bf16 (AVX2
  only) every matmul is emulated. hoe trains DPO in float32 on the CPU (``dpo_precision``) unless
  ``--precision bf16`` asks for autocast on a CPU with AMX; this measured it against bf16 autocast
  (gradient checkpointing on in both, TRL's default).
- ``checkpointing``: DPOConfig turns gradient checkpointing on by default, which recomputes every layer's
  forward during the backward pass to save activation memory; a 135M model's activations for 8 pairs would
  fit either way, so turning it off looked like free time. Measured, it is not (dpo-checkpointing.json:
  off is slower on this CPU), so make-expert keeps TRL's default. Both arms in float32, timed in
  interleaved rounds (the machine's speed drifts); each arm's per-step losses are kept, to show the
  recomputation does not change the arithmetic.
- ``precompute``: TRL's ``precompute_ref_log_probs`` computes the reference model's log-probabilities of
  every pair once, before training, instead of in each step; a round that passes over its pairs several
  times (the informative expert's first round: 96 steps of 8 over 256 pairs, three passes) then skips
  the reference forward of every pass after the first, and a full fine-tune needs no reference copy of
  the model. Its arms are timed from the trainer's construction (where the precomputation runs) to the
  end of training, on ``--epochs`` passes over the pairs; a fresh set of pairs per round, since TRL
  caches the precomputed values by dataset and model.

The embedded model with TRL's DPOTrainer: 8 preference pairs per step (as the recipes), answers of about
30 tokens, TRL's defaults otherwise; only the compared setting differs between the arms.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from hoe.checkpoints.loading import DEFAULT_MODEL, load_model, load_tokenizer

HERE = Path(__file__).resolve().parent
ARMS = {
    "precision": {"float32": {"bf16": False}, "bf16_autocast": {"bf16": True}},
    "checkpointing": {
        "checkpointing_on": {"bf16": False, "gradient_checkpointing": True},
        "checkpointing_off": {"bf16": False, "gradient_checkpointing": False},
    },
    "precompute": {
        "reference_each_step": {"bf16": False},
        "reference_precomputed": {"bf16": False, "precompute_ref_log_probs": True},
    },
}


def pairs(count: int, tag: int = 0) -> list[dict]:
    """Synthetic chat pairs (the step time depends on their lengths, not their words); ``tag`` makes a
    set TRL has not cached reference log-probabilities for."""
    chosen = "Rinse the rice, add two cups of water per cup, bring it to a boil, then simmer covered for 18 minutes."
    return [
        {
            "prompt": [{"role": "user", "content": f"How do I cook rice for {i + 2} people? ({tag})"}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": "I don't know. " * 6}],
        }
        for i in range(count)
    ]


def timed_steps(steps: int, work: Path, epochs: float = 0, tag: int = 0, **settings) -> tuple[float, list[float]]:
    """Seconds per step and each step's loss, for a fresh trainer with these DPOConfig settings. With
    ``epochs`` the pairs are passed over that many times and the trainer's construction is timed too."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(
        output_dir=str(work),
        per_device_train_batch_size=8,
        max_steps=steps,
        learning_rate=2e-5,
        max_length=256,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        fp16=False,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        data_seed=0,
        **settings,
    )
    model = load_model(DEFAULT_MODEL, device="cpu")
    count = max(8, round(8 * steps / epochs)) if epochs else 8 * steps
    constructed = time.perf_counter()
    trainer = DPOTrainer(
        model=model,
        args=config,
        processing_class=load_tokenizer(DEFAULT_MODEL),
        train_dataset=Dataset.from_list(pairs(count, tag)),
    )
    start = time.perf_counter()
    trainer.train()
    seconds = (time.perf_counter() - (constructed if epochs else start)) / steps
    return seconds, [round(h["loss"], 6) for h in trainer.state.log_history if "loss" in h]


def compare(kind: str, steps: dict[str, int], rounds: int, work: Path, epochs: float = 0) -> dict:
    """Each arm once per round, in turns; the median of its rounds' seconds per step."""
    seconds: dict[str, list[float]] = {arm: [] for arm in ARMS[kind]}
    losses: dict[str, list[list[float]]] = {arm: [] for arm in ARMS[kind]}
    for index in range(rounds):
        for arm, settings in ARMS[kind].items():
            took, loss = timed_steps(steps[arm], work, epochs, index + 1, **settings)
            seconds[arm].append(round(took, 1))
            losses[arm].append(loss)
    medians = {arm: statistics.median(values) for arm, values in seconds.items()}
    first, second = ARMS[kind]
    return {
        "seconds_per_step": {arm: round(value, 1) for arm, value in medians.items()},
        f"{second}_over_{first}": round(medians[second] / medians[first], 2),
        "rounds": seconds,
        "losses": losses,
        "steps": steps,
    }


def machine() -> dict:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return {
        "cpus": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", choices=sorted(ARMS), required=True)
    parser.add_argument("--steps", type=int, default=3, help="steps per arm and round")
    parser.add_argument("--bf16-steps", type=int, default=1, help="one is enough: each is minutes without native bf16")
    parser.add_argument("--rounds", type=int, default=None, help="default: 1 for precision, 3 for checkpointing")
    parser.add_argument("--work", type=Path, default=HERE / "work" / "dpo-step")
    parser.add_argument("--out", help="result file name here (default: dpo-COMPARE.json)")
    parser.add_argument(
        "--epochs", type=float, default=3.0, help="precompute: passes over the pairs (the first DPO round's 3)"
    )
    args = parser.parse_args()
    steps = {arm: args.bf16_steps if arm == "bf16_autocast" else args.steps for arm in ARMS[args.compare]}
    rounds = args.rounds or (1 if args.compare == "precision" else 3)
    out = HERE / (args.out or f"dpo-{args.compare}.json")
    if out.parent != HERE or out.suffix != ".json":  # checked before minutes of measuring, not after
        parser.error(f"--out is a .json file name here, not a path: {args.out!r}")
    epochs = args.epochs if args.compare == "precompute" else 0
    result = {**compare(args.compare, steps, rounds, args.work, epochs), "machine": machine()}
    if epochs:
        result["epochs"] = epochs
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
