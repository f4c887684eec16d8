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

Without --lora, ``--rank 64,128`` extracts at each rank from the one full fine-tune and answers the same
prompts, side by side (lora-routes-FULL-r64-128.json, ``extracted`` keyed by rank): a rank chosen by a
measurement needs its neighbours measured against the same build of the full model.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from peft import PeftModel
from rank_curve import answer, extraction, retained, retained_difference
from run import saved_or_answered

from hoe.checkpoints import load_model, load_tokenizer
from hoe.checkpoints.loading import DEFAULT_MODEL, cache_root
from hoe.rewards import ScoreCache, score_objectives
from hoe.training.sampling import weights_stamp

HERE = Path(__file__).resolve().parent


def saved_answers(work: Path, folder: Path, prompts: list[str]) -> list[str]:
    """run.py's greedy answers of one model folder (``work/answers/<folder name>.json``), checked to be for
    the same prompts and the same weights: an expert made again at the same path must be answered again."""
    path = work / "answers" / f"{folder.name}.json"
    if not path.is_file():
        raise SystemExit(f"{folder.name}: no saved answers in {work / 'answers'}; rerun run.py")
    saved = json.loads(path.read_text())
    if saved["prompts"] != prompts:
        raise SystemExit(f"{path}: answers to other prompts than the base's; rerun run.py")
    if saved.get("weights") != weights_stamp(folder):
        raise SystemExit(f"{path}: answers of another build of {folder.name}; rerun run.py")
    return saved["responses"]


def extracted_answers(adapter: Path, tokenizer, prompts: list[str]) -> list[str]:
    """The base with the extracted LoRA answers the prompts greedily (peft, unmerged, as a HoE expert runs);
    saved beside the adapter as run.py saves a model's, so that another comparison reuses them."""

    def answer_them() -> list[str]:
        model = PeftModel.from_pretrained(load_model(DEFAULT_MODEL), adapter).eval()
        return answer(model, tokenizer, prompts)[0]

    saved = adapter.parent / f"{adapter.name}-answers.json"
    return saved_or_answered(saved, {"adapter": str(adapter)}, adapter, prompts, answer_them)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", required=True)
    parser.add_argument("--full", required=True, help="the full fine-tune's folder, relative to this directory")
    parser.add_argument("--lora", help="the LoRA-trained expert's folder (holds adapter/); without it, extraction only")
    parser.add_argument(
        "--rank", default="16", help="the extraction's rank without --lora (else the LoRA's); several: 64,128"
    )
    parser.add_argument("--work", type=Path, default=HERE / "work")
    args = parser.parse_args()
    full, lora = HERE / args.full, (HERE / args.lora if args.lora else None)
    try:
        ranks = [int(rank) for rank in args.rank.split(",")]
    except ValueError:
        parser.error(f"--rank takes ranks separated by commas, e.g. 64,128, not '{args.rank}'")
    if lora:
        if len(ranks) > 1:
            parser.error("--lora sets the one rank (the LoRA's): give several --rank values without it")
        ranks = [json.loads((lora / "adapter" / "adapter_config.json").read_text())["r"]]
    base_saved = json.loads((args.work / "answers" / "base.json").read_text())
    prompts = base_saved["prompts"]
    cache = ScoreCache(cache_root() / "scores.sqlite")

    def score(texts: list[str]) -> list[float]:
        return score_objectives([args.objective], prompts, texts, cache=cache)[args.objective]

    base_scores = score(base_saved["responses"])
    full_scores = score(saved_answers(args.work, full, prompts))
    trained_scores = score(saved_answers(args.work, lora, prompts)) if lora else None
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    tokenizer.padding_side = "left"
    extracted, scores_by_rank = {}, {}
    for rank in ranks:
        adapter = extraction(full, rank, args.work)
        extracted_scores = scores_by_rank[rank] = score(extracted_answers(adapter, tokenizer, prompts))
        extracted[str(rank)] = {
            "mean": round(statistics.mean(extracted_scores), 4),
            **retained(extracted_scores, full_scores, base_scores),
            "adapter_mb": round(sum(p.stat().st_size for p in adapter.glob("*.safetensors")) / 2**20, 1),
        }
        print(rank, extracted[str(rank)], flush=True)
    steps = {  # each rank against the next lower one, paired over the prompts
        f"{low}->{high}": retained_difference(scores_by_rank[high], scores_by_rank[low], full_scores, base_scores)
        for low, high in zip(ranks, ranks[1:])
    }
    report = {
        "objective": args.objective,
        "prompts": len(prompts),
        **({"rank": ranks[0]} if len(ranks) == 1 else {"ranks": ranks}),
        "base_mean": round(statistics.mean(base_scores), 4),
        "full": {"folder": args.full, "mean": round(statistics.mean(full_scores), 4)},
        "extracted": extracted[str(ranks[0])] if len(ranks) == 1 else extracted,
        **({"retained_more": steps} if steps else {}),
        "command": f".venv/bin/python benchmarks/experts/trained_lora.py --objective {args.objective} "
        f"--full {args.full}" + (f" --lora {args.lora}" if lora else f" --rank {args.rank}"),
    }
    if lora:
        report["trained_lora"] = {
            "folder": args.lora,
            "mean": round(statistics.mean(trained_scores), 4),
            **retained(trained_scores, full_scores, base_scores),
        }
    suffix = "-".join(str(rank) for rank in ranks)
    (HERE / f"lora-routes-{full.name}-r{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
