"""The recipes shipped in recipes/ are valid (schema, anchors, objective names)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hoe.errors import HoEError
from hoe.pipeline.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipes_validate(path):
    from hoe.rewards.scoring import check_objective_name

    recipe, _ = load_recipe(path)
    assert len(recipe.experts) >= len(recipe.objectives)
    for objective in recipe.objectives:
        check_objective_name(recipe.scorers.get(objective, objective))  # every objective has a scorer


def test_make_entries_name_a_known_objective(tmp_path):
    (tmp_path / "r.yaml").write_text(
        "base: smollm2-135m-instruct\nobjectives: [a, b]\nexperts:\n"
        "  - {name: x, anchor: [1, 0], make: {objective: wit}}\n  - {name: y, anchor: [0, 1], make: {objective: "
        "civility}}\n"
    )
    with pytest.raises(HoEError, match=r"experts\.0\.make\.objective: unknown objective 'wit'"):
        load_recipe(tmp_path / "r.yaml")


def test_make_entries_floors_name_known_objectives_and_run_code_only_if_trusted(tmp_path):
    """A floor is an objective too: an unknown name, or a py: scorer without the trust flag, is one line
    naming the entry, before anything loads."""
    head = "base: smollm2-135m-instruct\nobjectives: [a]\nexperts:\n  - {name: x, anchor: [1], make: "
    (tmp_path / "ok.yaml").write_text(
        head + "{objective: readability, method: distill, instruction: Hi., floor: {relevance: 0.5}}}\n"
    )
    assert load_recipe(tmp_path / "ok.yaml")[0].experts[0].make.floor == {"relevance": 0.5}
    (tmp_path / "r.yaml").write_text(head + "{objective: readability, floor: {wit: 0.5}}}\n")
    with pytest.raises(HoEError, match=r"experts\.0\.make\.floor\.wit: unknown objective 'wit'"):
        load_recipe(tmp_path / "r.yaml")
    (tmp_path / "code.yaml").write_text(head + "{objective: readability, floor: {'py:os:getcwd': 0.5}}}\n")
    with pytest.raises(HoEError, match=r"make\.floor\.py:os:getcwd: 'py:os:getcwd' runs Python code"):
        load_recipe(tmp_path / "code.yaml")
    assert load_recipe(tmp_path / "code.yaml", trust_code=True)[0].experts[0].make.floor == {"py:os:getcwd": 0.5}


def test_make_entries_keep_prompts_follow_the_settings(tmp_path):
    """A recipe's make: takes keep_prompts (the same settings model as the CLI's) and refuses it
    where the job would not use it, naming the entry."""
    head = "base: smollm2-135m-instruct\nobjectives: [a]\nexperts:\n  - {name: x, anchor: [1], make: "
    keep = "keep_prompts: 'packaged:hh-harmless'"
    (tmp_path / "ok.yaml").write_text(head + "{objective: concision, " + keep + "}}\n")
    recipe, _ = load_recipe(tmp_path / "ok.yaml")
    assert recipe.experts[0].make.keep_prompts == "packaged:hh-harmless"
    (tmp_path / "r.yaml").write_text(head + "{objective: concision, method: ppo, " + keep + "}}\n")
    with pytest.raises(HoEError, match=r"experts\.0\.make: .*keep_prompts are learnt by methods 'raft', 'distill' and"):
        load_recipe(tmp_path / "r.yaml")


def test_make_entries_take_round_steps(tmp_path):
    """Iterated DPO in a recipe: round_steps is a list of steps, refused for another method."""
    head = "base: smollm2-135m-instruct\nobjectives: [a]\nexperts:\n  - {name: x, anchor: [1], make: "
    (tmp_path / "ok.yaml").write_text(head + "{objective: concision, method: dpo, round_steps: [8, 4]}}\n")
    recipe, _ = load_recipe(tmp_path / "ok.yaml")
    assert recipe.experts[0].make.round_steps == [8, 4]
    (tmp_path / "r.yaml").write_text(head + "{objective: concision, round_steps: [8, 4]}}\n")
    with pytest.raises(HoEError, match=r"experts\.0\.make: .*round_steps are rounds of iterated DPO"):
        load_recipe(tmp_path / "r.yaml")


def test_an_experts_own_rank_is_the_rank_it_is_extracted_at(recipe_dir, tmp_path):
    """``rank:`` on an expert overrides the recipe's for that expert alone (the helpful-harmless recipe gives its
    harmless expert rank 128 by a measurement); the other experts and the merge keep the recipe's."""
    from hoe.pipeline.build import build_bundle

    text = (recipe_dir / "recipe.yaml").read_text().replace("finetuned: ft-", f"finetuned: {recipe_dir}/ft-")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text.replace("    anchor: [0, 1]\n", "    anchor: [0, 1]\n    rank: 2\n").split("routers:")[0])
    bundle = build_bundle(recipe, tmp_path / "bundle", progress=False)
    ranks = {
        part.name: json.loads((bundle.expert_path(part) / "adapter_config.json").read_text())["r"]
        for part in bundle.experts
    }
    assert ranks == {"helpful": 3, "harmless": 2, "balanced": 3}


