"""Prompts for training and evaluation, from packaged files or hub datasets, with deterministic
splits.

A prompt spec is ``packaged:NAME`` (see ``hoe.data.PACKAGED``), ``hub:DATASET[:CONFIG]@SPLIT#FIELD``
(loaded with ``datasets`` where the hub is reachable) or ``file:PATH`` (JSON lines with a
``prompt`` field, or one prompt per line of text); ``A+B`` mixes specs. A split is assigned per prompt from a
hash of its text, so it does not depend on file order or on which other prompts are present:
``train`` 80%, ``eval`` 10%, ``heldout`` 10%.
"""

from __future__ import annotations

import hashlib

from hoe.data.packaged import PACKAGED, packaged_prompts
from hoe.errors import HoEError
from hoe.utils.io import read_prompt_rows

SPLITS = {"train": (0.0, 0.8), "eval": (0.8, 0.9), "heldout": (0.9, 1.0), "all": (0.0, 1.0)}


def split_of(prompt: str) -> str:
    """The split a prompt belongs to, from a hash of its text."""
    value = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big") / 2**64
    return next(name for name, (low, high) in SPLITS.items() if name != "all" and low <= value < high)


def _hub_prompts(spec: str) -> list[str]:
    body = spec.removeprefix("hub:")
    name, _, field = body.partition("#")
    name, _, split = name.partition("@")
    dataset, _, config = name.partition(":")
    if not field:
        raise HoEError(f"'{spec}' needs the prompt field: hub:DATASET[:CONFIG]@SPLIT#FIELD")
    try:
        from datasets import load_dataset

        rows = load_dataset(dataset, config or None, split=split or "train")
    except Exception as exc:  # offline, unknown dataset, auth: one line
        raise HoEError(
            f"could not load hub dataset '{dataset}': {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    if field not in rows.column_names:
        raise HoEError(f"hub dataset '{dataset}' has no field '{field}' (fields: {', '.join(rows.column_names)})")
    return [str(row[field]) for row in rows]


def _file_prompts(path_text: str) -> list[str]:
    from pathlib import Path

    path = Path(path_text)
    if path.suffix == ".jsonl":
        return [row["prompt"] for row in read_prompt_rows(path)]
    if not path.is_file():
        raise HoEError(f"prompt file not found: '{path}'")
    return [line for line in path.read_text().splitlines() if line.strip()]


def load_prompts(spec: str, split: str = "all", limit: int | None = None) -> list[str]:
    """Unique prompts of ``spec`` in ``split``, in source order, at most ``limit``. Specs joined
    by '+' are concatenated, each giving an equal share of the limit."""
    if "+" in spec:
        parts = spec.split("+")
        share = None if limit is None else max(1, limit // len(parts))
        return [p for part in parts for p in load_prompts(part, split, share)]
    if split not in SPLITS:
        raise HoEError(f"unknown split '{split}' (choose from {', '.join(SPLITS)})")
    if spec.startswith("packaged:"):
        name = spec.removeprefix("packaged:")
        if name not in PACKAGED:
            raise HoEError(f"unknown packaged dataset '{name}' (choose from {', '.join(PACKAGED)})")
        prompts = packaged_prompts(name)
    elif spec.startswith("hub:"):
        prompts = _hub_prompts(spec)
    elif spec.startswith("file:"):
        prompts = _file_prompts(spec.removeprefix("file:"))
    else:
        raise HoEError(f"prompt spec '{spec}' must start with packaged:, hub: or file:")
    seen, chosen = set(), []
    for prompt in prompts:
        if prompt in seen or (split != "all" and split_of(prompt) != split):
            continue
        seen.add(prompt)
        chosen.append(prompt)
        if limit is not None and len(chosen) >= limit:
            break
    if not chosen:
        raise HoEError(f"prompt spec '{spec}' selects no prompts in split '{split}'")
    return chosen
