"""Measuring a command the way a user would run it: as its own process."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time


def measure_process(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process (``os.wait4`` reports the child's own
    maximum). Its stderr goes to a temporary file, so a chatty child cannot block on a full pipe;
    on failure the tail of it is raised."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            raise RuntimeError(f"failed: {' '.join(command)}\n{errors.read().decode(errors='replace')[-2000:]}")
    return wall, usage.ru_maxrss / 1024
