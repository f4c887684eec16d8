"""benchmarks/results/curve_difference.py: two router curves paired by step, and its bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from results_scripts import RESULTS

SCRIPT = RESULTS / "curve_difference.py"


def curve(path: Path, values: list[float]) -> Path:
    path.write_text("step,tchebycheff,kl\n" + "".join(f"{i + 1},{v},0\n" for i, v in enumerate(values)))
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_the_paired_difference_is_the_mean_of_per_step_differences_with_their_standard_error(tmp_path):
    """Steps 2–4 differ by +0.1, +0.2, +0.3: mean +0.2, SD 0.1, SE 0.1/√3 = 0.0577; step 1 is left out."""
    first = curve(tmp_path / "a.csv", [5.0, -0.5, -0.4, -0.3])
    second = curve(tmp_path / "b.csv", [-9.0, -0.4, -0.2, 0.0])
    done = run(str(first), str(second), "--steps", "2-4")
    assert done.returncode == 0, done.stderr
    assert "second − first +0.2000 ± 0.0577 (+3.5 paired SE over 3 steps)" in done.stdout
    assert "first -0.4000, second -0.2000" in done.stdout


def test_bad_input_gets_one_line_and_exit_2(tmp_path):
    first = curve(tmp_path / "a.csv", [0.1, 0.2])
    cases = [
        ([str(tmp_path / "none.csv"), str(first), "--steps", "1-2"], "no curve at"),
        ([str(first), str(first), "--steps", "1-5"], "missing: [3, 4, 5]"),
        ([str(first), str(first), "--steps", "1-2", "--column", "reward_x"], "has no 'reward_x' column"),
        ([str(first), str(first), "--steps", "x"], "steps are FIRST-LAST"),
    ]
    for args, message in cases:
        done = run(*args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
