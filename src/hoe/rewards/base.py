"""The one interface every objective is scored through: a batch of (prompt, response) pairs in,
one float per pair out (higher is better)."""

from __future__ import annotations

from typing import Protocol, Sequence


class Scorer(Protocol):
    """Scores responses for one objective. ``key`` identifies the scorer in caches: two scorers
    with the same key must give the same scores."""

    key: str

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]: ...


def batched(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield start, items[start : start + size]
