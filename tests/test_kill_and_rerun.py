"""`hoe generate` killed by SIGKILL (no handler, no cleanup) and run again writes exactly what an
uninterrupted run writes; a rerun with other settings, or on a bundle rebuilt since, is refused
instead of mixing rows."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

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