def test_recipe_scorers_reach_the_bundle_and_the_evaluation(bundle_dir, tmp_path):
    import json
    import shutil

    from hoe.evaluation import Decoding, EvalSettings, plan

    (tmp_path / "bad.yaml").write_text(
        "base: x\nobjectives: [a]\nscorers: {b: civility}\nexperts:\n  - {name: e, anchor: [1], lora: l}\n"
    )
    with pytest.raises(HoEError, match="scorers: 'b' is not one of the objectives"):
        load_recipe(tmp_path / "bad.yaml")
    spec = json.loads((bundle_dir / "hoe.json").read_text())
    assert "scorers" not in spec  # bundles without a mapping keep their old hoe.json
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    spec["scorers"] = {"helpful": "concision", "harmless": "civility"}
    (copy / "hoe.json").write_text(json.dumps(spec))
    settings = EvalSettings(bundle=str(copy), limit=2, decoding=Decoding(max_new_tokens=8))
    assert plan(settings).scorers == {"helpful": "concision", "harmless": "civility"}


@pytest.mark.parametrize(
    "merge, message",
    [
        ("method: slerp", r"merges\.0: merge settings: method \(--method\): unknown merge method 'slerp'"),
        (
            "method: ties\n    params: {density: 1.5}",
            r"merges\.0: density \(--density\) must lie in \(0, 1\], got 1\.5",
        ),
        ("method: pcb\n    params: {densty: 0.2}", r"merges\.0: merge method 'pcb' takes density, clip; got densty"),
    ],
)
def test_merge_entries_are_checked_when_the_recipe_loads(tmp_path, merge, message):
    """A bad merge method or parameter is one line at load, not after the experts are made."""
    (tmp_path / "recipe.yaml").write_text(
        "base: b\nobjectives: [x, y]\nexperts:\n  - {name: a, anchor: [1, 0], finetuned: a}\n"
        f"  - {{name: c, anchor: [0, 1], finetuned: c}}\nmerges:\n  - name: m\n    experts: [a, c]\n    {merge}\n"
    )
    with pytest.raises(HoEError, match=message):
        load_recipe(tmp_path / "recipe.yaml")


def test_an_unknown_svd_backend_is_refused_at_load(tmp_path):
    (tmp_path / "recipe.yaml").write_text(
        "base: b\nobjectives: [x]\nexperts:\n  - {name: a, anchor: [1], finetuned: a, svd: qr}\n"
    )
    with pytest.raises(HoEError, match=r"experts\.0\.svd: Input should be 'exact' or 'randomized'"):
        load_recipe(tmp_path / "recipe.yaml")


@pytest.mark.parametrize("name", ["../../victim/model", "/tmp/abs", "", ".hidden", "a/b", "x" * 200])
@pytest.mark.parametrize("where", ["expert", "merge", "router"])
def test_names_are_identifiers_never_paths(tmp_path, name, where):
    """A name becomes a file or folder name in the bundle: anything but an identifier is one line
    when the recipe loads, before anything is written."""
    expert = name if where == "expert" else "a"
    merge = name if where == "merge" else "m"
    router = name if where == "router" else "r"
    (tmp_path / "recipe.yaml").write_text(
        "base: b\nobjectives: [x, y]\nexperts:\n"
        f"  - {{name: {json.dumps(expert)}, anchor: [1, 0], finetuned: a}}\n"
        "  - {name: c, anchor: [0, 1], finetuned: c}\n"
        f"merges:\n  - {{name: {json.dumps(merge)}, experts: [{json.dumps(expert)}, c]}}\n"
        f"routers:\n  - {{name: {json.dumps(router)}, anchor: [0.25, 0.75]}}\n"
    )
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(HoEError, match=r"name: String should match pattern"):
        load_recipe(tmp_path / "recipe.yaml")
    assert sorted(tmp_path.rglob("*")) == before


