"""The CLI wraps the API: results on success, one line and exit 2 on bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hoe.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["extract"], ["finetune"], ["demo"], ["cache"]])
def test_help_everywhere(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_extract_cli(tiny_base, tiny_planted, tmp_path):
    out = tmp_path / "expert"
    result = runner.invoke(app, ["extract", "--base", str(tiny_base), "--finetuned", str(tiny_planted[0]), "--out", str(out), "--rank", "4", "--quiet", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "14 modules" in result.output
    report = json.loads((out / "extract_report.json").read_text())
    assert report["settings"]["rank"] == 4 and report["totals"]["wall_time_s"] > 0 and report["totals"]["peak_rss_mb"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rank", "0"], "error: --rank must be a positive integer, got 0"),
        (["--energy", "1.5"], "error: --energy must lie in (0, 1], got 1.5"),
        (["--svd", "qr"], "error: --svd must be one of exact, randomized, got 'qr'"),
    ],
)
def test_extract_cli_bad_input(tiny_base, tiny_planted, tmp_path, args, message):
    out = tmp_path / "expert"
    result = runner.invoke(app, ["extract", "--base", str(tiny_base), "--finetuned", str(tiny_planted[0]), "--out", str(out), *args])
    assert result.exit_code == 2
    assert result.output.strip() == message
    assert not out.exists()


def test_extract_cli_missing_model(tiny_base, tmp_path):
    result = runner.invoke(app, ["extract", "--base", str(tiny_base), "--finetuned", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "model not found" in result.output
