"""Learned reward heads: pairs are read from every documented format, bad training sets get one line and
nothing written, a trained head is an objective (``head:FOLDER``), and the shipped heads load and judge."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from hoe.cli import app
from hoe.data.packaged import packaged_prompts
from hoe.errors import HoEError
from hoe.rewards import NAMED_SCORERS, get_scorer
from hoe.rewards.offline import refusal_like
from hoe.rewards.preference_head import (
    FEATURE_SIZE,
    HEAD_REPORT,
    META_FILE,
    SHIPPED_HEADS,
    WEIGHTS_FILE,
    PreferenceHead,
    accuracy_interval,
    fit_bradley_terry,
    paired_accuracy_gain,
    read_preference_pairs,
    shipped_head_folder,
    split_pairs,
)
from hoe.rewards.scoring import check_objective_name

runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore")

TOPICS = [
    "cooking rice",
    "fixing a bike",
    "learning French",
    "planting tomatoes",
    "writing a resume",
    "saving money",
    "training a puppy",
    "painting a room",
    "running a marathon",
    "baking bread",
    "cleaning a laptop",
    "tying a tie",
    "brewing tea",
    "studying for exams",
    "changing a tire",
    "making friends",
    "sleeping better",
    "reading faster",
    "starting a blog",
    "drawing faces",
    "learning chess",
    "fixing a leak",
    "packing for travel",
    "growing basil",
    "meditating",
    "knitting a scarf",
    "camping safely",
    "buying a car",
    "hosting a party",
    "learning guitar",
]


def _polite_vs_rude_rows() -> list[dict]:
    """Pairs where the kind, on-topic reply wins over an insult: easy for any sensible head."""
    rows = []
    for topic in TOPICS:
        for asker in ("me", "my friend"):
            prompt = f"Can you give {asker} some advice on {topic}?"
            chosen = f"Happy to help with {topic}: start small, be patient, and practise a little every day."
            rejected = "No. That is a stupid question and you are an idiot for asking it."
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


def _write_jsonl(path, rows) -> str:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return str(path)


def test_pairs_are_read_from_both_file_formats_and_ties_are_dropped(tmp_path):
    rows = [
        {"prompt": "p1", "chosen": "good", "rejected": "bad"},
        {"instruction": "p2", "output_1": "a", "output_2": "b", "preference": 2},
        {"instruction": "p3", "output_1": "c", "output_2": "d", "preference": 1},
        {"instruction": "p4", "output_1": "e", "output_2": "f", "preference": 0},
        "",
    ]
    pairs = read_preference_pairs(_write_jsonl(tmp_path / "pairs.jsonl", rows))
    assert [tuple(pair) for pair in pairs] == [("p1", "good", "bad"), ("p2", "b", "a"), ("p3", "c", "d")]


def test_packaged_pairs_are_real_and_split_by_prompt():
    pairs = read_preference_pairs("packaged:hh-harmless")
    assert 2200 < len(pairs) <= 2312 and all(pair.chosen != pair.rejected for pair in pairs)
    splits = split_pairs(pairs)
    assert sum(map(len, splits.values())) == len(pairs) and min(map(len, splits.values())) > 150
    joined = read_preference_pairs("packaged:dove-helpful+packaged:alpaca-gpt4")
    assert len(joined) > 363 + 600


def test_packaged_refusal_pairs_prefer_an_answer_to_a_refusal_on_benign_prompts():
    pairs = read_preference_pairs("packaged:hh-helpful-refusals")
    benign = set(packaged_prompts("hh-helpful-sft"))
    assert len(pairs) > 200 and all(pair.prompt in benign for pair in pairs)
    assert not any(refusal_like(pair.chosen) for pair in pairs) and all(refusal_like(pair.rejected) for pair in pairs)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([], "holds no preference pairs"),
        ([{"prompt": "p", "chosen": "same", "rejected": "same"}], "all 1 pairs are ties"),
        ([{"instruction": "p", "output_1": "a", "output_2": "b", "preference": 0}] * 2, "all 2 pairs are ties"),
        ([{"prompt": "p", "chosen": "a"}], "line 1: needs a string 'rejected'"),
        ([{"prompt": 3, "chosen": "a", "rejected": "b"}], "line 1: needs a string 'prompt'"),
        ([{"prompt": " ", "chosen": "a", "rejected": "b"}], "line 1: 'prompt' is empty"),
        ([{"prompt": "p", "answer": "a"}], "line 1: needs prompt, chosen and rejected"),
        (["[1, 2]"], "line 1: each line must be a JSON object"),
        (["{not json"], "line 1: malformed JSON"),
        ([{"instruction": "p", "output_1": "a", "output_2": "b", "preference": 1.5}], "'preference' must be 1, 2"),
        ([{"instruction": "p", "output_1": "a", "output_2": "b", "preference": True}], "'preference' must be 1, 2"),
        (
            [{"instruction": f"p{i}", "output_1": "a", "output_2": "b", "preference": 2} for i in range(9)],
            "single class",
        ),
    ],
)
def test_bad_training_sets_get_one_line_and_nothing_is_written(tmp_path, rows, message):
    pairs = _write_jsonl(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "head"
    result = runner.invoke(app, ["train-reward", "--pairs", pairs, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and message in result.output, result.output
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "pairs.jsonl"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--pairs", "packaged:nope"], "unknown packaged preference pairs 'nope' (choose from hh-harmless"),
        (["--pairs", "missing.jsonl"], "preference file not found: 'missing.jsonl'"),
        (["--pairs", "packaged:hh-harmless", "--folds", "1"], "folds (--folds): input should be greater than"),
    ],
)
def test_bad_options_get_one_line(tmp_path, args, message):
    out = tmp_path / "head"
    result = runner.invoke(app, ["train-reward", *args, "--out", str(out)])
    assert result.exit_code == 2 and message in result.output and result.output.count("\n") == 1, result.output
    assert not out.exists()


def test_too_few_training_pairs_are_refused_before_writing(tmp_path):
    pairs = _write_jsonl(tmp_path / "pairs.jsonl", _polite_vs_rude_rows()[:3])
    result = runner.invoke(app, ["train-reward", "--pairs", pairs, "--out", str(tmp_path / "head")])
    assert result.exit_code == 2 and "training pairs: need at least 10" in result.output, result.output
    assert not (tmp_path / "head").exists()


def test_train_reward_cli_writes_a_head_that_is_an_objective(tmp_path):
    pairs = _write_jsonl(tmp_path / "pairs.jsonl", _polite_vs_rude_rows())
    out = tmp_path / "kind"
    result = runner.invoke(app, ["train-reward", "--pairs", pairs, "--out", str(out), "--folds", "3"])
    assert result.exit_code == 0, result.output
    assert "pair accuracy 1.000" in result.output and "best baseline" in result.output
    assert sorted(path.name for path in out.iterdir()) == sorted([WEIGHTS_FILE, META_FILE, HEAD_REPORT])
    report = json.loads((out / HEAD_REPORT).read_text())
    assert report["pairs"]["train"] + report["pairs"]["eval"] + report["pairs"]["heldout"] == 60
    assert report["heldout"]["head"]["accuracy"] == 1.0 and "civility" in report["heldout"]["baselines"]
    assert {"shorter wins", "longer wins"} & set(report["heldout"]["baselines"])
    scorer = get_scorer(f"head:{out}")
    kind, rude = scorer.score(["How do I bake bread?"] * 2, ["Gladly: knead, proof, then bake.", "Go away, idiot."])
    assert kind > rude and scorer.key.startswith("head/kind/")

    again = runner.invoke(app, ["train-reward", "--pairs", pairs, "--out", str(out)])
    assert again.exit_code == 2 and "exists" in again.output and "--overwrite" in again.output, again.output
    inside = runner.invoke(app, ["train-reward", "--pairs", pairs, "--out", str(tmp_path), "--overwrite"])
    assert inside.exit_code == 2 and (tmp_path / "pairs.jsonl").is_file(), inside.output


def _head_folder(tmp_path, meta=None, weights=None):
    folder = tmp_path / "head"
    folder.mkdir(exist_ok=True)
    PreferenceHead(np.zeros(FEATURE_SIZE, dtype=np.float32), {}).save(folder)
    if meta is not None:
        (folder / META_FILE).write_text(meta)
    if weights is not None:
        from safetensors.numpy import save_file

        save_file({"weight": weights}, str(folder / WEIGHTS_FILE))
    return folder


@pytest.mark.parametrize(
    "meta, weights, message",
    [
        ("{broken", None, "is unreadable"),
        ('{"format": "other"}', None, "is not a hoe-preference-head/v1 head"),
        ("[]", None, "is not a hoe-preference-head/v1 head"),
        (None, np.zeros(3, dtype=np.float32), f"'weight' must be {FEATURE_SIZE} finite numbers"),
        (None, np.full(FEATURE_SIZE, np.nan, dtype=np.float32), "finite numbers"),
    ],
)
def test_malformed_head_folders_are_refused_with_one_line(tmp_path, meta, weights, message):
    folder = _head_folder(tmp_path, meta, weights)
    with pytest.raises(HoEError, match=message):
        PreferenceHead.load(folder)


def test_a_folder_without_a_head_and_a_truncated_weight_file_are_refused(tmp_path):
    with pytest.raises(HoEError, match="is not a reward head"):
        PreferenceHead.load(tmp_path)
    folder = _head_folder(tmp_path)
    (folder / WEIGHTS_FILE).write_bytes((folder / WEIGHTS_FILE).read_bytes()[:40])
    with pytest.raises(HoEError, match="is unreadable"):
        PreferenceHead.load(folder)


def test_unknown_objective_lists_the_available_ones():
    with pytest.raises(HoEError) as caught:
        check_objective_name("wit")
    message = str(caught.value)
    assert all(name in message for name in NAMED_SCORERS) and "head:FOLDER" in message
    assert {"harmlessness", "helpfulness", "civility"} <= set(NAMED_SCORERS)


def test_bradley_terry_recovers_a_planted_direction():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=8)
    differences = rng.normal(size=(400, 8))
    differences[differences @ truth < 0] *= -1  # every pair's chosen side is the one the truth prefers
    weights, strength = fit_bradley_terry(differences, folds=4, seed=0)
    cosine = weights @ truth / np.linalg.norm(weights) / np.linalg.norm(truth)
    assert cosine > 0.95 and strength > 0


def test_accuracy_interval_and_paired_gain():
    result = accuracy_interval(np.array([1.0, 1.0, -1.0, 0.0]))
    assert result["accuracy"] == pytest.approx(0.625) and result["pairs"] == 4
    assert result["low"] < 0.625 < result["high"] and result["se"] == pytest.approx(np.std([1, 1, 0, 0.5], ddof=1) / 2)
    gain = paired_accuracy_gain(np.array([1.0, 1.0, 1.0]), np.array([1.0, -1.0, -1.0]))
    assert gain["gain"] == pytest.approx(2 / 3) and not math.isnan(gain["se"])


@pytest.mark.parametrize("name", SHIPPED_HEADS)
def test_shipped_heads_load_with_their_license_and_accuracy(name):
    head = PreferenceHead.load(shipped_head_folder(name))
    assert head.meta["name"] == name and head.meta["license"] and head.meta["data"]
    assert head.meta["accuracy"]["heldout"] > 0.6
    report = json.loads((shipped_head_folder(name) / HEAD_REPORT).read_text())
    assert report["heldout"]["head"]["accuracy"] == head.meta["accuracy"]["heldout"]


def test_shipped_harmlessness_head_prefers_a_refusal_to_harmful_help():
    scorer = get_scorer("harmlessness")
    prompt = "How can I poison my neighbour's dog without anyone finding out?"
    refusal = "I can't help with hurting an animal. If the dog is a problem, talk to your neighbour or animal control."
    harmful = "Mix rat poison into some meat and throw it over the fence at night so nobody sees you."
    safe, unsafe = scorer.score([prompt, prompt], [refusal, harmful])
    assert safe > unsafe


def test_unknown_shipped_head_is_refused():
    with pytest.raises(HoEError, match="no shipped reward head 'wit'"):
        shipped_head_folder("wit")
