"""benchmarks/experts/trained_lora.py: it judges a full fine-tune by run.py's saved answers only when they
answer the same prompts with the same weights."""

from __future__ import annotations

import json

import pytest
from results_scripts import EXPERTS, load_benchmark_script

from hoe.training.sampling import weights_stamp


@pytest.fixture
def trained_lora(monkeypatch):
    return load_benchmark_script(monkeypatch, EXPERTS, "trained_lora")


def model_folder(tmp_path, name="expert"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    return folder


def save_answers(work, folder, prompts, weights):
    answers = work / "answers"
    answers.mkdir(parents=True, exist_ok=True)
    record = {"model": str(folder), "weights": weights, "prompts": prompts, "responses": ["a", "b"]}
    (answers / f"{folder.name}.json").write_text(json.dumps(record))


def test_the_same_prompts_and_weights_give_the_saved_answers(trained_lora, tmp_path):
    folder = model_folder(tmp_path)
    save_answers(tmp_path / "work", folder, ["p", "q"], weights_stamp(folder))
    assert trained_lora.saved_answers(tmp_path / "work", folder, ["p", "q"]) == ["a", "b"]


@pytest.mark.parametrize(
    ("case", "said"),
    [
        ("missing", "expert: no saved answers"),
        ("other prompts", "answers to other prompts"),
        ("other weights", "answers of another build of expert"),
        ("no stamp", "answers of another build of expert"),
    ],
)
def test_answers_that_do_not_fit_stop_with_one_line(trained_lora, tmp_path, case, said):
    folder = model_folder(tmp_path)
    work, stamp = tmp_path / "work", weights_stamp(folder)
    if case == "other prompts":
        save_answers(work, folder, ["q", "p"], stamp)
    elif case == "other weights":
        save_answers(work, folder, ["p", "q"], [[name, size + 1, time] for name, size, time in stamp])
    elif case == "no stamp":
        save_answers(work, folder, ["p", "q"], None)
    with pytest.raises(SystemExit, match=said):
        trained_lora.saved_answers(work, folder, ["p", "q"])
