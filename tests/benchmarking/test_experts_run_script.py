"""benchmarks/experts/run.py refuses options that make no expert, in one line (argparse's exit 2), before any
model loads."""

from __future__ import annotations

import subprocess
import sys

import pytest
from results_scripts import EXPERTS


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--methods", "raft", "--beta", "0.2"], "--beta is DPO's KL strength"),
        (["--methods", "dpo", "--beta", "0"], "--beta is DPO's KL strength"),
        (["--methods", "distill", "--sft-weight", "1"], "--sft-weight weighs a loss beside DPO's"),
        (["--methods", "dpo", "--tag", "../x"], "--tag takes letters, digits"),
    ],
)
def test_options_that_make_no_expert_exit_2_with_one_line(tmp_path, args, said):
    done = subprocess.run(
        [sys.executable, str(EXPERTS / "run.py"), "--work", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert said in done.stderr.strip().splitlines()[-1]
    assert not any(tmp_path.iterdir())
