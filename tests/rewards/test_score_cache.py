"""The SQLite score cache shared by processes: concurrent writers all land, a bad file is one line."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time

import pytest

from hoe.errors import HoEError
from hoe.rewards import ScoreCache


class CountingScorer:
    key = "length-v1"

    def score(self, prompts, responses):
        return [float(len(r)) for r in responses]


def _write_many(path: str, worker: int, rounds: int) -> None:
    cache = ScoreCache(path)
    for round_ in range(rounds):
        responses = [f"w{worker} r{round_} {i}" for i in range(25)]
        cache.score(CountingScorer(), ["p"] * len(responses), responses)


def test_processes_sharing_a_cache_never_lose_a_write(tmp_path):
    """Before, two `hoe score` runs on one cache failed with 'database is locked'; now each write
    waits for the lock, and every row of every process is stored."""
    path = str(tmp_path / "scores.sqlite")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_write_many, args=(path, w, 40)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [p.exitcode for p in workers] == [0] * 4
    rows = ScoreCache(path).db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
    assert rows == 4 * 40 * 25


def test_a_writer_waits_for_a_long_write_of_another_process(tmp_path):
    """A write that holds the lock for longer than SQLite's default 5 s (a big batch, a slow disk)
    made the other writer fail with 'database is locked'; now it waits its turn."""
    path = tmp_path / "scores.sqlite"
    cache = ScoreCache(path)
    locked, done = threading.Event(), []

    def hold_the_lock() -> None:
        other = sqlite3.connect(str(path), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO scores VALUES ('other', 1.0)")
        locked.set()
        time.sleep(6)
        other.execute("COMMIT")
        done.append(time.perf_counter())

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    locked.wait(10)
    assert cache.score(CountingScorer(), ["p", "p"], ["a", "bb"]) == [1.0, 2.0]
    holder.join()
    finished = time.perf_counter()
    assert done and finished >= done[0]  # it waited for the other write instead of failing
    assert cache.db.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 3


@pytest.mark.parametrize("content", [b"not a database at all" * 100, None])
def test_a_file_that_is_not_a_cache_is_one_line(tmp_path, content):
    path = tmp_path / "scores.sqlite"
    if content is None:
        path.mkdir()  # a folder where the file should be
    else:
        path.write_bytes(content)
    with pytest.raises(HoEError, match=f"score cache '{path}' cannot be used: "):
        ScoreCache(path)
