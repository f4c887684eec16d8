"""Recipes, builds, bundle checks and export."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import relative_error

from hoe.errors import HoEError
from hoe.model import HoEModel, load_bundle
from hoe.model.export import export_preference
from hoe.pipeline.build import build_bundle

IDS = torch.randint(5, 100, (2, 9), generator=torch.Generator().manual_seed(1))


def test_bundle_layout(bundle_dir):
    spec = json.loads((bundle_dir / "hoe.json").read_text())
    assert spec["format_version"] == 1 and spec["objectives"] == ["helpful", "harmless"]
    assert [e["name"] for e in spec["experts"]] == ["helpful", "harmless", "balanced"]
    assert [e["anchor"] for e in spec["experts"]] == [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
    assert spec["routers"][0]["covers"] and (bundle_dir / spec["routers"][0]["path"]).is_file()
    for entry in spec["experts"]:
        folder = bundle_dir / entry["path"]
        assert (folder / "adapter_config.json").is_file() and (folder / "hoe_expert.json").is_file()
    assert len(spec["target_modules"]) == 14


def test_rebuild_reuses_unchanged_experts(recipe_dir, tmp_path, monkeypatch):
    """Guards a build that never reuses: unchanged experts are copied (same bytes, same mtime, no
    extraction); only the merge whose recipe entry changed is made again."""
    import hoe.pipeline.build as build

    out = tmp_path / "b"
    build_bundle(recipe_dir / "recipe.yaml", out, progress=False)
    stamps = {p.name: (p / "adapter_model.safetensors").stat().st_mtime_ns for p in (out / "experts").iterdir()}
    contents = {p.name: (p / "adapter_model.safetensors").read_bytes() for p in (out / "experts").iterdir()}
    changed = (recipe_dir / "recipe.yaml").read_text().replace("method: linear", "method: ties")
    (tmp_path / "recipe.yaml").write_text(changed)
    for name in ("ft-helpful", "ft-harmless"):
        (tmp_path / name).symlink_to(recipe_dir / name)
    extractions = []
    make_expert = build._make_expert
    monkeypatch.setattr(
        build, "_make_expert", lambda *args, **kwargs: extractions.append(args[2].name) or make_expert(*args, **kwargs)
    )
    build_bundle(tmp_path / "recipe.yaml", out, progress=False)
    after = {p.name: (p / "adapter_model.safetensors").stat().st_mtime_ns for p in (out / "experts").iterdir()}
    assert json.loads((out / "experts" / "balanced" / "merge_report.json").read_text())["method"] == "ties"
    assert extractions == []
    # copies keep their bytes and times; only the changed merge was made again
    assert after.keys() == stamps.keys()
    for name in ("helpful", "harmless"):
        assert after[name] == stamps[name]
        assert (out / "experts" / name / "adapter_model.safetensors").read_bytes() == contents[name]
    assert (out / "experts" / "balanced" / "adapter_model.safetensors").read_bytes() != contents["balanced"]
    assert load_bundle(out).experts[2].source["method"] == "ties"


def test_float16_recipe_halves_the_experts_and_still_routes(recipe_dir, bundle_dir, tmp_path):
    from safetensors import safe_open

    (tmp_path / "recipe.yaml").write_text(
        (recipe_dir / "recipe.yaml").read_text().replace("rank: 3", "rank: 3\ndtype: float16")
    )
    for name in ("ft-helpful", "ft-harmless"):
        (tmp_path / name).symlink_to(recipe_dir / name)
    out = tmp_path / "b16"
    build_bundle(tmp_path / "recipe.yaml", out, progress=False)
    for name in ("helpful", "balanced"):
        with safe_open(str(out / "experts" / name / "adapter_model.safetensors"), "pt") as handle:
            assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.float16}
    ids = torch.randint(5, 100, (1, 6))
    full, half = HoEModel.from_bundle(bundle_dir), HoEModel.from_bundle(out)
    with torch.no_grad():
        a = full(input_ids=ids, preference=[0.3, 0.7]).logits
        b = half(input_ids=ids, preference=[0.3, 0.7]).logits
    assert torch.allclose(a, b, atol=1e-2) and not torch.equal(a, b)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda r: r.replace("objectives: [helpful, harmless]", "objectives: [helpful]"),
            "experts.1.anchor: preference has 2 values but the bundle has 1",
        ),
        (lambda r: r.replace("    finetuned: ft-harmless\n", ""), "experts.1: Value error, give exactly one of 'lora'"),
        (lambda r: r.replace("rank: 3", "rank: 0"), "rank: Input should be greater than 0"),
        (lambda r: r.replace("experts: [helpful, harmless]", "experts: [helpful, nobody]"), "unknown expert 'nobody'"),
        (lambda r: r.replace("anchor: [0.25, 0.75]", "anchor: [0.5, 0.5]"), "is the anchor of expert 'balanced'"),
        (lambda r: r + "colour: blue\n", "colour: Extra inputs are not permitted"),
        (
            lambda r: r.replace("anchor: [0, 1]", "anchor: [0, -1]"),
            "experts.1.anchor: preference values must be non-negative",
        ),
        (lambda r: r.replace("finetuned: ft-harmless", "finetuned: ./missing-model"), "model not found"),
        (
            lambda r: r.replace("base: ", "base: [").replace("\nobjectives", "]\nobjectives", 1).replace("[", "[[", 1),
            "not valid YAML",
        ),
    ],
)
def test_bad_recipes_leave_nothing(recipe_dir, tmp_path, edit, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(edit((recipe_dir / "recipe.yaml").read_text()))
    for name in ("ft-helpful", "ft-harmless"):
        (tmp_path / name).symlink_to(recipe_dir / name)
    with pytest.raises(HoEError, match=message):
        build_bundle(recipe, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def _copy(bundle_dir, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(bundle_dir, target)
    return target


def test_bundle_checks_refuse_before_loading(bundle_dir, tmp_path, tiny_base):
    broken = _copy(bundle_dir, tmp_path)
    spec = json.loads((broken / "hoe.json").read_text())
    spec["format_version"] = 7
    (broken / "hoe.json").write_text(json.dumps(spec))
    with pytest.raises(HoEError, match="unknown format version 7"):
        HoEModel.from_bundle(broken)

    missing = _copy(bundle_dir, tmp_path / "m")
    shutil.rmtree(missing / "experts" / "harmless")
    with pytest.raises(HoEError, match="expert 'harmless': missing expert folder"):
        HoEModel.from_bundle(missing)

    other_base = _copy(bundle_dir, tmp_path / "o")
    from conftest import save_tiny_llama

    wide = save_tiny_llama(tmp_path / "wide", intermediate_size=80)
    spec = json.loads((other_base / "hoe.json").read_text())
    spec["base_model"] = str(wide)
    (other_base / "hoe.json").write_text(json.dumps(spec))
    with pytest.raises(HoEError, match="does not match the base: module 'model.layers.0.mlp.(down|gate|up)_proj' maps"):
        HoEModel.from_bundle(other_base)


def test_export_lora_and_merged_reproduce_the_model(bundle_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    hoe = HoEModel.from_bundle(bundle_dir)
    with torch.no_grad():
        expected = hoe(input_ids=IDS, preference=[0.8, 0.2]).logits
    record = export_preference(bundle_dir, "helpful=0.8,harmless=0.2", tmp_path / "lora")
    assert record["gates"] == pytest.approx({"helpful": 0.6, "balanced": 0.4})
    base = AutoModelForCausalLM.from_pretrained(hoe.bundle.spec.base_model)
    with torch.no_grad():
        via_peft = PeftModel.from_pretrained(base, str(tmp_path / "lora")).eval()(input_ids=IDS).logits
    assert relative_error(via_peft, expected) < 1e-4
    export_preference(bundle_dir, [0.8, 0.2], tmp_path / "merged", merged=True)
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()(input_ids=IDS).logits
    assert relative_error(merged, expected) < 1e-4


def test_export_refuses_router_preferences(bundle_dir, tmp_path):
    with pytest.raises(HoEError, match="routes through router expert 'mostly-harmless'"):
        export_preference(bundle_dir, [0.25, 0.75], tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_export_grid_writes_vllm_ready_adapters_that_reproduce_the_router_free_mix(bundle_dir, tmp_path):
    """One LoRA per grid point, each what peft loads to the experts-only mix at its λ (the whole model
    where HoE routes through no router), each at one uniform rank (no rank_pattern: vLLM before 0.11
    ignores it), with the fields vLLM's PEFTHelper refuses absent, and a vllm serve command."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from hoe.model.export import VLLM_MAX_LORA_RANKS, export_grid

    manifest = export_grid(bundle_dir, [[1, 0], [0.8, 0.2], [0.25, 0.75]], tmp_path / "grid")
    names = [a["name"] for a in manifest["adapters"]]
    assert names == ["hoe-helpful-1-harmless-0", "hoe-helpful-0.8-harmless-0.2", "hoe-helpful-0.25-harmless-0.75"]
    assert [a["hoe_routes_through_a_router"] for a in manifest["adapters"]] == [False, False, True]
    assert manifest["max_lora_rank"] in VLLM_MAX_LORA_RANKS and manifest["max_lora_rank"] >= manifest["rank"]
    hoe = HoEModel.from_bundle(bundle_dir)
    for adapter in manifest["adapters"]:
        config = json.loads((tmp_path / "grid" / adapter["path"] / "adapter_config.json").read_text())
        assert config["r"] == manifest["rank"] and not config["rank_pattern"] and not config["alpha_pattern"]
        assert config["bias"] == "none" and not config["modules_to_save"] and not config["use_dora"]
        base = AutoModelForCausalLM.from_pretrained(hoe.bundle.spec.base_model)
        with torch.no_grad():
            via_peft = PeftModel.from_pretrained(base, str(tmp_path / "grid" / adapter["path"])).eval()
            logits = via_peft(input_ids=IDS).logits
            # the router-free mix: the LoRA experts' gates at this λ, as HoE without routers computes it
            hoe.state.set([{hoe.bundle.pool_names().index(n): g for n, g in adapter["gates"].items()}])
            expected = hoe.model(input_ids=IDS).logits
            hoe.state.clear()
        assert relative_error(logits, expected) < 1e-4, adapter["name"]
    script = (tmp_path / "grid" / "vllm-serve.sh").read_text()
    assert f"--max-lora-rank {manifest['max_lora_rank']}" in script and all(f"{n}=" in script for n in names)


