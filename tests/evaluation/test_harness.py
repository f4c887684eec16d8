"""``hoe evaluate`` end to end on the tiny bundle: every method, the checks the issue names,
resumption, the report rebuilt without a model, and bad input refused before any model loads."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import DEVICE, interrupt_at_call

from hoe.errors import HoEError
from hoe.evaluation import Decoding, EvalSettings, build_report, evaluate
from hoe.evaluation.methods import common as methods_module

SCORERS = {"helpful": "concision", "harmless": "positivity"}


def settings_for(bundle_dir, **overrides) -> EvalSettings:
    values = dict(
        bundle=str(bundle_dir),
        preferences="grid:3",
        prompts="packaged:hh-helpful-test",
        split="heldout",
        limit=3,
        decoding=Decoding(max_new_tokens=5, batch_size=2),
        scorers=SCORERS,
        device=DEVICE,
    )
    values.update(overrides)
    return EvalSettings.create(**values)


@pytest.fixture(scope="module")
def lora_run(bundle_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    results = evaluate(settings_for(bundle_dir, task_vectors="lora"), out, progress=False)
    return out, results


def staircase_hypervolume(means, reference) -> float:
    """2-objective hypervolume by sweeping the points in order of the first objective (maximised)."""
    above = sorted((a, b) for a, b in means if a > reference[0] and b > reference[1])
    volume, left = 0.0, reference[0]
    for i, (a, _) in enumerate(above):
        height = max(b for _, b in above[i:]) - reference[1]
        volume += (a - left) * height
        left = a
    return volume


def responses(out, method, label):
    path = out / "generations" / method / f"{label}.jsonl"
    return [json.loads(line)["response"] for line in path.read_text().splitlines()]


def test_every_method_every_point(lora_run):
    out, results = lora_run
    assert {p["method"] for p in results["points"]} == {"hoe", "soup", "merged", "rs", "mod", "experts", "base"}
    assert len(results["points"]) == 3 * 5 + 2 + 1
    for name in ("report.md", "results.json", "results.csv", "fronts.png"):
        assert (out / name).stat().st_size > 0
    for point in results["points"]:
        assert point["prompts"] == 3 and point["tokens"] > 0 and all(np.isfinite(point["mean"]))
    hoe = results["methods"]["hoe"]
    hoe_means = [p["mean"] for p in results["points"] if p["method"] == "hoe"]
    assert hoe["hypervolume"] == pytest.approx(staircase_hypervolume(hoe_means, results["reference_point"]))
    assert 1 <= hoe["nondominated"] <= 3 and hoe["cost_vs_base"] > 0
    for method in ("hoe", "soup", "merged", "rs", "mod"):  # wins are the per-λ minima of the reported gaps
        wins = sum(row["gaps"][method] <= min(row["gaps"].values()) + 1e-12 for row in results["tchebycheff"])
        assert results["methods"][method]["tchebycheff_wins"] == wins
    assert "| hoe |" in (out / "report.md").read_text()
    timing = json.loads((out / "timing.json").read_text())
    assert set(timing["methods"]) == {"hoe", "soup", "merged", "rs", "mod", "experts", "base"}
    assert timing["methods"]["hoe"]["label"] == "0.5-0.5" and timing["methods"]["base"]["cost_vs_base"] == 1.0
    assert hoe["cost_source"].startswith("side-by-side timing")
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + len(results["points"]) and rows[0].startswith("method,label,lambda_helpful")


def test_rs_on_lora_task_vectors_is_the_static_soup(lora_run, bundle_dir, tmp_path):
    out, _ = lora_run
    for label in ("1-0", "0.5-0.5", "0-1"):
        assert responses(out, "rs", label) == responses(out, "soup", label)
    # and the logits agree, not only the greedy tokens
    from hoe.checkpoints.loading import load_tokenizer
    from hoe.evaluation.methods import Context, Point
    from hoe.evaluation.methods.rewarded_soups import RewardedSoupsMethod
    from hoe.evaluation.methods.soup import SoupMethod
    from hoe.model.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    context = Context(bundle, load_tokenizer(bundle.spec.base_model), Decoding(), tmp_path, task_vectors="lora")
    point = Point("x", "0.3-0.7", [0.3, 0.7])
    soup, rs = SoupMethod(context), RewardedSoupsMethod(context)
    soup.setup(point)
    rs.setup(point)
    ids = torch.randint(5, 100, (2, 12))
    with torch.no_grad(), soup.model.preference(point.preference):
        soup_logits = soup.model.model(input_ids=ids).logits
    rs_logits = rs.model(input_ids=ids).logits.detach()
    assert torch.allclose(soup_logits, rs_logits, atol=1e-5)


def test_mod_with_one_hot_preference_is_that_expert(lora_run):
    out, _ = lora_run
    assert responses(out, "mod", "1-0") == responses(out, "experts", "helpful")
    assert responses(out, "mod", "0-1") == responses(out, "experts", "harmless")


def test_report_rebuilds_from_cache_without_a_model(lora_run, monkeypatch):
    out, results = lora_run
    import hoe.checkpoints.loading as loading

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(loading, "load_model", no_model)
    (out / "results.json").unlink()
    again = build_report(out)
    assert again["methods"] == json.loads(json.dumps(results["methods"]))
    assert (out / "results.json").is_file()


def test_full_task_vectors_and_resume(bundle_dir, tmp_path, monkeypatch):
    """An evaluation killed midway resumes to exactly what an uninterrupted run writes."""
    settings = settings_for(bundle_dir, methods=["rs", "merged", "base"], preferences="grid:2")
    whole = evaluate(settings, tmp_path / "whole", progress=False)
    restore = interrupt_at_call(monkeypatch, methods_module, "new_tokens", 3)
    with pytest.raises(KeyboardInterrupt):
        evaluate(settings, tmp_path / "resumed", progress=False)
    restore()
    assert list((tmp_path / "resumed" / "generations").rglob("*.partial"))
    resumed = evaluate(settings, tmp_path / "resumed", progress=False)
    for a, b in zip(whole["points"], resumed["points"]):
        assert a["label"] == b["label"] and a["mean"] == b["mean"] and a["tokens"] == b["tokens"]
    for method, label in (("rs", "1-0"), ("merged", "0-1"), ("base", "base")):
        assert responses(tmp_path / "whole", method, label) == responses(tmp_path / "resumed", method, label)
    run = json.loads((tmp_path / "whole" / "run.json").read_text())
    assert run["task_vectors"] == "auto" and run["merge"]["method"] == "linear"


def test_other_settings_are_refused_not_mixed(lora_run, bundle_dir):
    out, _ = lora_run
    with pytest.raises(HoEError, match="holds generations of another run \\(decoding differs\\)"):
        evaluate(
            settings_for(bundle_dir, task_vectors="lora", decoding=Decoding(max_new_tokens=7, batch_size=2)),
            out,
            progress=False,
        )


def test_overwriting_another_run_times_the_new_models(lora_run, bundle_dir, tmp_path):
    """--overwrite over a run of other settings clears its timing with its generations: the cost per token
    the report quotes is measured on the models it evaluates, never carried over from the earlier bundle."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(lora_run[0], out)
    stale = json.loads((out / "timing.json").read_text())
    for entry in stale["methods"].values():
        entry["cost_vs_base"] = 99.0  # as if measured on another bundle
    (out / "timing.json").write_text(json.dumps(stale))
    results = evaluate(settings_for(bundle_dir, task_vectors="lora", limit=2), out, overwrite=True, progress=False)
    timing = json.loads((out / "timing.json").read_text())
    assert timing["methods"]["base"]["cost_vs_base"] == 1.0
    assert all(entry["cost_vs_base"] != 99.0 for entry in timing["methods"].values())
    assert results["methods"]["hoe"]["cost_vs_base"] != 99.0


