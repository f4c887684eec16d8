"""``hoe evaluate`` spread over two processes by ``accelerate launch`` (gloo on the CPU): each
process generates its share of (method, point) jobs and the main one writes the report."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port


@pytest.mark.skipif(
    shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists(),
    reason="accelerate launcher not installed",
)
def test_two_processes(bundle_dir, tmp_path):
    launcher = str(Path(sys.executable).parent / "accelerate")
    out = tmp_path / "run"
    command = [
        launcher,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        "hoe.cli",
        "evaluate",
        "--bundle",
        str(bundle_dir),
        "--out",
        str(out),
        "--methods",
        "hoe,soup,base",
        "--preferences",
        "grid:3",
        "--limit",
        "2",
        "--max-new-tokens",
        "3",
        "--batch-size",
        "2",
        "--scorers",
        "helpful=concision,harmless=civility",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert len(results["points"]) == 7
    assert result.stdout.count("| hoe | 3 |") == 1  # only the main process reports
