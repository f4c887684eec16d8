"""Reward-model presets on tiny random sequence-classification models saved in the test."""

from __future__ import annotations

import json

import pytest
import torch

from hoe.errors import HoEError
from hoe.rewards import NormStats, ScoreCache, get_scorer, load_stats, save_stats, score_objectives
from hoe.rewards.reward_model import RewardModelScorer

PROMPTS = ["what is two plus two", "name a colour"]
RESPONSES = ["four", "blue"]


def _tiny_classifier(folder, labels: int, tokenizer_source, id2label=None):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_labels=labels,
        pad_token_id=tokenizer.pad_token_id,
        id2label=id2label or {i: f"LABEL_{i}" for i in range(labels)},
    )
    torch.manual_seed(labels)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _manual(folder, first, second=None, label=0):
    """The score computed by hand: the model's logit for one text (or pair)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return float(model(**tokenizer(first, second, return_tensors="pt")).logits[0, label])


@pytest.mark.parametrize(
    "preset, labels, expected_input",
    [
        ("hh", 1, lambda p, r, bos: (f"\n\nHuman: {p}\n\nAssistant: {r}", None, 0)),
        ("two-class", 2, lambda p, r, bos: (r, None, 1)),
        ("summary", 1, lambda p, r, bos: (f"{r}{bos}{p}", None, 0)),
        ("pair", 1, lambda p, r, bos: (p, r, 0)),
    ],
)
def test_preset_quirks(tiny_chat_model, tmp_path, preset, labels, expected_input):
    folder = _tiny_classifier(tmp_path / "rm", labels, tiny_chat_model)
    scorer = RewardModelScorer(str(folder), preset)
    scores = scorer.score(PROMPTS, RESPONSES)
    for prompt, response, value in zip(PROMPTS, RESPONSES, scores):
        first, second, label = expected_input(prompt, response, scorer.tokenizer.bos_token or "")
        assert value == pytest.approx(_manual(folder, first, second, label), abs=1e-5)


def test_faithful_reads_the_faithful_label(tiny_chat_model, tmp_path):
    folder = _tiny_classifier(tmp_path / "rm", 2, tiny_chat_model, id2label={0: "HALLUCINATED", 1: "FAITHFUL"})
    scores = RewardModelScorer(str(folder), "faithful").score(PROMPTS, RESPONSES)
    assert scores[0] == pytest.approx(_manual(folder, PROMPTS[0], RESPONSES[0], label=1), abs=1e-5)


def test_head_of_the_wrong_size_is_refused(tiny_chat_model, tmp_path):
    folder = _tiny_classifier(tmp_path / "rm", 3, tiny_chat_model)
    with pytest.raises(HoEError, match="has a 3-label head but preset 'two-class' needs 2"):
        RewardModelScorer(str(folder), "two-class")
    with pytest.raises(HoEError, match="unknown reward-model preset 'fancy'"):
        RewardModelScorer(str(folder), "fancy")
    with pytest.raises(HoEError, match="has no FAITHFUL label"):
        RewardModelScorer(str(folder), "faithful")
    with pytest.raises(HoEError, match="reward model not found"):
        RewardModelScorer("/no/such/rm")


def test_long_inputs_are_truncated_and_counted(tiny_chat_model, tmp_path):
    folder = _tiny_classifier(tmp_path / "rm", 1, tiny_chat_model)
    scorer = RewardModelScorer(str(folder), "scalar")
    scorer.tokenizer.model_max_length = 16
    scores = scorer.score(["x" * 40, "hi"], ["y" * 40, "ok"])
    assert len(scores) == 2 and scorer.truncated == 1


CALLS = {"n": 0}


def length_score(prompts, responses):
    CALLS["n"] += len(responses)
    return [float(len(r)) for r in responses]


def test_callable_scorer_and_cache(tmp_path):
    cache = ScoreCache(tmp_path / "scores.sqlite")
    spec = f"py:{__name__}:length_score"
    first = score_objectives([spec], ["a", "b"], ["xx", "yyy"], cache=cache)
    again = score_objectives([spec], ["a", "b", "c"], ["xx", "yyy", "z"], cache=ScoreCache(tmp_path / "scores.sqlite"))
    assert first[spec] == [2.0, 3.0] and again[spec] == [2.0, 3.0, 1.0]
    assert CALLS["n"] == 3  # the second call scored only the new pair
    with pytest.raises(HoEError, match="unknown objective 'wit'"):
        get_scorer("wit")
    with pytest.raises(HoEError, match="must look like py:module:function"):
        get_scorer("py:nomodule")


def test_normalisation_stats_round_trip(tmp_path):
    stats = {"civility": NormStats.fit([1.0, 2.0, 3.0]), "flat": NormStats.fit([5.0, 5.0])}
    save_stats(tmp_path / "norm.json", stats)
    loaded = load_stats(tmp_path / "norm.json")
    assert loaded["civility"].apply([2.0, 3.0]) == pytest.approx([0.0, 1.0])
    assert loaded["flat"].apply([5.0]) == [0.0]
    assert json.loads((tmp_path / "norm.json").read_text())["civility"]["count"] == 3


def test_armo_preset_reads_one_reward_dimension(tiny_chat_model, tmp_path):
    folder = _tiny_classifier(tmp_path / "rm", 19, tiny_chat_model)
    by_name = RewardModelScorer(str(folder), "armo:correctness")
    by_index = RewardModelScorer(str(folder), "armo:1")
    text = by_name.texts(PROMPTS[:1], RESPONSES[:1])[0][0]
    assert by_name.score(PROMPTS[:1], RESPONSES[:1]) == by_index.score(PROMPTS[:1], RESPONSES[:1])
    assert by_name.score(PROMPTS[:1], RESPONSES[:1])[0] == pytest.approx(_manual(folder, text, label=1), abs=1e-5)
    with pytest.raises(HoEError, match="ArmoRM dimension 'wit'"):
        RewardModelScorer(str(folder), "armo:wit")
    with pytest.raises(HoEError, match="dimension 40 is out of range"):
        RewardModelScorer(str(folder), "armo:40")
    with pytest.raises(HoEError, match="unknown reward-model preset 'hh:2'"):
        RewardModelScorer(str(folder), "hh:2")


def test_beaver_presets_read_a_safe_rlhf_score_head(tiny_chat_model, tmp_path):
    """A safe-rlhf score model (LlamaForScore, weights under score_head) loads as a 1-label head;
    the cost preset negates it."""
    from safetensors.torch import load_file, save_file

    folder = _tiny_classifier(tmp_path / "rm", 1, tiny_chat_model)
    expected = _manual(folder, "BEGINNING OF CONVERSATION: USER: name a colour ASSISTANT:blue")
    weights = load_file(str(folder / "model.safetensors"))
    save_file({k.replace("score.", "score_head."): v for k, v in weights.items()}, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    config.update(
        architectures=["LlamaForScore"],
        num_labels=2,
        id2label={"0": "LABEL_0", "1": "LABEL_1"},
        label2id={"LABEL_0": 0, "LABEL_1": 1},
    )
    (folder / "config.json").write_text(json.dumps(config))
    reward = RewardModelScorer(str(folder), "beaver").score(["name a colour"], ["blue"])[0]
    cost = RewardModelScorer(str(folder), "beaver-cost").score(["name a colour"], ["blue"])[0]
    assert reward == pytest.approx(expected, abs=1e-5) and cost == pytest.approx(-expected, abs=1e-5)