def response_length(prompts, responses):
    return [float(len(r)) for r in responses]


def _build_made_recipe(tiny_chat_model, tmp_path, monkeypatch, extra: str = ""):
    """A two-expert recipe whose experts hoe make-expert makes first (``extra``: more make options)."""
    monkeypatch.setenv("HOE_CACHE", str(tmp_path / "cache"))
    make = "{objective: 'py:%s:response_length', prompt_count: 4, k: 2, max_new_tokens: 4, steps: 2%s}" % (
        __name__,
        extra,
    )
    (tmp_path / "recipe.yaml").write_text(
        f"base: {tiny_chat_model}\nobjectives: [long, short]\nrank: 2\nexperts:\n"
        f"  - name: long\n    anchor: [1, 0]\n    make: {make}\n"
        f"  - name: other\n    anchor: [0, 1]\n    make: {make.replace('steps: 2', 'steps: 3')}\n"
    )
    # the recipe names a py: objective (code), which this test trusts
    return build_bundle(tmp_path / "recipe.yaml", tmp_path / "bundle", progress=False, trust_recipe_code=True)


def test_recipe_can_make_its_experts(tiny_chat_model, tmp_path, monkeypatch):
    bundle = _build_made_recipe(tiny_chat_model, tmp_path, monkeypatch)
    assert [e.source["kind"] for e in bundle.experts] == ["make", "make"]
    assert len(list((tmp_path / "cache" / "experts").iterdir())) == 2
    HoEModel.from_bundle(tmp_path / "bundle")(input_ids=IDS, preference=[0.5, 0.5])


