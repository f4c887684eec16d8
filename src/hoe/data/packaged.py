"""Small real datasets copied into the package so the default runs work offline.

Sources and licenses are in ``files/ATTRIBUTION.md``; each record keeps its original fields.
"""

from __future__ import annotations

import gzip
import json
from importlib import resources

from hoe.errors import HoEError

# name -> (file, prompt field, response field)
PACKAGED: dict[str, tuple[str, str, str]] = {
    "hh-helpful-sft": ("dove_helpful_val_sft_500.jsonl.gz", "instruction", "response"),
    "hh-helpful-test": ("dove_helpful_test_500.jsonl.gz", "instruction", "gold_response"),
}


def load_packaged(name: str) -> list[dict]:
    """All records of a packaged dataset, in file order."""
    if name not in PACKAGED:
        raise HoEError(f"unknown packaged dataset '{name}' (choose from {', '.join(PACKAGED)})")
    file = resources.files("hoe.data").joinpath("files", PACKAGED[name][0])
    records = []
    with gzip.open(file.open("rb"), "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise HoEError(f"{PACKAGED[name][0]} line {line_number}: malformed JSON ({exc.msg})") from None
    return records


def sft_pairs(name: str) -> list[tuple[str, str]]:
    """(prompt, response) pairs of a packaged dataset, empty responses dropped."""
    _, prompt_key, response_key = PACKAGED.get(name, (None, None, None))
    return [(r[prompt_key], r[response_key]) for r in load_packaged(name) if r.get(response_key, "").strip()]
