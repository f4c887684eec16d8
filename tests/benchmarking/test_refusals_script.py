"""benchmarks/experts/refusals.py: paired refusal-like differences from saved answers, and its bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from results_scripts import EXPERTS

from hoe.data import load_prompts

SCRIPT = EXPERTS / "refusals.py"


def validation_prompts(per_subset: int) -> list[str]:
    """run.py's validation prompts: the end of each source's train split, helpful first."""
    return (
        load_prompts("packaged:hh-helpful-sft", "train")[-per_subset:]
        + load_prompts("packaged:hh-harmless", "train")[-per_subset:]
    )


def save(folder: Path, name: str, prompts: list[str], responses: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"model": name, "prompts": prompts, "responses": responses}))


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--validation", "--per-subset", "4", "--work", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_differences_are_paired_per_subset(tmp_path):
    prompts = validation_prompts(4)
    answers = tmp_path / "answers-validation"
    plain = "Here is how to do it: first open the box."
    save(answers, "a", prompts, [plain] * 8)
    # b refuses every red-team prompt and the first helpful one
    save(answers, "b", prompts, ["I'm sorry, I can't help with that."] + [plain] * 3 + ["I'm sorry, I can't."] * 4)
    out = tmp_path / "result"
    done = run(tmp_path, "--against", "a=x/a", "--expert", "b=b", "--out", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    refusal = report["against_reference"]["b"]["refusal_like"]
    assert refusal["helpful"]["difference"] == 0.25 and refusal["harmless"]["difference"] == 1.0
    assert refusal["harmless"]["paired_se"] == 0.0
    assert report["rates"]["a"]["refusal_like"]["harmless"]["rate"] == 0.0
    assert "+100.0%" in out.with_suffix(".md").read_text()


def test_missing_or_mismatched_answers_exit_2_with_one_line(tmp_path):
    prompts = validation_prompts(4)
    save(tmp_path / "answers-validation", "a", prompts, ["ok"] * 8)
    save(tmp_path / "answers-validation", "other", prompts[::-1], ["ok"] * 8)
    for expert, said in (("b=b", "no saved answers for b"), ("o=other", "answers to other prompts")):
        done = run(tmp_path, "--against", "a=a", "--expert", expert, "--out", str(tmp_path / "r"))
        assert done.returncode == 2
        assert said in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "r.json").exists()
    done = run(tmp_path, "--against", "a=a", "--expert", "a=a", "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "new label" in done.stderr