def test_lora_expert_takes_the_anchor_its_folder_records(bundle_dir, tiny_chat_model, tmp_path):
    # the bundle's experts carry hoe_expert.json: a new recipe can use them without anchors
    experts = bundle_dir / "experts"
    (tmp_path / "recipe.yaml").write_text(
        f"base: {tiny_chat_model}\nobjectives: [helpful, harmless]\nexperts:\n"
        f"  - {{name: a, lora: {experts / 'helpful'}}}\n  - {{name: b, lora: {experts / 'harmless'}}}\n"
        f"  - {{name: c, lora: {experts / 'balanced'}}}\n"
    )
    bundle = build_bundle(tmp_path / "recipe.yaml", tmp_path / "b", progress=False)
    assert [e.anchor for e in bundle.experts] == [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
    (tmp_path / "bad.yaml").write_text(
        f"base: {tiny_chat_model}\nobjectives: [helpful]\nexperts:\n  - {{name: b, lora: {experts / 'harmless'}}}\n"
    )
    with pytest.raises(HoEError, match="records weights objective 'harmless' that the recipe lacks"):
        build_bundle(tmp_path / "bad.yaml", tmp_path / "b2", progress=False)


def test_a_made_lora_expert_joins_the_bundle_as_is(tiny_chat_model, tmp_path, monkeypatch):
    """make: {lora_rank: R} trains a LoRA, and the bundle takes that adapter without task-SVD."""
    from hoe.experts.lora import read_lora

    bundle = _build_made_recipe(tiny_chat_model, tmp_path, monkeypatch, extra=", lora_rank: 3")
    assert [e.source["rank"] for e in bundle.experts] == [3, 3]
    assert {m.rank for m in read_lora(tmp_path / "bundle" / "experts" / "long").modules.values()} == {3}
    HoEModel.from_bundle(tmp_path / "bundle")(input_ids=IDS, preference=[0.5, 0.5])


def test_export_rank_recompresses_and_reports_the_error(bundle_dir, tmp_path):
    """The folded adapter's rank is the sum of the active experts' ranks; --rank brings it under a
    server's limit, and the error it records is the one measured on the written adapters."""
    from hoe.experts.lora import read_lora

    exact = export_preference(bundle_dir, [0.8, 0.2], tmp_path / "exact")
    ranks = [
        max(m.rank for m in read_lora(bundle_expert_folder(bundle_dir, n)).modules.values()) for n in exact["gates"]
    ]
    assert exact["rank"] == sum(ranks) and "recompression" not in exact
    small = export_preference(bundle_dir, [0.8, 0.2], tmp_path / "small", rank=ranks[0] - 1)
    assert small["rank"] == ranks[0] - 1
    assert json.loads((tmp_path / "small" / "adapter_config.json").read_text())["r"] == ranks[0] - 1
    full, cut = read_lora(tmp_path / "exact").modules, read_lora(tmp_path / "small").modules
    lost = sum(float((full[m].delta() - cut[m].delta()).double().pow(2).sum()) for m in full)
    total = sum(float(full[m].delta().double().pow(2).sum()) for m in full)
    assert 0 < small["recompression"]["relative_error"] == pytest.approx((lost / total) ** 0.5, rel=1e-3)
    for name, error in small["recompression"]["recompressed_modules"].items():
        measured = float((full[name].delta() - cut[name].delta()).norm() / full[name].delta().norm())
        assert error == pytest.approx(measured, rel=1e-3, abs=1e-6)
    same = export_preference(bundle_dir, [0.8, 0.2], tmp_path / "same", rank=exact["rank"])
    assert same["recompression"]["relative_error"] == 0 and same["recompression"]["recompressed_modules"] == {}
    with pytest.raises(HoEError, match=r"rank \(--rank\) must be positive"):
        export_preference(bundle_dir, [0.8, 0.2], tmp_path / "x", rank=0)
    with pytest.raises(HoEError, match="a merged model"):
        export_preference(bundle_dir, [0.8, 0.2], tmp_path / "x", rank=4, merged=True)
    assert not (tmp_path / "x").exists()


def bundle_expert_folder(bundle_dir, name):
    return load_bundle(bundle_dir).expert_path(next(e for e in load_bundle(bundle_dir).experts if e.name == name))


def test_the_bundle_finds_and_plans_by_anchor(bundle_dir):
    """Lookups by anchor use one tolerance; a router is planned over the N nearest experts with the
    static weights that reproduce its anchor, and refused where it cannot serve its preference."""
    from hoe.model.bundle import ANCHOR_TOLERANCE

    bundle = load_bundle(bundle_dir)
    assert bundle.expert_at([0.5, 0.5]).name == "balanced"
    assert bundle.expert_at([0.5 + ANCHOR_TOLERANCE / 2, 0.5 - ANCHOR_TOLERANCE / 2]).name == "balanced"
    assert bundle.expert_at([0.5 + 1e-6, 0.5 - 1e-6]) is None
    assert bundle.router_index_at([0.25, 0.75]) == 0 and bundle.router_index_at([0.3, 0.7]) is None
    assert bundle.single_expert("harmless").name == "harmless"
    planned = bundle.plan_router([0.3, 0.7])
    assert planned.name == "router-0.3-0.7" and sorted(planned.covers) == ["balanced", "harmless"]
    weights = dict(zip(planned.covers, planned.training["initial_weights"]))
    assert weights["balanced"] == pytest.approx(0.6) and weights["harmless"] == pytest.approx(0.4)  # 0.6·½ = 0.3
    with pytest.raises(HoEError, match="routers.9: anchor \\[0.5, 0.5\\] is the anchor of expert 'balanced'"):
        bundle.plan_router([0.5, 0.5], where="routers.9")
    with pytest.raises(HoEError, match="covers: unknown expert 'kind'"):
        bundle.plan_router([0.3, 0.7], covers=["helpful", "kind"])
    with pytest.raises(HoEError, match="cannot reach it"):
        bundle.plan_router([0.3, 0.7], covers=["helpful", "balanced"])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s["experts"][0].update(path="../elsewhere"), "path '../elsewhere' leads outside the bundle"),
        (lambda s: s["experts"][0].update(path="/etc"), "path '/etc' leads outside the bundle"),
        (lambda s: s["routers"][0].update(path="../../victim.safetensors"), "leads outside the bundle"),
        (lambda s: s["experts"][0].update(name="../x"), "experts.0.name: String should match pattern"),
        (lambda s: s["routers"][0].update(name="helpful"), "two experts or routers with the same name"),
    ],
)
def test_a_hostile_hoe_json_is_refused(bundle_dir, tmp_path, edit, message):
    """A bundle's names are identifiers and its paths stay inside it; anything else is one line."""
    bundle = tmp_path / "b"
    shutil.copytree(bundle_dir, bundle)
    (tmp_path / "elsewhere").mkdir()
    shutil.copytree(bundle / "experts" / "helpful", tmp_path / "elsewhere", dirs_exist_ok=True)
    spec = json.loads((bundle / "hoe.json").read_text())
    edit(spec)
    (bundle / "hoe.json").write_text(json.dumps(spec))
    with pytest.raises(HoEError, match=message):
        load_bundle(bundle)


