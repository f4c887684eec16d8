"""Scoring throughput: each offline scorer (``reference:`` with 1,000 references) on 1,000 real responses,
and the reward-model path on a tiny random Llama classifier (the path's overhead, not a real reward model's speed).

    .venv/bin/python benchmarks/scorers/run.py
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch

from hoe.data import sft_pairs
from hoe.rewards import OFFLINE_SCORERS, get_scorer

HERE = Path(__file__).resolve().parent


def tiny_reward_model(folder: Path) -> Path:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from hoe.checkpoints import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m-instruct")  # a real tokenizer, a tiny random model
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main() -> None:
    pairs = (sft_pairs("hh-helpful-test") + sft_pairs("hh-helpful-sft"))[:1000]
    prompts, responses = [p for p, _ in pairs], [r for _, r in pairs]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        references = Path(tmp) / "references.jsonl"  # each prompt's reference: another pair's answer (throughput only)
        references.write_text(
            "".join(json.dumps({"prompt": p, "reference": responses[i - 1]}) + "\n" for i, p in enumerate(prompts))
        )
        specs = list(OFFLINE_SCORERS) + [f"reference:{references}", f"rm:{tiny_reward_model(Path(tmp) / 'rm')}#scalar"]
        for spec in specs:
            start = time.perf_counter()
            scorer = get_scorer(spec, batch_size=32)
            loaded = time.perf_counter()
            scores = scorer.score(prompts, responses)
            done = time.perf_counter()
            label = (
                "reward model (tiny random Llama, batch 32)"
                if spec.startswith("rm:")
                else "reference:FILE (another answer as reference)"
                if spec.startswith("reference:")
                else spec
            )
            results[label] = {
                "load_s": round(loaded - start, 2),
                "score_s": round(done - loaded, 2),
                "responses_per_s": round(len(scores) / (done - loaded), 1),
                "mean": round(sum(scores) / len(scores), 4),
            }
            print(label, results[label], flush=True)
    summary = {
        "responses": len(responses),
        "data": "HH-RLHF helpful reference responses (packaged)",
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__},
        "results": results,
        "command": ".venv/bin/python benchmarks/scorers/run.py",
    }
    (HERE / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        "| scorer | load (s) | scoring 1,000 responses (s) | responses/s | mean score |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {k} | {v['load_s']:.2f} | {v['score_s']:.2f} | {v['responses_per_s']:.0f} | {v['mean']:.3f} |"
        for k, v in results.items()
    ]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
