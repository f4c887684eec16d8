"""Batch generation over a list of requests ({"prompt", "preference"}), resumable through
``hoe.utils.resumable``. Batch k is sampled with seed + k, so a resumed run writes exactly what
an uninterrupted one would."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from hoe.utils.resumable import resumable_batches

if TYPE_CHECKING:  # annotations only (hoe_model imports this module's callers)
    from hoe.model.hoe_model import HoEModel


def generate_rows(
    model: HoEModel, rows: list[dict], options: dict, *, batch_size: int, seed: int, output: Path | None, progress: bool
) -> list[dict]:
    """Answer ``rows`` in batches with a HoE model; with ``output``, resumable."""

    def answer(index: int, batch: list[dict]) -> list[dict]:
        torch.manual_seed(seed + index)
        texts = model.generate([r["prompt"] for r in batch], preferences=[r["preference"] for r in batch], **options)
        return [
            {**row, "response": text, "routing": model.describe_routing(row["preference"])}
            for row, text in zip(batch, texts)
        ]

    settings = {
        "bundle": str(Path(model.bundle.folder).resolve()),
        "bundle_sha": model.bundle.fingerprint(),  # the same folder rebuilt or retrained is another model
        "options": options,
        "seed": seed,
        "batch_size": batch_size,
    }
    return resumable_batches(
        rows,
        answer,
        batch_size=batch_size,
        output=output,
        key_fields=("prompt", "preference"),
        progress=progress,
        settings=settings,
    )
