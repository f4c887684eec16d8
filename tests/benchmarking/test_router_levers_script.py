"""benchmarks/results/router_levers.py: its variants, its paired step differences, and its bad input (no training)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from results_scripts import RESULTS, load_results_script


def test_variants_and_paired_differences(tmp_path, monkeypatch):
    script = load_results_script(monkeypatch, "router_levers")
    assert script.parse_variant("kl0_2:kl_coef=0.2,steps=8") == ("kl0_2", ["kl_coef=0.2", "steps=8"])
    for bad in ("default:kl_coef=1", "kl-2:kl_coef=1", "kl", "../x:kl_coef=1"):
        with pytest.raises(argparse.ArgumentTypeError, match="a variant is NAME:KEY=VALUE"):
            script.parse_variant(bad)
    curve = tmp_path / "c.csv"
    curve.write_text("step,tchebycheff,raw_concision\n1,-0.5,0.6\n2,-0.4,0.7\n3,-0.3,0.9\n")
    first = script.read_curve(curve)
    second = {step: {**row, "raw_concision": row["raw_concision"] + 0.1 * step} for step, row in first.items()}
    result = script.paired(first, second, range(1, 4), "raw_concision")
    assert result == {"difference": 0.2, "se": pytest.approx(0.0577, abs=1e-4), "in_se": 3.5}


def test_bad_input_is_one_line_before_anything_trains(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "hoe.json").write_text('{"objectives": ["concision", "helpfulness"]}')
    cases = [
        (["--bundle", str(tmp_path), "--anchor", "0.5,0.5", "--variant", "a:kl_coef=1"], "is not a bundle"),
        (["--bundle", str(bundle), "--anchor", "0.5,0.5", "--variant", "a:kl_coeff=1"], "--variant: kl_coeff: Extra"),
        (["--bundle", str(bundle), "--anchor", "1,2,3", "--variant", "a:kl_coef=1"], "has 3 values but the bundle"),
        (["--bundle", str(bundle), "--anchor", "0.5,0.5", "--variant", "a:steps=4"], "--steps must lie within"),
    ]
    for args, message in cases:
        done = subprocess.run(
            [sys.executable, str(RESULTS / "router_levers.py"), *args, "--out", str(tmp_path / "out")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert not (tmp_path / "out").exists()
