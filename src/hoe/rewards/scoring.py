"""Scorers by name, a persistent score cache, and per-objective normalisation statistics.

An objective is named by one of:
- an offline scorer: ``relevance``, ``civility``, ``positivity``, ``concision``, ``readability``,
  the learned heads ``harmlessness`` and ``helpfulness`` (``preference_head``), ``head:FOLDER`` (a
  head trained by ``hoe train-reward``), or ``reference:SOURCE`` (similarity to the prompt's
  reference answer: ``packaged:NAME`` or a JSONL file with ``prompt`` and ``reference``);
- a reward model: ``rm:NAME_OR_PATH`` or ``rm:NAME_OR_PATH#PRESET`` (presets in ``reward_model``);
- a Python callable: ``py:module:function`` taking (prompts, responses) and returning floats.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from hoe.errors import HoEError
from hoe.rewards.base import batched
from hoe.rewards.offline import OFFLINE_SCORERS, ReferenceSimilarity
from hoe.rewards.preference_head import LEARNED_SCORERS, HeadScorer
from hoe.rewards.reward_model import RewardModelScorer
from hoe.utils.io import write_json


class CallableScorer:
    """``py:module:function``: any function (prompts, responses) -> floats."""

    def __init__(self, spec: str) -> None:
        target = spec.removeprefix("py:")
        module_name, _, function_name = target.rpartition(":")
        if not module_name or not function_name:
            raise HoEError(f"'{spec}' must look like py:module:function")
        try:
            self.function = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError) as exc:
            raise HoEError(f"cannot load scorer '{spec}': {exc}") from None
        self.key = spec

    def score(self, prompts, responses):
        """The function's scores; a function that fails or returns something else than one finite number
        per pair is the user's code misbehaving: one line naming the scorer (the function itself is where to
        debug it), not a traceback through the scoring loop."""
        try:
            values = [float(v) for v in self.function(list(prompts), list(responses))]
        except Exception as exc:
            raise HoEError(f"scorer '{self.key}' failed: {type(exc).__name__}: {exc}") from exc
        if not all(math.isfinite(v) for v in values):
            raise HoEError(f"scorer '{self.key}' returned a score that is not a finite number")
        if len(values) != len(prompts):
            raise HoEError(f"scorer '{self.key}' returned {len(values)} scores for {len(prompts)} pairs")
        return values


NAMED_SCORERS = {**OFFLINE_SCORERS, **LEARNED_SCORERS}


def check_objective_name(spec: str) -> None:
    """Refuse a name that cannot be an objective, without loading anything."""
    if spec not in NAMED_SCORERS and not spec.startswith(("rm:", "py:", "reference:", "head:")):
        raise HoEError(
            f"unknown objective '{spec}' (available: {', '.join(NAMED_SCORERS)}; or reference:SOURCE, "
            "head:FOLDER, rm:MODEL, py:module:function)"
        )


def get_scorer(spec: str, *, device: str = "cpu", batch_size: int = 8, trust_remote_code: bool = False):
    """A scorer from its name (see the module docstring)."""
    if spec in NAMED_SCORERS:
        return NAMED_SCORERS[spec]()
    if spec.startswith("head:"):
        return HeadScorer(spec.removeprefix("head:"))
    if spec.startswith("reference:"):
        return ReferenceSimilarity.from_source(spec.removeprefix("reference:"))
    if spec.startswith("rm:"):
        reference, _, preset = spec[3:].partition("#")
        return RewardModelScorer(
            reference, preset or None, device=device, batch_size=batch_size, trust_remote_code=trust_remote_code
        )
    check_objective_name(spec)
    return CallableScorer(spec)


class ScoreCache:
    """Scores keyed by (scorer key, prompt, response) in an SQLite file: scoring the same
    response twice, in training or evaluation, costs a lookup."""

    BUSY_SECONDS = 120.0  # how long a writer waits for another process's write to finish

    def __init__(self, path: str | Path) -> None:
        """Open (or create) the cache. Several processes may share one file (two ``hoe score`` runs,
        every make-expert): WAL lets readers go on during a write, and each write takes the lock
        up front (``BEGIN IMMEDIATE``), so a writer waits its turn instead of failing with
        'database is locked'. A file that is not a score cache is one line."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), timeout=self.BUSY_SECONDS, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, value REAL NOT NULL)")
            self.db.execute("SELECT key, value FROM scores LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            raise HoEError(f"score cache '{path}' cannot be used: {exc}") from None

    @staticmethod
    def key(scorer_key: str, prompt: str, response: str) -> str:
        return hashlib.sha256("\0".join((scorer_key, prompt, response)).encode()).hexdigest()

    def score(self, scorer, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        keys = [self.key(scorer.key, p, r) for p, r in zip(prompts, responses)]
        found = (
            dict(self.db.execute(f"SELECT key, value FROM scores WHERE key IN ({','.join('?' * len(keys))})", keys))
            if keys
            else {}
        )
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            values = scorer.score([prompts[i] for i in missing], [responses[i] for i in missing])
            self._store([(keys[i], v) for i, v in zip(missing, values)])
            found.update({keys[i]: v for i, v in zip(missing, values)})
        return [found[k] for k in keys]

    def _store(self, rows: list[tuple[str, float]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")  # the write lock now, waiting up to BUSY_SECONDS for it
        try:
            self.db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?)", rows)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")


def score_objectives(
    objectives: Sequence[str],
    prompts: Sequence[str],
    responses: Sequence[str],
    *,
    cache: ScoreCache | None = None,
    batch_size: int = 64,
    **scorer_options,
) -> dict[str, list[float]]:
    """Every objective's scores for the pairs, in order. Every name is checked before any scorer loads."""
    if len(prompts) != len(responses):
        raise HoEError(f"{len(prompts)} prompts for {len(responses)} responses")
    if batch_size <= 0:
        raise HoEError(f"batch_size (--batch-size) must be positive, got {batch_size}")
    repeated = sorted({spec for spec in objectives if list(objectives).count(spec) > 1})
    if repeated:
        raise HoEError(f"objective '{repeated[0]}' is named twice")
    for spec in objectives:
        check_objective_name(spec)
    results = {}
    for spec in objectives:
        scorer = get_scorer(spec, **scorer_options)
        values: list[float] = []
        for start, chunk_p in batched(prompts, batch_size):
            chunk_r = responses[start : start + len(chunk_p)]
            values += cache.score(scorer, chunk_p, chunk_r) if cache else scorer.score(chunk_p, chunk_r)
        results[spec] = values
    return results


@dataclass
class NormStats:
    """Per-objective mean and standard deviation, fitted once and shared by training and evaluation."""

    mean: float
    std: float
    count: int

    @classmethod
    def fit(cls, values: Sequence[float]) -> "NormStats":
        if not values:
            raise HoEError("cannot fit normalisation statistics on no scores")
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1))
        return cls(mean=mean, std=std if std > 1e-12 else 1.0, count=len(values))

    def apply(self, values: Sequence[float]) -> list[float]:
        return [(v - self.mean) / self.std for v in values]


def save_stats(path: str | Path, stats: dict[str, NormStats]) -> None:
    write_json(path, {name: asdict(s) for name, s in stats.items()})


def load_stats(path: str | Path) -> dict[str, NormStats]:
    path = Path(path)
    if not path.is_file():
        raise HoEError(f"normalisation statistics not found: '{path}'")
    return {name: NormStats(**values) for name, values in json.loads(path.read_text()).items()}
