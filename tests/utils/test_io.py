"""Atomic outputs: a killed run's temporary folder is removed by the next run, a live one's never."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from hoe.utils.io import atomic_dir, remove_leftovers, run_tag, write_text

WRITER = """
import sys, time
from hoe.utils.io import atomic_dir
with atomic_dir(sys.argv[1]) as tmp:
    (tmp / "big.bin").write_bytes(b"x" * 1000)
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_killed_writers_temp_folder_is_removed_by_the_next_run(tmp_path):
    """SIGKILL a run while it writes: its `.OUT.tmp-HOST-PID-*` folder stays (nothing can remove it at
    that moment); the next atomic write of the same output removes it and appears whole."""
    out = tmp_path / "bundle"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".bundle.tmp-")]
    assert len(leftovers) == 1 and (leftovers[0] / "big.bin").is_file() and not out.exists()
    with atomic_dir(out) as tmp:
        (tmp / "done").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"] and (out / "done").read_text() == "ok"


def test_live_and_foreign_temporaries_are_kept(tmp_path):
    """A run writing the same output now (this process, a live one, one on another machine of a shared
    file system) keeps its folder; a dead process's folder and file go; other names are never touched."""
    out = tmp_path / "out"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = run_tag().rsplit("-", 1)[0]
    names = {
        f".out.tmp-{run_tag()}-abc": True,  # this process
        f".out.tmp-{host}-{sleeper.pid}-abc": True,  # alive
        f".out.tmp-otherhost-{dead.pid}-abc": True,  # another machine: its pid means nothing here
        ".out.tmp-abc": True,  # not a name this version makes
        ".outer.tmp-x-1-a": True,  # another output
        f".out.tmp-{host}-{dead.pid}-abc": False,
        f".out.old-{host}-{dead.pid}-xyz": False,
    }
    for name in names:
        (tmp_path / name).mkdir()
    (tmp_path / f".out.tmp-{host}-{dead.pid}").write_text("half a file")
    try:
        removed = remove_leftovers(out)
    finally:
        sleeper.kill()
    kept = {p.name for p in tmp_path.iterdir()}
    assert {name for name, keep in names.items() if keep} == kept
    assert len(removed) == 3


def test_write_text_leaves_no_partial_file_of_a_dead_run(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = run_tag().rsplit("-", 1)[0]
    (tmp_path / f".answers.jsonl.tmp-{host}-{dead.pid}").write_text("partial")
    write_text(tmp_path / "answers.jsonl", "whole\n")
    assert [p.name for p in tmp_path.iterdir()] == ["answers.jsonl"]
    assert os.stat(tmp_path / "answers.jsonl").st_size == 6
