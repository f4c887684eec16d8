"""benchmarks/results/same_answers.py: two evaluation folders compared answer by answer, and its bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from results_scripts import RESULTS

SCRIPT = RESULTS / "same_answers.py"


def evaluation(folder: Path, answers: dict[str, list[str]], hoe_volume: float, tokens: int = 48) -> Path:
    """An evaluation folder as hoe evaluate writes one: generations/METHOD/LABEL.jsonl and results.json."""
    points = []
    for job, responses in answers.items():
        method, label = job.split("/")
        (folder / "generations" / method).mkdir(parents=True, exist_ok=True)
        rows = [{"index": i, "prompt": f"p{i}", "response": r} for i, r in reversed(list(enumerate(responses)))]
        (folder / "generations" / method / f"{label}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        points.append({"method": method, "label": label, "mean": [hoe_volume, 1.0]})
    methods = {"hoe": {"hypervolume": hoe_volume}, "base": {"hypervolume": None}}
    (folder / "results.json").write_text(json.dumps({"methods": methods, "points": points}))
    fingerprint = {"experts_sha": str(hoe_volume), "prompts_sha": "p", "decoding": {"max_new_tokens": tokens}}
    (folder / "run.json").write_text(json.dumps({"fingerprint": fingerprint}))
    return folder


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_it_counts_identical_answers_per_job_in_prompt_order(tmp_path):
    first = evaluation(tmp_path / "a", {"hoe/1-0": ["x", "y", "z"], "base/base": ["b"], "soup/1-0": ["s"]}, 0.5)
    second = evaluation(tmp_path / "b", {"hoe/1-0": ["x", "Y", "z"], "base/base": ["b"]}, 0.25)
    done = run(str(first), str(second), "--out", str(tmp_path / "same.json"))
    assert done.returncode == 0, done.stderr
    assert "3 of 4 answers identical over 2 (method, λ) jobs; largest hypervolume difference 0.25" in done.stdout
    result = json.loads((tmp_path / "same.json").read_text())
    assert result["identical_per_job"] == {"base/base": 1, "hoe/1-0": 2}
    assert result["jobs_only_in_one"] == ["soup/1-0"] and result["largest_point_mean_difference"] == 0.25


def test_bad_input_gets_one_line_and_exit_2(tmp_path):
    good = evaluation(tmp_path / "a", {"hoe/1-0": ["x"]}, 0.5)
    other = evaluation(tmp_path / "b", {"soup/1-0": ["x"]}, 0.5)
    longer = evaluation(tmp_path / "c", {"hoe/1-0": ["x"]}, 0.5, tokens=64)
    cases = [
        ([str(tmp_path / "none"), str(good)], "has no results.json, run.json and generations/"),
        ([str(good), str(other)], "share no (method, λ) generations"),
        ([str(good), str(longer)], "the two runs differ in decoding"),
    ]
    for args, message in cases:
        done = run(*args)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith("same_answers.py: error:")
