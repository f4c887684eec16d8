"""Learned rewards from preference pairs: a Bradley–Terry linear head on frozen MiniLM embeddings.

Why this design: it trains in seconds on a CPU from a few thousand real pairs; its weights are a
few KB of safetensors beside a JSON file, so a head folder from anywhere loads without running
code; and it scores with one MiniLM forward, the encoder the relevance scorer already loads.

Features of a (prompt, response): the response's embedding, its elementwise product with the
prompt's embedding (what the response says about this request), their cosine, and
log(1 + words) / 5. The set was chosen on the eval split of the HH-RLHF harmless pairs
(``benchmarks/rewards``), never on the held-out split.

Bradley–Terry: P(chosen ≻ rejected) = σ(w · (f(chosen) − f(rejected))), a logistic regression
without intercept on feature differences. Each pair enters in both orders (balanced classes, no
position effect) and both orders stay in one cross-validation fold. Pairs are split by their
prompt (``hoe.data.split_of``): a head trains on the train split only, so it never saw the
held-out prompts that experts and methods are evaluated on.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from importlib import resources
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from hoe.data import split_of
from hoe.data.packaged import PACKAGED_PAIRS, packaged_pairs
from hoe.errors import HoEError
from hoe.rewards.offline import OFFLINE_SCORERS, embed
from hoe.rewards.settings import HEAD_REPORT, RewardHeadSettings
from hoe.utils.io import atomic_dir, check_output_dir, write_json

FORMAT = "hoe-preference-head/v1"
FEATURES = "minilm-l6-v2: response, prompt*response, cosine, log1p(words)/5"
EMBEDDING_SIZE = 384
FEATURE_SIZE = 2 * EMBEDDING_SIZE + 2
WEIGHTS_FILE, META_FILE = "head.safetensors", "head.json"
SHIPPED_HEADS = ("harmlessness", "helpfulness")
WORD = re.compile(r"[A-Za-z0-9']+")
Z95 = 1.959964


class PreferencePair(NamedTuple):
    prompt: str
    chosen: str
    rejected: str


# ---------------------------------------------------------------------------- reading pairs


def read_preference_pairs(spec: str) -> list[PreferencePair]:
    """The pairs of a spec: ``packaged:NAME`` or a JSONL file (``file:`` optional); '+' joins
    sources. Ties are dropped; no usable pair, ties only or one label only → one line."""
    pairs = [pair for part in spec.split("+") for pair in _source_pairs(part.strip())]
    if not pairs:
        raise HoEError(f"preference pairs '{spec}': no pairs")
    return pairs


def _source_pairs(source: str) -> list[PreferencePair]:
    if source.startswith("packaged:"):
        name = source.removeprefix("packaged:")
        if name not in PACKAGED_PAIRS:
            raise HoEError(f"unknown packaged preference pairs '{name}' (choose from {', '.join(PACKAGED_PAIRS)})")
        return [PreferencePair(*pair) for pair in packaged_pairs(name)]
    return _file_pairs(Path(source.removeprefix("file:")))


def _file_pairs(path: Path) -> list[PreferencePair]:
    """Pairs of a JSONL file, each line either {prompt, chosen, rejected} or, as AlpacaEval
    publishes them, {instruction or prompt, output_1, output_2, preference: 1 | 2 | 0 (tie)}."""
    if not path.is_file():
        raise HoEError(f"preference file not found: '{path}'")
    pairs, ties, labels = [], 0, set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HoEError(f"{path} line {number}: malformed JSON ({exc.msg})") from None
        pair, label = _row_pair(row, f"{path} line {number}")
        if pair.chosen == pair.rejected:
            ties += 1
        else:
            pairs.append(pair)
            labels.add(label)
    if not pairs and not ties:
        raise HoEError(f"{path} holds no preference pairs")
    if not pairs:
        raise HoEError(f"{path}: all {ties} pairs are ties (equal responses or preference 0); nothing to learn from")
    if labels == {1} or labels == {2}:  # AlpacaEval-style rows only, every one the same way
        raise HoEError(
            f"{path}: every pair prefers output_{labels.pop()}, a single class; labels that never vary "
            "usually mean a constant column, so give prompt/chosen/rejected if that is what you mean"
        )
    return pairs


def _row_pair(row: object, where: str) -> tuple[PreferencePair, int | None]:
    """One row as a pair and its AlpacaEval label (None for chosen/rejected rows)."""
    if not isinstance(row, dict):
        raise HoEError(f"{where}: each line must be a JSON object")
    prompt_field = "prompt" if "prompt" in row else "instruction"
    if "chosen" in row or "rejected" in row:
        _require_strings(row, (prompt_field, "chosen", "rejected"), where)
        return PreferencePair(row[prompt_field], row["chosen"], row["rejected"]), None
    if "output_1" in row or "output_2" in row:
        _require_strings(row, (prompt_field, "output_1", "output_2"), where)
        label = row.get("preference")
        if label not in (0, 1, 2) or isinstance(label, bool):
            raise HoEError(f"{where}: 'preference' must be 1, 2 or 0 (a tie), got {label!r}")
        first, second = row["output_1"], row["output_2"]
        if label == 0:
            return PreferencePair(row[prompt_field], first, first), None  # a tie: dropped by the caller
        chosen, rejected = (first, second) if label == 1 else (second, first)
        return PreferencePair(row[prompt_field], chosen, rejected), int(label)
    raise HoEError(f"{where}: needs prompt, chosen and rejected (or instruction, output_1, output_2, preference)")


def _require_strings(row: dict, fields: tuple[str, ...], where: str) -> None:
    for field in fields:
        if not isinstance(row.get(field), str):
            raise HoEError(f"{where}: needs a string '{field}'")
    if not row[fields[0]].strip():
        raise HoEError(f"{where}: '{fields[0]}' is empty")


def split_pairs(pairs: Sequence[PreferencePair]) -> dict[str, list[PreferencePair]]:
    """The pairs of each split (train, eval, heldout), by a hash of the prompt."""
    splits: dict[str, list[PreferencePair]] = {"train": [], "eval": [], "heldout": []}
    for pair in pairs:
        splits[split_of(pair.prompt)].append(pair)
    return splits


# ---------------------------------------------------------------------------- the head


def pair_features(prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """One feature row per (prompt, response); see the module docstring."""
    prompt_vectors, response_vectors = embed(prompts), embed(responses)
    product = prompt_vectors * response_vectors
    lengths = np.log1p([len(WORD.findall(response)) for response in responses])[:, None] / 5.0
    return np.hstack([response_vectors, product, product.sum(1, keepdims=True), lengths]).astype(np.float32)


def feature_differences(pairs: Sequence[PreferencePair]) -> np.ndarray:
    """f(prompt, chosen) − f(prompt, rejected) for each pair."""
    prompts = [pair.prompt for pair in pairs]
    chosen = pair_features(prompts, [pair.chosen for pair in pairs])
    return chosen - pair_features(prompts, [pair.rejected for pair in pairs])


def fit_bradley_terry(differences: np.ndarray, folds: int, seed: int) -> tuple[np.ndarray, float]:
    """The head's weights and the L2 strength (sklearn's C) that cross-validation chose."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import GroupKFold

    count = len(differences)
    if count < 2 * folds:
        raise HoEError(f"only {count} training pairs: need at least {2 * folds} for {folds}-fold cross-validation")
    features = np.vstack([differences, -differences])
    labels = np.r_[np.ones(count), np.zeros(count)]
    groups = np.r_[np.arange(count), np.arange(count)]  # both orders of a pair stay in one fold
    splits = list(GroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(features, labels, groups))
    model = LogisticRegressionCV(
        Cs=10,
        l1_ratios=(0.0,),
        fit_intercept=False,
        cv=splits,
        scoring="accuracy",
        max_iter=5000,
        use_legacy_attributes=False,
    ).fit(features, labels)
    return model.coef_[0].astype(np.float32), float(np.ravel(model.C_)[0])


