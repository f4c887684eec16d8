"""Batch generation over a list of requests, resumable: each finished batch is appended to
``<output>.partial``; a rerun skips what is there, and the output appears (by rename) only when
every request is answered. Batch k is sampled with seed + k, so a resumed run writes exactly
what an uninterrupted one would."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hoe.errors import HoEError


def _done_rows(partial: Path, rows: list[dict]) -> int:
    """How many leading requests the partial file already answers (checked to be the same)."""
    if not partial.is_file():
        return 0
    done = [json.loads(line) for line in partial.read_text().splitlines() if line.strip()]
    for number, (old, new) in enumerate(zip(done, rows), 1):
        if old.get("prompt") != new["prompt"] or old.get("preference") != new["preference"]:
            raise HoEError(f"'{partial}' holds answers to other requests (row {number} differs); remove it to start afresh")
    return min(len(done), len(rows))


def generate_rows(model, rows: list[dict], options: dict, *, batch_size: int, seed: int, output: Path | None, progress: bool) -> list[dict]:
    """Answer ``rows`` ({"prompt", "preference"}) in batches; with ``output``, resumable (above)."""
    if batch_size <= 0:
        raise HoEError(f"--batch-size must be positive, got {batch_size}")
    partial = Path(f"{output}.partial") if output is not None else None
    start_row = _done_rows(partial, rows) if partial is not None else 0
    if partial is not None:
        partial.parent.mkdir(parents=True, exist_ok=True)
        # keep exactly the verified rows: a line half-written when a run was killed is dropped
        kept = partial.read_text().splitlines()[:start_row] if partial.is_file() else []
        partial.write_text("".join(line + "\n" for line in kept))
    starts = range(0, len(rows), batch_size)
    for index, start in enumerate(tqdm(starts, desc="generate", unit="batch", disable=not progress)):
        if start + batch_size <= start_row:
            continue
        batch = rows[start : start + batch_size]
        torch.manual_seed(seed + index)
        texts = model.generate([r["prompt"] for r in batch], preferences=[r["preference"] for r in batch], **options)
        for row, text in zip(batch, texts):
            row["response"] = text
            row["routing"] = model.describe_routing(row["preference"])
        if partial is not None:
            with partial.open("a") as handle:
                for row in batch[max(0, start_row - start):]:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    if partial is not None:
        answered = [json.loads(line) for line in partial.read_text().splitlines() if line.strip()]
        os.replace(partial, output)
        return answered
    return rows
