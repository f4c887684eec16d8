"""Measuring a command the way a user would run it: as its own process."""

from __future__ import annotations

import subprocess
import sys
import tempfile

# Runs the command and prints its wall seconds and peak RSS (KiB). It is started from a fresh
# interpreter on purpose: Linux keeps a process's peak RSS across exec and a forked child's memory
# starts as a copy of its parent's, so a command forked straight from a large process (a benchmark
# that has just fine-tuned a model) would report that process's peak instead of its own.
_WRAPPER = """
import os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measure_process(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process, its own and not its parent's (see
    ``_WRAPPER``). Its stderr goes to a temporary file, so a chatty child cannot block on a full
    pipe; on failure the tail of it is raised."""
    with tempfile.TemporaryFile() as errors:
        result = subprocess.run(
            [sys.executable, "-c", _WRAPPER, *command], stdout=subprocess.PIPE, stderr=errors, text=True
        )
        if result.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"failed: {' '.join(command)}\n{errors.read().decode(errors='replace')[-2000:]}")
    wall, peak_kib = result.stdout.split()
    return float(wall), int(peak_kib) / 1024
