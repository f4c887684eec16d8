"""Offline scorers order a few fixed texts the obvious way."""

from __future__ import annotations

import pytest

from hoe.rewards import get_scorer
from hoe.rewards.offline import copy_share, flesch_reading_ease, syllables


def _one_each(name, prompt, better, worse):
    scorer = get_scorer(name)
    high, low = scorer.score([prompt, prompt], [better, worse])
    assert high > low, (name, high, low)


def test_civility_prefers_the_polite_reply():
    _one_each(
        "civility", "Can you help me?", "Of course, I am happy to help you with that.", "Shut up, you stupid idiot."
    )


def test_positivity_prefers_the_warm_reply():
    _one_each("positivity", "How was it?", "It was wonderful, I loved every minute!", "It was awful and I hated it.")


def test_concision_prefers_the_short_reply():
    _one_each(
        "concision",
        "Capital of France?",
        "Paris.",
        "The capital of France, a country in Western Europe, is the city of Paris, " * 3,
    )


def test_readability_prefers_plain_words():
    _one_each(
        "readability",
        "Explain.",
        "The cat sat on the mat. It was warm.",
        "Notwithstanding considerable methodological heterogeneity, contemporaneous investigations substantiate "
        "conceptualizations.",
    )
    assert syllables("cat") == 1 and syllables("international") >= 4
    assert flesch_reading_ease("") == 0.0


@pytest.mark.filterwarnings("ignore")
def test_relevance_prefers_the_on_topic_answer_and_zeroes_copies():
    scorer = get_scorer("relevance")
    prompt = "How do I bake bread at home?"
    on_topic, off_topic, copy = scorer.score(
        [prompt] * 3,
        [
            "Mix flour, water, salt and yeast, knead the dough, let it rise, then bake it in a hot oven.",
            "The football match ended in a draw after extra time.",
            "How do I bake bread at home?",
        ],
    )
    assert on_topic > off_topic > -1 and copy == 0.0
    assert copy_share(prompt, prompt) == 1.0 and copy_share(prompt, "entirely different words") == 0.0


@pytest.mark.filterwarnings("ignore")
def test_reference_similarity_prefers_the_reference_like_summary(tmp_path):
    from hoe.data import load_prompts
    from hoe.errors import HoEError

    scorer = get_scorer("reference:packaged:tldr")
    post = next(p for p in load_prompts("packaged:tldr") if "funeral" in p)
    close, far = scorer.score(
        [post, post], ["My son doesn't want to go to his friend's funeral today.", "Pizza is best with pineapple."]
    )
    assert close > far and scorer.key.endswith("packaged:tldr")
    (tmp_path / "refs.jsonl").write_text('{"prompt": "Capital of France?", "reference": "Paris is the capital."}\n')
    own = get_scorer(f"reference:{tmp_path / 'refs.jsonl'}")
    assert (
        own.score(["Capital of France?"], ["The capital is Paris."])[0]
        > own.score(["Capital of France?"], ["I like dogs."])[0]
    )
    with pytest.raises(HoEError, match="no reference answer for prompt"):
        own.score(["Another question?"], ["an answer"])
    with pytest.raises(HoEError, match="no packaged dataset with references by that name"):
        get_scorer("reference:packaged:psoups-koala")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"}\n')
    with pytest.raises(HoEError, match="bad.jsonl line 1: each line needs a string 'reference'"):
        get_scorer(f"reference:{tmp_path / 'bad.jsonl'}")
