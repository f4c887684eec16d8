"""Train the expert as a LoRA, or extract it from a full fine-tune? What each keeps of the full fine-tune's gain.

Issue 16, part 3, asks for LoRA experts that keep >= 90% of their full fine-tune's own-objective gain,
by choosing the rank or by training the experts as LoRAs (``make-expert --lora``), whose extraction is
exact. This compares the two routes on one expert, the same data and steps: the full fine-tune
(``--full``), its task-SVD at the trained LoRA's rank (``hoe extract``, peft, unmerged) and the LoRA
trained directly (``--lora``, run.py's ``--lora-rank``), on the same held-out prompts as run.py.

    retained = mean(route − base) / mean(full − base), paired over prompts,
    with a 95% bootstrap interval (2,000 resamples of the prompts; rank_curve.retained).

    .venv/bin/python benchmarks/experts/trained_lora.py --objective helpfulness \\
        --full work/helpfulness-dpo-p256-s96 --lora work/helpfulness-dpo-p256-s96-lora16

Reads run.py's saved greedy answers (``work/answers/``) for the base, the full fine-tune and the
trained LoRA; answers the prompts with the extracted LoRA; writes lora-routes-FULL-rRANK.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from peft import PeftModel
from rank_curve import answer, retained

from hoe.checkpoints import load_model, load_tokenizer
from hoe.checkpoints.loading import DEFAULT_MODEL, cache_root
from hoe.experts import ExtractSettings, extract_expert
from hoe.rewards import ScoreCache, score_objectives

HERE = Path(__file__).resolve().parent


def saved_answers(work: Path, folder: Path, prompts: list[str]) -> list[str]:
    """run.py's greedy answers of one model folder (named after the folder, or by an older run.py
    after the expert's label: found by the model they record), checked to be for the same prompts."""
    named = work / "answers" / f"{folder.name}.json"
    candidates = [named] if named.is_file() else sorted((work / "answers").glob("*.json"))
    for path in candidates:
        saved = json.loads(path.read_text())
        if Path(saved.get("model", "")).name == folder.name and saved["prompts"] == prompts:
            return saved["responses"]
    raise SystemExit(f"{folder.name}: no saved answers for these prompts in {work / 'answers'}; rerun run.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", required=True)
    parser.add_argument("--full", required=True, help="the full fine-tune's folder, relative to this directory")
    parser.add_argument("--lora", help="the LoRA-trained expert's folder (holds adapter/); without it, extraction only")
    parser.add_argument("--rank", type=int, default=16, help="the extraction's rank without --lora (else the LoRA's)")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    args = parser.parse_args()
    full, lora = HERE / args.full, (HERE / args.lora if args.lora else None)
    rank = json.loads((lora / "adapter" / "adapter_config.json").read_text())["r"] if lora else args.rank
    base_saved = json.loads((args.work / "answers" / "base.json").read_text())
    prompts = base_saved["prompts"]
    cache = ScoreCache(cache_root() / "scores.sqlite")

    def score(texts: list[str]) -> list[float]:
        return score_objectives([args.objective], prompts, texts, cache=cache)[args.objective]

    base_scores = score(base_saved["responses"])
    full_scores = score(saved_answers(args.work, full, prompts))
    trained_scores = score(saved_answers(args.work, lora, prompts)) if lora else None
    adapter = args.work / "rank-curve" / f"{full.name}-r{rank}"
    if not (adapter / "adapter_config.json").is_file():
        extract_expert(DEFAULT_MODEL, full, adapter, ExtractSettings(rank=rank), progress=False)
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    tokenizer.padding_side = "left"
    extracted = PeftModel.from_pretrained(load_model(DEFAULT_MODEL), adapter).eval()
    extracted_texts, _ = answer(extracted, tokenizer, prompts)
    extracted_scores = score(extracted_texts)
    report = {
        "objective": args.objective,
        "prompts": len(prompts),
        "rank": rank,
        "base_mean": round(statistics.mean(base_scores), 4),
        "full": {"folder": args.full, "mean": round(statistics.mean(full_scores), 4)},
        "extracted": {
            "mean": round(statistics.mean(extracted_scores), 4),
            **retained(extracted_scores, full_scores, base_scores),
        },
        "command": f".venv/bin/python benchmarks/experts/trained_lora.py --objective {args.objective} "
        f"--full {args.full}" + (f" --lora {args.lora}" if lora else f" --rank {rank}"),
    }
    if lora:
        report["trained_lora"] = {
            "folder": args.lora,
            "mean": round(statistics.mean(trained_scores), 4),
            **retained(trained_scores, full_scores, base_scores),
        }
    (HERE / f"lora-routes-{full.name}-r{rank}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