def test_code_a_bundle_names_runs_only_when_trusted(bundle_dir, tmp_path, monkeypatch):
    """A py: scorer in hoe.json is code from the bundle: evaluate and train-router refuse it in one
    line, before any model loads, unless --trust-bundle-code; the user's own py: scorers run."""
    from hoe.evaluation import Decoding, EvalSettings, evaluate
    from hoe.pipeline import train_router
    from hoe.rl import load_config

    bundle = tmp_path / "b"
    shutil.copytree(bundle_dir, bundle)
    spec = json.loads((bundle / "hoe.json").read_text())
    spec["scorers"] = {"helpful": "py:os:getcwd", "harmless": "civility"}
    (bundle / "hoe.json").write_text(json.dumps(spec))
    import hoe.checkpoints.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("a model loaded"))
    settings = EvalSettings(bundle=str(bundle), methods=["base"], limit=2, decoding=Decoding(max_new_tokens=2))
    with pytest.raises(
        HoEError, match=r"names code to run as the scorer of 'helpful' \(py:os:getcwd\); pass --trust-bundle"
    ):
        evaluate(settings, tmp_path / "eval", progress=False)
    with pytest.raises(HoEError, match="--trust-bundle-code"):
        train_router(bundle, [0.3, 0.7], load_config(None, steps=1), progress=False)
    assert not (tmp_path / "eval").exists() and not (bundle / "training").exists()
    bundle_obj = load_bundle(bundle)
    bundle_obj.check_code_trusted({"helpful": "py:os:getcwd"}, trusted=True)  # trusted: allowed
    bundle_obj.check_code_trusted({"helpful": "py:mine:fn", "harmless": "civility"}, trusted=False)  # the user's own