class PreferenceHead:
    """A fitted head: weights over ``pair_features`` and its metadata (data, license, accuracy)."""

    def __init__(self, weights: np.ndarray, meta: dict) -> None:
        self.weights = np.asarray(weights, dtype=np.float32)
        self.meta = meta

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.weights.tobytes()).hexdigest()[:12]

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        return [float(v) for v in pair_features(prompts, responses) @ self.weights]

    def save(self, folder: Path) -> None:
        from safetensors.numpy import save_file

        save_file({"weight": self.weights}, str(folder / WEIGHTS_FILE))
        write_json(folder / META_FILE, {"format": FORMAT, "features": FEATURES, **self.meta})

    @classmethod
    def load(cls, folder: str | Path) -> "PreferenceHead":
        """A head folder (possibly from anywhere): only JSON and safetensors are read, and both are checked."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        folder = Path(folder)
        if not (folder / META_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise HoEError(f"'{folder}' is not a reward head (needs {META_FILE} and {WEIGHTS_FILE})")
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            weights = load_file(str(folder / WEIGHTS_FILE)).get("weight")
        except (json.JSONDecodeError, UnicodeDecodeError, SafetensorError) as exc:
            raise HoEError(f"reward head '{folder}' is unreadable: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("features") != FEATURES:
            raise HoEError(f"reward head '{folder}': {META_FILE} is not a {FORMAT} head with these features")
        if weights is None or weights.shape != (FEATURE_SIZE,) or not np.isfinite(weights).all():
            raise HoEError(f"reward head '{folder}': 'weight' must be {FEATURE_SIZE} finite numbers")
        return cls(weights, meta)


def shipped_head_folder(name: str) -> Path:
    """The folder of a head shipped in the package (``harmlessness``, ``helpfulness``)."""
    if name not in SHIPPED_HEADS:
        raise HoEError(f"no shipped reward head '{name}' (choose from {', '.join(SHIPPED_HEADS)})")
    return Path(str(resources.files("hoe.rewards").joinpath("heads", name)))


class HeadScorer:
    """A head as an objective: ``harmlessness``/``helpfulness`` (shipped) or ``head:FOLDER``."""

    def __init__(self, folder: str | Path, name: str | None = None) -> None:
        self.head = PreferenceHead.load(folder)
        self.key = f"head/{name or Path(folder).name}/{self.head.digest}"

    def score(self, prompts, responses):
        return self.head.score(prompts, responses)


def _shipped_scorer(name: str):
    def make() -> HeadScorer:
        return HeadScorer(shipped_head_folder(name), name)

    make.__doc__ = f"The shipped '{name}' head (hoe/rewards/heads/{name})."
    return make


LEARNED_SCORERS = {name: _shipped_scorer(name) for name in SHIPPED_HEADS}


# ---------------------------------------------------------------------------- accuracy


def accuracy_interval(margins: np.ndarray) -> dict:
    """Pair accuracy (a tie counts half) with its standard error and a normal 95% interval."""
    correct = (margins > 0) + 0.5 * (margins == 0)
    count = len(correct)
    mean = float(correct.mean())
    se = float(correct.std(ddof=1) / math.sqrt(count)) if count > 1 else float("nan")
    return {"pairs": count, "accuracy": mean, "se": se, "low": mean - Z95 * se, "high": mean + Z95 * se}


def paired_accuracy_gain(head_margins: np.ndarray, other_margins: np.ndarray) -> dict:
    """The head's accuracy minus another rule's on the same pairs, with the paired SE."""
    difference = ((head_margins > 0) + 0.5 * (head_margins == 0)) - ((other_margins > 0) + 0.5 * (other_margins == 0))
    se = float(difference.std(ddof=1) / math.sqrt(len(difference))) if len(difference) > 1 else float("nan")
    return {"gain": float(difference.mean()), "se": se}


def baseline_margins(pairs: Sequence[PreferencePair], train: Sequence[PreferencePair]) -> dict[str, np.ndarray]:
    """Each simple rule's margin (chosen − rejected) on ``pairs``: the length rule whose direction
    the train split prefers, and every offline heuristic scorer taken as "higher wins"."""
    prompts = [pair.prompt for pair in pairs]
    lengths = {
        side: np.array([len(WORD.findall(getattr(pair, side))) for pair in pairs]) for side in ("chosen", "rejected")
    }
    longer_wins = np.mean([len(WORD.findall(p.chosen)) > len(WORD.findall(p.rejected)) for p in train]) >= 0.5
    sign = 1 if longer_wins else -1
    margins = {("longer" if longer_wins else "shorter") + " wins": sign * (lengths["chosen"] - lengths["rejected"])}
    for name, scorer_class in OFFLINE_SCORERS.items():
        scorer = scorer_class()
        chosen = np.array(scorer.score(prompts, [pair.chosen for pair in pairs]))
        margins[name] = chosen - np.array(scorer.score(prompts, [pair.rejected for pair in pairs]))
    return margins


# ---------------------------------------------------------------------------- the job


def train_reward_head(settings: RewardHeadSettings, out: str | Path, *, overwrite: bool = False) -> dict:
    """Fit a head on the train split of ``settings.pairs`` and write it with its report to ``out``;
    accuracy (with a 95% interval, beside the length and offline-scorer baselines) is measured on
    the eval and held-out splits. Every input is checked before anything is fitted or written."""
    started = time.perf_counter()
    files = tuple(part.removeprefix("file:") for part in settings.pairs.split("+") if not part.startswith("packaged:"))
    check_output_dir(out, overwrite, inputs=files, marker=META_FILE)
    splits = split_pairs(read_preference_pairs(settings.pairs))
    if not splits["train"]:
        raise HoEError(f"preference pairs '{settings.pairs}': none in the train split (all prompts hash elsewhere)")
    train_differences = feature_differences(splits["train"])
    weights, strength = fit_bradley_terry(train_differences, settings.folds, settings.seed)
    head = PreferenceHead(weights, {"pairs": settings.pairs, "l2_c": strength})
    report = {
        "settings": settings.model_dump(),
        "pairs": {split: len(rows) for split, rows in splits.items()},
        "l2_c": strength,
        "train": accuracy_interval(train_differences @ weights),
    }
    for split in ("eval", "heldout"):
        if splits[split]:
            report[split] = _split_accuracy(splits[split], splits["train"], weights)
    report["seconds"] = time.perf_counter() - started
    head.meta["accuracy"] = {
        split: report[split]["head"]["accuracy"] for split in ("eval", "heldout") if split in report
    }
    with atomic_dir(out, overwrite=overwrite) as folder:
        head.save(folder)
        write_json(folder / HEAD_REPORT, report)
    return report


def _split_accuracy(pairs: list[PreferencePair], train: list[PreferencePair], weights: np.ndarray) -> dict:
    head_margins = feature_differences(pairs) @ weights
    baselines = baseline_margins(pairs, train)
    return {
        "head": accuracy_interval(head_margins),
        "baselines": {
            name: {**accuracy_interval(margins), "head_gain": paired_accuracy_gain(head_margins, margins)}
            for name, margins in baselines.items()
        },
    }


def reward_head_summary(report: dict, out: str | Path) -> str:
    """The line ``hoe train-reward`` prints: held-out accuracy (else eval) with its interval, beside
    the best baseline."""
    split = "heldout" if "heldout" in report else "eval" if "eval" in report else None
    if split is None:
        return f"{out}: trained on {report['pairs']['train']} pairs; no eval or held-out pairs to measure accuracy on"
    head = report[split]["head"]
    best_name, best = max(report[split]["baselines"].items(), key=lambda item: item[1]["accuracy"])
    return (
        f"{out}: {split} pair accuracy {head['accuracy']:.3f} (95% CI {head['low']:.3f}–{head['high']:.3f}, "
        f"{head['pairs']} pairs) against {best['accuracy']:.3f} for the best baseline ({best_name}); "
        f"trained on {report['pairs']['train']} pairs in {report['seconds']:.0f} s"
    )
