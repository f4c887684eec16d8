"""`hoe generate` killed by SIGKILL (no handler, no cleanup) and run again writes exactly what an
uninterrupted run writes; a rerun with other settings, or on a bundle rebuilt since, is refused
instead of mixing rows. A second process writing the same output as a running one (generate, score)
gets one line and writes nothing. (build's kill and race: tests/pipeline/test_build_resume.py.)"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from filelock import FileLock
from typer.testing import CliRunner

from hoe.cli import app

# the CLI in a child process whose third batch kills it
KILLED_AT_THIRD_BATCH = """
import os, signal, sys
from hoe.model.hoe_model import HoEModel
from hoe.cli import app
original, calls = HoEModel.generate, []
def dying(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *args, **kwargs)
HoEModel.generate = dying
app(sys.argv[1:])
"""


def test_generate_killed_and_rerun_writes_what_an_uninterrupted_run_writes(bundle_dir, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(bundle_dir, bundle)
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(7)))
    args = ["generate", "--bundle", str(bundle), "--input", str(requests), "--preference", "0.3,0.7"]
    args += ["--sample", "--seed", "3", "--max-new-tokens", "5", "--batch-size", "2"]
    killed = tmp_path / "killed.jsonl"
    child = subprocess.run([sys.executable, "-c", KILLED_AT_THIRD_BATCH, *args, "--output", str(killed)])
    assert child.returncode == -signal.SIGKILL
    partial = tmp_path / "killed.jsonl.partial"
    assert not killed.exists() and len(partial.read_text().splitlines()) == 4  # two batches were written

    changed = CliRunner().invoke(app, [*args[:-6], "--seed", "99", *args[-4:], "--output", str(killed)])
    assert changed.exit_code == 2 and "other settings" in changed.output, changed.output
    assert len(partial.read_text().splitlines()) == 4  # the refused rerun wrote nothing
    spec = (bundle / "hoe.json").read_text()
    (bundle / "hoe.json").write_text(json.dumps(json.loads(spec)))  # the same folder, rebuilt or retrained
    rebuilt = CliRunner().invoke(app, [*args, "--output", str(killed)])
    assert rebuilt.exit_code == 2 and "other settings" in rebuilt.output, rebuilt.output
    (bundle / "hoe.json").write_text(spec)

    resumed = CliRunner().invoke(app, [*args, "--output", str(killed)])
    whole = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "whole.jsonl")])
    assert resumed.exit_code == 0 and whole.exit_code == 0, resumed.output + whole.output
    assert killed.read_text() == (tmp_path / "whole.jsonl").read_text()
    assert not partial.exists() and not list(tmp_path.glob("*.lock"))


def _second_writer(args: list[str], lock: Path) -> subprocess.CompletedProcess:
    """``hoe ARGS`` in a second process while this one holds ``lock``, as a first run still writing would."""
    with FileLock(str(lock)):
        return subprocess.run([sys.executable, "-m", "hoe.cli", *args], capture_output=True, text=True)


def test_a_second_generate_into_one_output_gets_one_line(bundle_dir, tmp_path):
    output = tmp_path / "answers.jsonl"
    args = ["generate", "--bundle", str(bundle_dir), "--preference", "1,0", "--max-new-tokens", "2", "hi"]
    child = _second_writer([*args, "--output", str(output)], Path(f"{output}.lock"))
    assert child.returncode == 2 and child.stderr.strip().splitlines() == [
        f"error: another run is writing '{output}' (lock {output}.lock); wait for it to finish"
    ], child.stderr[-2000:]
    assert not output.exists() and not Path(f"{output}.partial").exists()


def test_a_second_score_into_one_output_gets_one_line(tmp_path):
    pairs, out = tmp_path / "pairs.jsonl", tmp_path / "scored.jsonl"
    pairs.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n")
    args = ["score", "--objectives", "concision", "--input", str(pairs), "--out", str(out)]
    child = _second_writer(args, tmp_path / ".scored.jsonl.lock")
    assert child.returncode == 2 and len(child.stderr.strip().splitlines()) == 1, child.stderr[-2000:]
    assert child.stderr.startswith(f"error: another hoe score is writing '{out}'") and not out.exists()
