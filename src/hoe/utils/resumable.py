"""Resumable batch work written as JSON lines: each finished batch is appended to
``<output>.partial``; a rerun checks that the rows already there answer the same requests under
the same settings (``<output>.partial.settings.json``), skips them, and the output appears (by
rename) only when every request is answered. One run writes an output at a time
(``<output>.lock``): a second one is refused in one line instead of interleaving its rows."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

from tqdm.auto import tqdm

from hoe.errors import HoEError
from hoe.settings import flag_name
from hoe.utils.io import one_writer


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
    settings: dict | None = None,
) -> list[dict]:
    """Answer ``requests`` batch by batch with ``answer(batch_index, batch) -> rows``; with
    ``output``, resumable (see the module docstring). Batch indices do not depend on where a run
    resumed, so a seeded ``answer`` writes exactly what an uninterrupted run would. ``settings``:
    everything else that changes the answers (model, seed, sampling, lengths); a rerun under other
    settings is refused in one line instead of mixing rows."""
    if batch_size <= 0:
        raise HoEError(f"{flag_name('batch_size')} must be positive, got {batch_size}")
    if output is None:
        return _answer_all(requests, answer, batch_size, None, 0, progress, desc)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with one_writer(output, "run", lock=f"{output}.lock"):
        return _resume(requests, answer, batch_size, output, key_fields, progress, desc, settings or {})


def _resume(
    requests: list[dict],
    answer: Callable[[int, list[dict]], list[dict]],
    batch_size: int,
    output: Path,
    key_fields: Sequence[str],
    progress: bool,
    desc: str,
    settings: dict,
) -> list[dict]:
    partial = Path(f"{output}.partial")
    recorded = Path(f"{partial}.settings.json")
    settings = json.loads(json.dumps(settings))  # as it reads back
    if partial.is_file() and recorded.is_file() and json.loads(recorded.read_text()) != settings:
        old = json.loads(recorded.read_text())
        changed = next((k for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)), "settings")
        raise HoEError(
            f"'{partial}' was started with other settings ({changed}: {old.get(changed)!r} then, "
            f"{settings.get(changed)!r} now); rerun with the same ones, or remove it to start afresh"
        )
    recorded.write_text(json.dumps(settings, sort_keys=True) + "\n")
    start_row = _done_rows(partial, requests, key_fields)
    kept = partial.read_text().splitlines()[:start_row] if partial.is_file() else []
    partial.write_text("".join(line + "\n" for line in kept))
    _answer_all(requests, answer, batch_size, partial, start_row, progress, desc)
    rows = [json.loads(line) for line in partial.read_text().splitlines() if line.strip()]
    os.replace(partial, output)
    recorded.unlink(missing_ok=True)
    return rows


def _answer_all(
    requests: list[dict],
    answer: Callable[[int, list[dict]], list[dict]],
    batch_size: int,
    partial: Path | None,
    start_row: int,
    progress: bool,
    desc: str,
) -> list[dict]:
    """Answer the requests from ``start_row`` on, appending each batch to ``partial``."""
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
    return answered
