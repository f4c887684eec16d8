"""Benchmark process measurements: a child's own peak memory, not its parent's."""

from __future__ import annotations

import sys

import pytest

from hoe.benchmarking.process import measure_process


def test_peak_memory_is_the_childs_own_even_under_a_bloated_parent():
    """The parent holds 600 MB; a child that allocates 150 MB must report about 150 MB, and one
    that allocates nothing the size of a bare interpreter (forked straight from the parent, both
    used to report the parent's 600 MB)."""
    ballast = bytearray(b"\x01") * (600 * 1024 * 1024)  # filled with ones: every page is touched
    try:
        wall, small = measure_process([sys.executable, "-c", "pass"])
        _, big = measure_process([sys.executable, "-c", "x = bytearray(b'\\x01') * (150 * 1024 * 1024)"])
    finally:
        del ballast
    assert small < 100 and 150 < big < 250
    assert 0 < wall < 30


def test_a_failing_command_raises_with_its_error_output():
    with pytest.raises(RuntimeError, match="boom"):
        measure_process([sys.executable, "-c", "import sys; sys.exit('boom')"])
