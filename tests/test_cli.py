"""The CLI wraps the API: results on success, one line and exit 2 on bad input."""

from __future__ import annotations

import json
import re

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
    result = runner.invoke(
        app,
        [
            "extract",
            "--base",
            str(tiny_base),
            "--finetuned",
            str(tiny_planted[0]),
            "--out",
            str(out),
            "--rank",
            "4",
            "--quiet",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "14 modules" in result.output
    report = json.loads((out / "extract_report.json").read_text())
    assert (
        report["settings"]["rank"] == 4 and report["totals"]["wall_time_s"] > 0 and report["totals"]["peak_rss_mb"] > 0
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rank", "0"], "error: extract settings: rank (--rank): input should be greater than 0, got 0"),
        (
            ["--energy", "1.5"],
            "error: extract settings: energy (--energy): input should be less than or equal to 1, got 1.5",
        ),
        (["--svd", "qr"], "error: extract settings: svd (--svd): input should be 'exact' or 'randomized', got 'qr'"),
    ],
)
def test_extract_cli_bad_input(tiny_base, tiny_planted, tmp_path, args, message):
    out = tmp_path / "expert"
    result = runner.invoke(
        app, ["extract", "--base", str(tiny_base), "--finetuned", str(tiny_planted[0]), "--out", str(out), *args]
    )
    assert result.exit_code == 2
    assert result.output.strip() == message
    assert not out.exists()


def test_extract_cli_missing_model(tiny_base, tmp_path):
    result = runner.invoke(
        app, ["extract", "--base", str(tiny_base), "--finetuned", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "model not found" in result.output


def test_experts_take_several_values():
    from hoe.cli import expand_multi_value

    argv = ["merge", "--experts", "a", "b", "c", "--rank", "4", "--experts", "d"]
    assert expand_multi_value(argv) == [
        "merge",
        "--experts",
        "a",
        "--experts",
        "b",
        "--experts",
        "c",
        "--rank",
        "4",
        "--experts",
        "d",
    ]


def test_merge_cli_end_to_end(tiny_base, tiny_planted, tmp_path):
    """The installed console script, as a user types it."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    expert = tmp_path / "e"
    runner.invoke(
        app,
        [
            "extract",
            "--base",
            str(tiny_base),
            "--finetuned",
            str(tiny_planted[0]),
            "--out",
            str(expert),
            "--rank",
            "2",
            "--quiet",
        ],
    )
    hoe = shutil.which("hoe") or str(Path(sys.executable).parent / "hoe")
    command = [
        hoe,
        "merge",
        "--base",
        str(tiny_base),
        "--experts",
        str(expert),
        str(expert),
        "--weights",
        "0.7,0.3",
        "--method",
        "ties",
        "--density",
        "0.5",
        "--objectives",
        "helpful,harmless",
        "--rank",
        "2",
        "--out",
        str(tmp_path / "m"),
        "--quiet",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "anchor (helpful=0.7, harmless=0.3)" in result.stdout
    bad = subprocess.run(
        [*command[:-3], "--out", str(tmp_path / "m2"), "--weights", "0.7,x"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --weights must be comma-separated numbers, got '0.7,x'"
    assert not (tmp_path / "m2").exists()


def test_build_info_generate_export_cli(recipe_dir, tmp_path):
    bundle = tmp_path / "bundle"
    result = runner.invoke(app, ["build", "--recipe", str(recipe_dir / "recipe.yaml"), "--out", str(bundle), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "3 LoRA experts, 1 routers over helpful, harmless" in result.output
    result = runner.invoke(app, ["info", "--bundle", str(bundle)])
    assert (
        "expert balanced" in result.output
        and "router mostly-harmless" in result.output
        and "(untrained)" in result.output
    )

    result = runner.invoke(
        app,
        [
            "generate",
            "--bundle",
            str(bundle),
            "--preference",
            "helpful=0.7,harmless=0.3",
            "--max-new-tokens",
            "4",
            "hi",
            "hello",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n---\n") == 1 and "Loading" not in result.stdout

    requests = tmp_path / "in.jsonl"
    requests.write_text(
        json.dumps({"prompt": "hi", "preference": {"harmless": 1}}) + "\n" + json.dumps({"prompt": "yo"}) + "\n"
    )
    result = runner.invoke(
        app,
        [
            "generate",
            "--bundle",
            str(bundle),
            "--input",
            str(requests),
            "--output",
            str(tmp_path / "out.jsonl"),
            "--preference",
            "0.5,0.5",
            "--max-new-tokens",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows[0]["routing"] == {"harmless": 1.0} and rows[1]["routing"] == {"balanced": 1.0}
    assert all("response" in row for row in rows)

    result = runner.invoke(
        app, ["export", "--bundle", str(bundle), "--preference", "1,0", "--out", str(tmp_path / "lora")]
    )
    assert result.exit_code == 0 and "LoRA adapter of rank 3 for gates helpful=1" in result.output
    args = ["export", "--bundle", str(bundle), "--preference", "0.8,0.2", "--out", str(tmp_path / "r1"), "--rank", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert re.search(
        r"LoRA adapter of rank 1 for gates .*; recompressed to rank 1: relative error 0\.\d+", result.output
    )
    result = runner.invoke(app, [*args[:-4], "--out", str(tmp_path / "r0"), "--rank", "0"])
    assert (
        result.exit_code == 2
        and result.output.strip().splitlines()[-1] == "error: rank (--rank) must be positive, got 0"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--preference", "1,0,0"],
            "error: preference has 3 values but the bundle has 2 objectives (helpful, harmless)",
        ),
        (
            ["--preference", "funny=1"],
            "error: unknown objective 'funny' in the preference (objectives: helpful, harmless)",
        ),
        ([], "error: prompt 1 has no preference: pass --preference or a 'preference' field"),
    ],
)
def test_generate_bad_input(bundle_dir, args, message):
    result = runner.invoke(app, ["generate", "--bundle", str(bundle_dir), *args, "hi"])
    assert result.exit_code == 2 and result.output.strip() == message


def test_train_router_refuses_a_time_budget_that_is_not_positive(bundle_dir):
    result = runner.invoke(
        app, ["train-router", "--bundle", str(bundle_dir), "--anchor", "0.25,0.75", "--max-minutes", "0"]
    )
    assert (
        result.exit_code == 2
        and result.output.strip() == "error: max_minutes (--max-minutes) must be positive, got 0.0"
    )


def test_generate_bad_jsonl(bundle_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": \n')
    result = runner.invoke(
        app,
        [
            "generate",
            "--bundle",
            str(bundle_dir),
            "--input",
            str(bad),
            "--output",
            str(tmp_path / "o.jsonl"),
            "--preference",
            "1,0",
        ],
    )
    assert result.exit_code == 2 and result.output.startswith(f"error: {bad} line 2: malformed JSON")
    assert not (tmp_path / "o.jsonl").exists()


def test_score_cli(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"prompt": "Thanks?", "response": "You are welcome!", "id": 7})
        + "\n"
        + json.dumps({"prompt": "Thanks?", "response": "Get lost, idiot."})
        + "\n"
    )
    result = runner.invoke(
        app,
        [
            "score",
            "--objectives",
            "civility,concision",
            "--input",
            str(pairs),
            "--out",
            str(tmp_path / "s.jsonl"),
            "--cache",
            str(tmp_path / "c.sqlite"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert rows[0]["id"] == 7 and rows[0]["scores"]["civility"] > rows[1]["scores"]["civility"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    result = runner.invoke(
        app, ["score", "--objectives", "civility", "--input", str(bad), "--out", str(tmp_path / "o.jsonl")]
    )
    assert (
        result.exit_code == 2 and result.output.strip() == f"error: {bad} line 1: each line needs a string 'response'"
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    result = runner.invoke(
        app, ["score", "--objectives", "civility", "--input", str(empty), "--out", str(tmp_path / "o.jsonl")]
    )
    assert result.exit_code == 2 and "holds no prompts" in result.output


@pytest.mark.parametrize(
    "out, extra, message",
    [
        ("s.jsonl", [], "output '{tmp}/s.jsonl' already exists (pass --overwrite to replace it)"),
        ("pairs.jsonl", ["--overwrite"], "output '{tmp}/pairs.jsonl' is the input '{tmp}/pairs.jsonl'"),
        ("c.sqlite", ["--cache", "{tmp}/c.sqlite", "--overwrite"], "output '{tmp}/c.sqlite' is the input"),
        (".", [], "output '{tmp}' is a folder; name a file"),
    ],
)
def test_score_never_replaces_a_file_without_overwrite(tmp_path, out, extra, message):
    """An existing --out is kept (one line, exit 2) unless --overwrite; the input and the cache are never
    the output, even with it."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "Thanks?", "response": "You are welcome!"}) + "\n")
    (tmp_path / "s.jsonl").write_text("keep me\n")
    (tmp_path / "c.sqlite").write_bytes(b"")
    target = tmp_path / out if out != "." else tmp_path
    args = ["score", "--objectives", "concision", "--input", str(pairs), "--out", str(target)]
    result = runner.invoke(app, args + [a.replace("{tmp}", str(tmp_path)) for a in extra])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: " + message.replace("{tmp}", str(tmp_path)))
    assert len(result.output.strip().splitlines()) == 1
    assert (tmp_path / "s.jsonl").read_text() == "keep me\n" and pairs.read_text().startswith('{"prompt"')
    result = runner.invoke(
        app,
        [
            "score",
            "--objectives",
            "concision",
            "--input",
            str(pairs),
            "--out",
            str(tmp_path / "s.jsonl"),
            "--overwrite",
        ],
    )
    assert result.exit_code == 0 and '"scores"' in (tmp_path / "s.jsonl").read_text()


def test_evaluate_cli(bundle_dir, tmp_path):
    out = tmp_path / "run"
    args = [
        "evaluate",
        "--bundle",
        str(bundle_dir),
        "--out",
        str(out),
        "--methods",
        "hoe,soup,base",
        "--preferences",
        "grid:2",
        "--limit",
        "2",
        "--max-new-tokens",
        "3",
        "--scorers",
        "helpful=concision,harmless=civility",
        "--batch-size",
        "2",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| hoe | 2 |" in result.output and (out / "fronts.png").is_file()
    again = runner.invoke(app, ["evaluate", "--out", str(out), "--report-only"])
    assert again.exit_code == 0 and "| soup | 2 |" in again.output
    # the verdict, with which differences the paired bootstrap over the 2 prompts tells from noise
    assert "HoE's hypervolume (" in again.output and "Paired bootstrap over the 2 prompts (95%):" in again.output
    assert "**" not in again.output


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--methods", "hoe,magic"],
            "error: unknown method 'magic' (choose from base, experts, hoe, soup, merged, rs, morlhf, mod)",
        ),
        (["--preferences", "grid:0"], "error: 'grid:0': a grid needs at least 2 points per edge"),
        (["--scorers", "helpful"], "error: --scorers entry 'helpful' must look like objective=SPEC"),
        (["--reference", "a,b"], "error: --reference must be comma-separated numbers, got 'a,b'"),
        (
            ["--max-new-tokens", "0"],
            "error: decoding settings: max_new_tokens (--max-new-tokens): input should be greater than 0, got 0",
        ),
        (
            ["--sample", "--top-p", "2"],
            "error: decoding settings: top_p (--top-p): input should be less than or equal to 1, got 2.0",
        ),
        (
            ["--task-vectors", "both"],
            "error: eval settings: task_vectors (--task-vectors): input should be 'auto', 'lora' or 'full', got 'both'",
        ),
    ],
)
def test_evaluate_cli_bad_input(bundle_dir, tmp_path, extra, message):
    result = runner.invoke(app, ["evaluate", "--bundle", str(bundle_dir), "--out", str(tmp_path / "o"), *extra])
    assert result.exit_code == 2 and result.output.strip() == message
    assert not (tmp_path / "o").exists()


def test_evaluate_report_only_needs_a_run(tmp_path):
    result = runner.invoke(app, ["evaluate", "--out", str(tmp_path), "--report-only"])
    assert result.exit_code == 2 and "holds no evaluation run" in result.output


def test_make_expert_cli_lora(tiny_chat_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "expert"
    result = runner.invoke(
        app,
        [
            "make-expert",
            "--base",
            str(tiny_chat_model),
            "--objective",
            "concision",
            "--out",
            str(out),
            "--prompt-count",
            "4",
            "--k",
            "2",
            "--max-new-tokens",
            "4",
            "--steps",
            "1",
            "--lora",
            "--lora-rank",
            "2",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "model.safetensors").is_file()
    bad = runner.invoke(
        app,
        [
            "make-expert",
            "--base",
            str(tiny_chat_model),
            "--objective",
            "concision",
            "--out",
            str(tmp_path / "x"),
            "--lora",
            "--lora-rank",
            "0",
        ],
    )
    assert bad.exit_code == 2 and "lora_rank (--lora-rank): input should be greater than 0, got 0" in bad.output


@pytest.mark.parametrize("method", ["raft", "dpo", "ppo"])
def test_make_expert_cli_every_method_ends_with_its_summary(tiny_chat_model, tmp_path, monkeypatch, method):
    """Each method writes its expert and prints one summary line (ppo used to end in a KeyError on
    'train_seconds' after writing its expert)."""
    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "expert"
    result = runner.invoke(
        app,
        [
            "make-expert",
            "--base",
            str(tiny_chat_model),
            "--objective",
            "concision",
            "--out",
            str(out),
            "--method",
            method,
            "--prompt-count",
            "4",
            "--k",
            "2",
            "--max-new-tokens",
            "4",
            "--steps",
            "1",
            "--lora-rank",
            "2",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file() and result.exception is None
    line = result.output.strip().splitlines()[-1].split("\r")[-1]  # after the progress bar's carriage returns
    line = line[line.index(f"{out}: ") :]
    assert line.startswith(f"{out}: concision expert by {method}; ") and line.endswith(" s of training")
    if method == "ppo":
        assert " PPO steps" in line and "mean concision reward" in line


def test_make_expert_cli_keep_prompts(tiny_chat_model, tmp_path, monkeypatch):
    """--keep-prompts reaches the job (its summary counts the kept prompts); with ppo it is refused in
    one line before anything is sampled."""
    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    common = ["make-expert", "--base", str(tiny_chat_model), "--objective", "concision", "--prompt-count", "2"]
    common += ["--k", "2", "--max-new-tokens", "4", "--steps", "1", "--device", "cpu"]
    keep = ["--keep-prompts", "packaged:hh-harmless", "--keep-count", "2"]
    result = runner.invoke(app, [*common, *keep, "--out", str(tmp_path / "expert")])
    assert result.exit_code == 0, result.output
    assert "of the base's own answers to the kept prompts" in result.output
    report = json.loads((tmp_path / "expert" / "make_expert_report.json").read_text())
    assert report["settings"]["keep_prompts"] == "packaged:hh-harmless" and report["kept"] >= 1
    bad = runner.invoke(app, [*common, *keep, "--method", "ppo", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "keep_prompts are learnt by methods 'raft', 'distill' and 'dpo' only" in bad.output
    assert len(bad.output.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "command, model, exceptions",
    [
        ("extract", "hoe.experts.extract:ExtractSettings", {"device": "auto"}),
        ("merge", "hoe.merging.merge:MergeSettings", {"device": "auto", "weights": None}),
        ("make-expert", "hoe.training.settings:MakeExpertSettings", {"lora_rank": 16}),
        ("finetune", "hoe.training.settings:SFTSettings", {}),
        ("evaluate", "hoe.evaluation.settings:EvalSettings", {"methods": None, "reference": None, "scorers": None}),
        ("evaluate", "hoe.evaluation.settings:Decoding", {}),
        ("generate", "hoe.model.settings:GenerateSettings", {}),
        ("serve", "hoe.serving.settings:ServeSettings", {"bundle": None}),
    ],
)
def test_cli_defaults_are_the_settings_models(command, model, exceptions):
    """A CLI option and the settings field it fills (the one a recipe and the API use) share their
    default, so the CLI and a recipe cannot drift apart (a recipe-made LoRA expert once trained at
    2e-5 where the CLI gave 1e-4). ``exceptions``: where the CLI differs on purpose (device
    'auto', a string parsed into a list, --lora-rank's value when --lora is set)."""
    import importlib

    import typer.main

    module, name = model.split(":")
    fields = getattr(importlib.import_module(module), name).model_fields
    params = {p.name: p for p in typer.main.get_command(app).commands[command].params}
    shared = [f for f in fields if f in params and f not in exceptions and not fields[f].is_required()]
    assert shared, "no option maps to the model"
    for field in shared:
        default = fields[field].get_default(call_default_factory=True)
        assert params[field].default == default, (
            f"--{field.replace('_', '-')}: CLI {params[field].default!r}, model {default!r}"
        )


def test_one_error_boundary_for_what_input_and_machine_cause(bundle_dir, tmp_path):
    """A truncated weights file, a non-UTF-8 input and an unwritable output are one line and exit 2;
    with --verbose the traceback is kept for whoever debugs it."""
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(bundle_dir, bundle)
    router = next((bundle / "routers").glob("*.safetensors"))
    router.write_bytes(router.read_bytes()[:40])
    result = runner.invoke(app, ["generate", "--bundle", str(bundle), "--preference", "0.25,0.75", "hello"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1].startswith("error: ")
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(b'{"prompt": "caf\xe9"}\n')
    args = ["generate", "--bundle", str(bundle_dir), "--input", str(requests), "--output", str(tmp_path / "a.jsonl")]
    result = runner.invoke(app, args)
    assert (
        result.exit_code == 2
        and result.output.strip() == "error: a file is not UTF-8 text (invalid continuation byte at byte 15)"
    )
    verbose = runner.invoke(app, ["--verbose", *args])
    assert verbose.exit_code != 2 and isinstance(verbose.exception, UnicodeDecodeError)


def test_unexpected_errors_keep_their_traceback():
    from hoe.cli import user_error_message

    assert user_error_message(ZeroDivisionError("bug")) is None
    assert user_error_message(PermissionError(13, "Permission denied", "/x")) == "permission denied: /x"
    assert user_error_message(OSError(28, "No space left on device")) == "no space left on device"


def test_make_expert_cli_round_steps(tmp_path, monkeypatch):
    """--round-steps 3,2 reaches the job as two rounds of DPO; a part that is not a whole number, or
    rounds for another method, is one line and exit 2 before anything runs."""
    import hoe.training.make_expert as job

    seen = []
    monkeypatch.setattr(job, "make_expert", lambda base, settings, out, **kw: seen.append(settings) or {})
    monkeypatch.setattr(job, "make_expert_summary", lambda report, out: "made")
    common = ["make-expert", "--objective", "concision", "--out", str(tmp_path / "x"), "--device", "cpu"]
    result = runner.invoke(app, [*common, "--method", "dpo", "--round-steps", "3, 2"])
    assert result.exit_code == 0, result.output
    assert seen[0].round_steps == [3, 2] and seen[0].method == "dpo"
    for bad, message in [
        (["--method", "dpo", "--round-steps", "3,two"], "--round-steps takes whole numbers separated by commas"),
        (["--round-steps", "3,2"], "round_steps are rounds of iterated DPO: method 'dpo' only, not 'raft'"),
    ]:
        result = runner.invoke(app, [*common, *bad])
        assert result.exit_code == 2 and message in result.output
        assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_make_expert_cli_floor(tmp_path, monkeypatch):
    """--floor relevance=0.5,civility=0.9 reaches the job as scores per objective; a part without a number, or a
    floor for ppo, is one line and exit 2 before anything runs."""
    import hoe.training.make_expert as job

    seen = []
    monkeypatch.setattr(job, "make_expert", lambda base, settings, out, **kw: seen.append(settings) or {})
    monkeypatch.setattr(job, "make_expert_summary", lambda report, out: "made")
    common = ["make-expert", "--objective", "concision", "--out", str(tmp_path / "x"), "--device", "cpu"]
    result = runner.invoke(
        app, [*common, "--method", "distill", "--instruction", "Be brief.", "--floor", "relevance=0.5, civility=0.9"]
    )
    assert result.exit_code == 0, result.output
    assert seen[0].floor == {"relevance": 0.5, "civility": 0.9}
    for bad, message in [
        (["--floor", "relevance"], "--floor takes objective=score pairs separated by commas"),
        (["--floor", "relevance=high"], "--floor takes objective=score pairs separated by commas"),
        (["--method", "ppo", "--floor", "relevance=0.5"], "methods 'raft', 'distill' and 'dpo' only"),
    ]:
        result = runner.invoke(app, [*common, *bad])
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