def test_a_recipe_runs_no_code_without_the_trust_flag(tmp_path, monkeypatch):
    """A recipe may come from anyone: a py: objective it names for make: would import a module, so
    `hoe build` refuses it in one line (nothing imported, nothing written) unless --trust-recipe-code."""
    from typer.testing import CliRunner

    from hoe.cli import app

    (tmp_path / "evil_scorer.py").write_text(
        "from pathlib import Path\nPath(__file__).with_name('ran').write_text('x')\n"
        "def fn(p, r):\n    return [0.0] * len(r)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "base: smollm2-135m-instruct\nobjectives: [a]\nexperts:\n"
        "  - {name: x, anchor: [1], make: {objective: 'py:evil_scorer:fn'}}\n"
    )
    result = CliRunner().invoke(app, ["build", "--recipe", str(recipe), "--out", str(tmp_path / "bundle")])
    assert result.exit_code == 2 and result.output.strip() == (
        f"error: {recipe}: experts.0.make.objective: 'py:evil_scorer:fn' runs Python code the recipe names; "
        "pass --trust-recipe-code if you trust it"
    )
    assert not (tmp_path / "ran").exists() and not (tmp_path / "bundle").exists()
    loaded, _ = load_recipe(recipe, trust_code=True)  # trusted: it validates (the module runs only when made)
    assert loaded.experts[0].make.objective == "py:evil_scorer:fn"
    assert not (tmp_path / "ran").exists()


PLANNED = """base: {base}
objectives: [helpful, harmless]
experts:
  - {{name: helpful, anchor: [1, 0], finetuned: {ft}}}
  - {{name: harmless, anchor: {second_anchor}, finetuned: {second}}}
merges:
  - {{name: balanced, experts: [helpful, harmless]}}
routers:
  - {{name: r, anchor: {router_anchor}{covers}}}
"""


@pytest.mark.parametrize(
    "change, message",
    [
        ({"second": "ft-missing"}, r"experts\.1\.finetuned: model not found: '.*ft-missing'"),
        ({"second": "./nothing/here"}, r"experts\.1\.finetuned: model not found"),
        ({"second": "sub"}, r"experts\.1\.finetuned: '.*sub' is not a model"),
        ({"second_anchor": "[1, 0]"}, r"experts 'helpful' and 'harmless' share the anchor"),
        ({"router_anchor": "[0.5, 0.5]"}, r"routers\.0: anchor \[0\.5, 0\.5\] is the anchor of expert 'balanced'"),
        ({"covers": ", covers: [helpful, nobody]"}, r"routers\.0: covers: unknown expert 'nobody'"),
        ({"covers": ", covers: [helpful, balanced]"}, r"routers\.0: .*cannot reach it"),
    ],
)
def test_every_recipe_mistake_is_found_before_any_extraction(
    recipe_dir, tiny_chat_model, tmp_path, monkeypatch, change, message
):
    """A refusal after extracting would cost hours at 7B: the whole plan (inputs, anchors, routers)
    is checked first, and neither an expert nor the output folder is made."""
    from hoe.pipeline import build

    def no_extraction(*args, **kwargs):
        raise AssertionError("an expert was extracted before the recipe was refused")

    monkeypatch.setattr(build, "extract_expert", no_extraction)
    (tmp_path / "sub").mkdir()
    values = {
        "base": tiny_chat_model,
        "ft": recipe_dir / "ft-helpful",
        "second": recipe_dir / "ft-harmless",
        "second_anchor": "[0, 1]",
        "router_anchor": "[0.25, 0.75]",
        "covers": "",
    }
    values.update(change)
    (tmp_path / "r.yaml").write_text(PLANNED.format(**values))
    with pytest.raises(HoEError, match=message):
        build.build_bundle(tmp_path / "r.yaml", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
