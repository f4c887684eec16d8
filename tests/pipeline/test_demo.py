"""The demo runs the shipped recipes (under its profiles' overrides); bad profiles get one line."""

import pytest

from hoe.errors import HoEError
from hoe.pipeline.demo import PROFILES, SUITES, run_demo, suite_recipe, write_suite_recipe
from hoe.pipeline.recipe import load_recipe
from hoe.recipes import shipped_recipe


@pytest.mark.parametrize("suite", list(SUITES))
@pytest.mark.parametrize("profile", list(PROFILES))
def test_suite_recipes_validate(tmp_path, suite, profile):
    """Each suite is a shipped recipe under the profile's overrides, and round-trips through YAML."""
    recipe = suite_recipe(suite, PROFILES[profile])
    shipped, _ = load_recipe(shipped_recipe(SUITES[suite]))
    assert recipe.objectives == shipped.objectives and [e.name for e in recipe.experts] == [
        e.name for e in shipped.experts
    ]
    assert {e.make.prompt_count for e in recipe.experts} == {PROFILES[profile].prompt_count}
    path = write_suite_recipe(tmp_path, suite, PROFILES[profile])  # what run_suite builds from
    assert path.read_text().startswith(f"# recipes/{SUITES[suite]}.yaml under the demo's '{profile}' profile")
    assert load_recipe(path)[0] == recipe
    makes = [e.make for e in recipe.experts]
    assert {m.objective for m in makes} == set(recipe.objectives)
    # the RAFT experts share one candidate set (same prompts and sampling); concision is distilled,
    # sampled on the same prompts with the instruction before them
    assert len({(m.prompts, m.prompt_count, m.k, m.max_new_tokens) for m in makes}) == 1
    methods = {m.objective: (m.method, m.instruction) for m in makes}
    assert methods.pop("concision") == ("distill", "Answer in one or two short sentences.")
    assert set(methods.values()) == {("raft", None)}


def test_unknown_profile(tmp_path):
    with pytest.raises(HoEError, match="unknown profile 'huge'"):
        run_demo(tmp_path, profile="huge")


@pytest.mark.parametrize("profile", list(PROFILES))
def test_router_settings_validate(profile):
    from hoe.pipeline.demo import router_config

    config = router_config(PROFILES[profile])
    assert config.scalarisation == "tchebycheff-omd" and config.steps == PROFILES[profile].router_steps


def test_demo_trains_each_router_once(bundle_dir, tmp_path, monkeypatch):
    """Routers are trained at their anchors; a rerun with the same settings reuses them."""
    import json
    import shutil

    from hoe.pipeline.demo import Profile, train_routers

    bundle = tmp_path / "bundle"
    shutil.copytree(bundle_dir, bundle)
    spec = json.loads((bundle / "hoe.json").read_text())
    spec["scorers"] = {"helpful": "concision", "harmless": "civility"}
    (bundle / "hoe.json").write_text(json.dumps(spec))
    profile = Profile(
        prompt_count=4,
        steps=1,
        eval_prompts=2,
        max_new_tokens=4,
        preferences_2="grid:3",
        preferences_3="simplex:0.5",
        max_prompt_tokens=16,
        router_steps=1,
        router_batch=2,
        router_tokens=4,
        router_calibration=2,
    )
    first = train_routers(bundle, profile, progress=False)
    assert [r["steps"] for r in first] == [1] and first[0]["train_seconds"] is not None
    assert json.loads((bundle / "hoe.json").read_text())["routers"][0]["trained"]
    monkeypatch.setattr("hoe.pipeline.demo.train_router", lambda *a, **k: pytest.fail("trained twice"))
    again = train_routers(bundle, profile, progress=False)
    assert again[0]["train_seconds"] is None and again[0]["last_tchebycheff"] == first[0]["last_tchebycheff"]