def test_build_never_empties_a_folder_that_is_not_its_bundle(recipe_dir, tmp_path):
    """hoe build updates a bundle in place, but a folder of other files, or the recipe's own, is
    refused in one line and left as it was."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(HoEError, match="is a folder that is not a HoE bundle"):
        build_bundle(recipe_dir / "recipe.yaml", precious, progress=False)
    assert [p.name for p in precious.iterdir()] == ["notes.txt"]
    with pytest.raises(HoEError, match="holds the recipe"):
        build_bundle(recipe_dir / "recipe.yaml", recipe_dir, progress=False)
    with pytest.raises(HoEError, match="exists and is not a folder"):
        build_bundle(recipe_dir / "recipe.yaml", precious / "notes.txt", progress=False)


def test_atomic_outputs_get_the_usual_permissions_and_survive_a_race(tmp_path):
    """An output folder is not left private (mkdtemp's 0700); a run that finishes second does not
    leak its temporary folder: without --overwrite it is one line, with it the newer one wins."""
    import os

    from hoe.utils.io import atomic_dir

    mask = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "a").write_text("1")
        assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
        with pytest.raises(HoEError, match="appeared while this run was writing it"):
            with atomic_dir(tmp_path / "raced") as tmp:
                (tmp_path / "raced").mkdir()  # another run finished first
                (tmp_path / "raced" / "theirs").write_text("x")
        assert [p.name for p in (tmp_path / "raced").iterdir()] == ["theirs"]
        with atomic_dir(tmp_path / "raced2", overwrite=True) as tmp:
            (tmp / "mine").write_text("y")
            (tmp_path / "raced2").mkdir()
        assert [p.name for p in (tmp_path / "raced2").iterdir()] == ["mine"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raced", "raced2"]  # nothing leaked
    finally:
        os.umask(mask)


def test_an_output_may_not_overlap_what_the_job_reads(bundle_dir, tmp_path):
    """export --out equal to (or inside) the bundle it reads, even with --overwrite, is one line and
    the bundle is left whole."""
    bundle = tmp_path / "b"
    shutil.copytree(bundle_dir, bundle)
    before = sorted(p.relative_to(bundle) for p in bundle.rglob("*"))
    for out in (bundle, bundle / "experts" / "x", tmp_path):
        with pytest.raises(HoEError, match="overlaps the input"):
            export_preference(bundle, [1, 0], out, overwrite=True)
    assert sorted(p.relative_to(bundle) for p in bundle.rglob("*")) == before
