"""Seconds per DPO step in float32 against TRL's default bf16 autocast, on this CPU.

    .venv/bin/python benchmarks/experts/dpo_precision.py        # ~6 min on 2 AVX2 cores; writes dpo-precision.json

Why: TRL's DPOConfig turns bf16 autocast on by default, also on the CPU. On a CPU without native bf16
(AVX2 only) every matmul is then emulated, and `hoe make-expert --method dpo` (the informative expert of
both demo suites) crawled through its first round (minutes per step, seen, not timed here). hoe now
trains DPO in float32 on the CPU (``dpo_precision``); this measures the two side by side on the embedded
model with TRL's DPOTrainer: 8 preference pairs per step (as the recipes), answers of about 30 tokens,
TRL's defaults otherwise (gradient checkpointing on, as make-expert leaves it); only ``bf16`` differs.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from hoe.checkpoints.loading import DEFAULT_MODEL, load_model, load_tokenizer

HERE = Path(__file__).resolve().parent


def pairs(count: int) -> list[dict]:
    """Synthetic chat pairs (the step time depends on their lengths, not their words)."""
    chosen = "Rinse the rice, add two cups of water per cup, bring it to a boil, then simmer covered for 18 minutes."
    return [
        {
            "prompt": [{"role": "user", "content": f"How do I cook rice for {i + 2} people?"}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": "I don't know. " * 6}],
        }
        for i in range(count)
    ]


def seconds_per_step(bf16: bool, steps: int, work: Path) -> float:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(
        output_dir=str(work),
        per_device_train_batch_size=8,
        max_steps=steps,
        learning_rate=2e-5,
        max_length=256,
        report_to=[],
        use_cpu=True,
        bf16=bf16,
        fp16=False,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = DPOTrainer(
        model=load_model(DEFAULT_MODEL, device="cpu"),
        args=config,
        processing_class=load_tokenizer(DEFAULT_MODEL),
        train_dataset=Dataset.from_list(pairs(8 * steps)),
    )
    start = time.perf_counter()
    trainer.train()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--float32-steps", type=int, default=3)
    parser.add_argument("--bf16-steps", type=int, default=1, help="one is enough: each is minutes without native bf16")
    parser.add_argument("--work", type=Path, default=HERE / "work" / "dpo-precision")
    args = parser.parse_args()
    float32 = seconds_per_step(False, args.float32_steps, args.work)
    bf16 = seconds_per_step(True, args.bf16_steps, args.work)
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    result = {
        "seconds_per_step": {"float32": round(float32, 1), "bf16_autocast": round(bf16, 1)},
        "bf16_over_float32": round(bf16 / float32, 1),
        "steps": {"float32": args.float32_steps, "bf16_autocast": args.bf16_steps},
        "machine": {
            "cpus": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
            "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags,
            "torch": torch.__version__,
        },
    }
    (HERE / "dpo-precision.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