def test_a_method_added_to_a_finished_run_is_timed_with_the_others(lora_run, bundle_dir, tmp_path):
    """The same settings with one more method reuse the generations but time every method again, side
    by side: the report never shows a method without its cost, nor ratios from two separate runs."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(lora_run[0], out)
    timing = json.loads((out / "timing.json").read_text())
    del timing["methods"]["soup"]  # as if the first run had not evaluated the soup
    (out / "timing.json").write_text(json.dumps(timing))
    results = evaluate(settings_for(bundle_dir, task_vectors="lora"), out, progress=False)
    assert "soup" in json.loads((out / "timing.json").read_text())["methods"]
    assert results["methods"]["soup"]["cost_vs_base"] is not None


def test_a_second_evaluation_of_the_same_folder_is_one_line(lora_run, bundle_dir, monkeypatch):
    """While one `hoe evaluate` writes a folder, another (which with --overwrite would clear the
    first's generations) is refused before it touches anything; the folder stays as it was."""
    from filelock import FileLock

    import hoe.checkpoints.loading as loading
    from hoe.evaluation.harness import LOCK_FILE

    out, _ = lora_run
    before = sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file())
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("model loaded")))
    with FileLock(str(out / LOCK_FILE)):  # the first run, still writing
        with pytest.raises(HoEError, match=f"another hoe evaluate is writing '{out}'"):
            evaluate(settings_for(bundle_dir, task_vectors="lora", limit=2), out, overwrite=True, progress=False)
    after = sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file())
    assert after == before


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"methods": ["hoe", "nope"]}, "unknown method 'nope'"),
        ({"methods": []}, "no methods given"),
        ({"preferences": "grid:1"}, "at least 2 points"),
        ({"preferences": "EMPTY"}, "is empty"),
        ({"preferences": "LONG"}, "has 3 values but the bundle has 2"),
        ({"prompts": "packaged:nope"}, "unknown packaged dataset 'nope'"),
        ({"prompts": "EMPTYPROMPTS"}, "selects no prompts"),
        ({"split": "heldout", "prompts": "hub:x"}, "needs the prompt field"),
        ({"scorers": {"helpful": "nope"}}, "objective 'helpful' needs a scorer"),
        ({"scorers": {"other": "civility"}}, "not an objective of the bundle"),
        ({"task_vectors": "both"}, r"task_vectors \(--task-vectors\): input should be 'auto', 'lora' or 'full'"),
        ({"merge_method": "magic"}, "magic"),
        ({"reference": [0.0]}, r"reference \(--reference\) has 1 values"),
    ],
)
def test_bad_input_before_any_model_loads(bundle_dir, tmp_path, monkeypatch, overrides, message):
    import hoe.checkpoints.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("model loaded")))
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "long.txt").write_text("0.2,0.3,0.5\n")
    if overrides.get("prompts") == "EMPTYPROMPTS":
        overrides["prompts"] = f"file:{tmp_path / 'empty.txt'}"
    if overrides.get("preferences") in ("EMPTY", "LONG"):
        overrides["preferences"] = str(tmp_path / ("empty.txt" if overrides["preferences"] == "EMPTY" else "long.txt"))
    with pytest.raises(HoEError, match=message):  # from the settings model or from plan, before any model
        evaluate(settings_for(bundle_dir, **overrides), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_bundle_without_single_experts_is_refused_for_peers(bundle_dir, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(bundle_dir, bundle)
    spec = json.loads((bundle / "hoe.json").read_text())
    spec["experts"] = [e for e in spec["experts"] if e["name"] != "harmless"]
    spec["routers"] = []
    (bundle / "hoe.json").write_text(json.dumps(spec))
    with pytest.raises(HoEError, match="no single-objective expert for 'harmless'"):
        evaluate(settings_for(bundle, methods=["soup"]), tmp_path / "out", progress=False)


def test_morlhf_trains_a_lora_per_preference(bundle_dir, tmp_path):
    (tmp_path / "prompts.txt").write_text("".join(f"say {i}\n" for i in range(20)))
    (tmp_path / "ppo.yaml").write_text(
        f"prompts: 'file:{tmp_path / 'prompts.txt'}'\nprompt_count: 8\nbatch_size: 4\nmax_new_tokens: 3\n"
        "steps: 2\ncalibration_prompts: 4\nmax_prompt_tokens: 10\n"
    )
    settings = settings_for(
        bundle_dir, methods=["morlhf", "base"], preferences="grid:2", morlhf_config=str(tmp_path / "ppo.yaml")
    )
    results = evaluate(settings, tmp_path / "run", progress=False)
    assert [p["label"] for p in results["points"]] == ["1-0", "0-1", "base"]
    for label in ("1-0", "0-1"):
        adapter = tmp_path / "run" / "work" / "morlhf" / label
        assert (adapter / "adapter_config.json").is_file() and (adapter / "curve.csv").read_text().count("\n") == 3
    morlhf = [p for p in results["points"] if p["method"] == "morlhf"]
    assert results["methods"]["morlhf"]["tchebycheff_wins"] == 2  # the only method that follows λ here
    assert results["methods"]["morlhf"]["hypervolume"] == pytest.approx(
        staircase_hypervolume([p["mean"] for p in morlhf], results["reference_point"])
    )
    with pytest.raises(HoEError, match="training config: stepz: unknown key"):
        (tmp_path / "bad.yaml").write_text("stepz: 2\n")
        evaluate(
            settings_for(bundle_dir, methods=["morlhf"], morlhf_config=str(tmp_path / "bad.yaml")),
            tmp_path / "bad",
            progress=False,
        )


def test_anchors_put_every_router_of_the_bundle_in_the_preference_set(bundle_dir):
    """grid:2+anchors: the corners, then every anchor of the pool not already there (the routers'),
    so a router is evaluated where it was trained; planned without loading a model."""
    from hoe.evaluation import plan
    from hoe.model.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    planned = plan(settings_for(bundle_dir, preferences="grid:2+anchors")).preferences
    assert [list(p) for p in planned[:2]] == [[1.0, 0.0], [0.0, 1.0]]
    for anchor in bundle.pool():
        assert sum(np.allclose(p, anchor) for p in planned) == 1
    assert any(np.allclose(p, bundle.routers[0].anchor) for p in planned[2:])


def retrain_routers(bundle) -> None:
    """Stand in for `hoe train-router`: new router weights and a new training record in hoe.json."""
    from safetensors.torch import load_file, save_file

    spec = json.loads((bundle / "hoe.json").read_text())
    for router in spec["routers"]:
        weights = load_file(bundle / router["path"])
        save_file({k: v + 0.5 for k, v in weights.items()}, bundle / router["path"])
        router["trained"], router["training"] = True, {"steps": 1}
    (bundle / "hoe.json").write_text(json.dumps(spec))


def test_retrained_routers_regenerate_only_hoes_answers(lora_run, bundle_dir, tmp_path, monkeypatch):
    """Routers trained again change HoE's answers and nothing else: --overwrite then keeps every other
    method's generations (and merged adapters) and generates HoE's again; without it, one line that says
    so. Anything else in hoe.json changed (an expert remade) still regenerates every method."""
    from hoe.evaluation import harness

    out, bundle = tmp_path / "run", tmp_path / "bundle"
    shutil.copytree(lora_run[0], out)
    shutil.copytree(bundle_dir, bundle)
    retrain_routers(bundle)
    settings = settings_for(bundle, task_vectors="lora")
    with pytest.raises(HoEError, match=r"\(routers_sha differs\).*only HoE's answers are generated again"):
        evaluate(settings, out, progress=False)
    kept = {p: p.read_text() for p in (out / "generations").rglob("*.jsonl") if p.parent.name != "hoe"}
    generated = []
    run_job = harness._run_job
    monkeypatch.setattr(
        harness, "_run_job", lambda method, point, *a: generated.append(point.method) or run_job(method, point, *a)
    )
    results = evaluate(settings, out, overwrite=True, progress=False)
    assert set(generated) == {"hoe"}
    assert {p: p.read_text() for p in kept} == kept
    assert len(generated) == sum(p["method"] == "hoe" for p in results["points"])  # every HoE point
    spec = json.loads((bundle / "hoe.json").read_text())
    spec["experts"][0]["fingerprint"] = "remade"
    (bundle / "hoe.json").write_text(json.dumps(spec))
    generated.clear()
    evaluate(settings, out, overwrite=True, progress=False)
    assert set(generated) == {p["method"] for p in results["points"]}
