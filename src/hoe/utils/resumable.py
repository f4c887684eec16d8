"""Resumable batch work written as JSON lines: each finished batch is appended to
``<output>.partial``; a rerun checks that the rows already there answer the same requests, skips
them, and the output appears (by rename) only when every request is answered."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

from tqdm.auto import tqdm

from hoe.errors import HoEError
from hoe.settings import flag_name


def _done_rows(partial: Path, requests: list[dict], key_fields: Sequence[str]) -> int:
    """How many leading requests the partial file already answers (checked to be the same)."""
    if not partial.is_file():
        return 0
    done = []
    for line in partial.read_text().splitlines():
        try:
            done.append(json.loads(line))
        except json.JSONDecodeError:  # a line half-written when a run was killed ends what counts
            break
    for number, (old, new) in enumerate(zip(done, requests), 1):
        if any(old.get(field) != new[field] for field in key_fields):
            raise HoEError(
                f"'{partial}' holds answers to other requests (row {number} differs); remove it to start afresh"
            )
    return min(len(done), len(requests))


def resumable_batches(
    requests: list[dict],
    answer: Callable[[int, list[dict]], list[dict]],
    *,
    batch_size: int,
    output: Path | None,
    key_fields: Sequence[str],
    progress: bool,
    desc: str = "generate",
) -> list[dict]:
    """Answer ``requests`` batch by batch with ``answer(batch_index, batch) -> rows``; with
    ``output``, resumable (see the module docstring). Batch indices do not depend on where a run
    resumed, so a seeded ``answer`` writes exactly what an uninterrupted run would."""
    if batch_size <= 0:
        raise HoEError(f"{flag_name('batch_size')} must be positive, got {batch_size}")
    partial = Path(f"{output}.partial") if output is not None else None
    start_row = _done_rows(partial, requests, key_fields) if partial is not None else 0
    if partial is not None:
        partial.parent.mkdir(parents=True, exist_ok=True)
        kept = partial.read_text().splitlines()[:start_row] if partial.is_file() else []
        partial.write_text("".join(line + "\n" for line in kept))
    answered: list[dict] = []
    starts = range(0, len(requests), batch_size)
    for index, start in enumerate(tqdm(starts, desc=desc, unit="batch", disable=not progress)):
        if start + batch_size <= start_row:
            continue
        rows = answer(index, requests[start : start + batch_size])
        answered += rows
        if partial is not None:
            with partial.open("a") as handle:
                for row in rows[max(0, start_row - start) :]:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    if partial is None:
        return answered
    rows = [json.loads(line) for line in partial.read_text().splitlines() if line.strip()]
    os.replace(partial, output)
    return rows
