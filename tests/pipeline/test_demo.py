"""The demo runs the shipped recipes (under its profiles' overrides); bad profiles get one line."""

import json

import pytest

from hoe.errors import HoEError
from hoe.pipeline.demo import DEMO_SUITES, PROFILES, SUITES, run_demo, suite_recipe, write_suite_recipe
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
    assert recipe.rank == shipped.rank  # the recipe's own rank unless --rank says otherwise
    path = write_suite_recipe(tmp_path, suite, PROFILES[profile], recipe)  # what run_suite builds from
    assert path.read_text().startswith(f"# recipes/{SUITES[suite]}.yaml under the demo's '{profile}' profile")
    assert load_recipe(path)[0] == recipe
    assert {m.objective for m in (e.make for e in recipe.experts)} == set(recipe.objectives)


@pytest.mark.parametrize("suite", list(SUITES))
def test_a_given_rank_is_every_experts_and_merges(suite):
    """``--rank`` rebuilds the whole suite at that rank: an expert or merge whose recipe sets its own rank
    (a measured choice at the recipe's rank) takes the given one too."""
    recipe = suite_recipe(suite, PROFILES["full"], rank=8)
    assert recipe.rank == 8
    assert all(part.rank is None for part in [*recipe.experts, *recipe.merges])


def test_full_profile_runs_the_shipped_recipes_as_they_are():
    """The README's numbers come from the recipes users can build: only the SVD backend is the profile's."""
    for suite in SUITES:
        shipped, _ = load_recipe(shipped_recipe(SUITES[suite]))
        for expert in shipped.experts:
            expert.svd = PROFILES["full"].svd
        assert suite_recipe(suite, PROFILES["full"]) == shipped


def test_two_objective_suite_is_the_conflicting_style_suite():
    """The demo's two objectives are the suite whose experts met the bars of benchmarks/experts: concision by
    distillation against helpfulness by iterated DPO."""
    makes = {e.make.objective: e.make for e in suite_recipe("2-objectives", PROFILES["full"]).experts if e.make}
    assert (makes["concision"].method, makes["concision"].instruction) == (
        "distill",
        "Answer in one or two short sentences.",
    )
    assert (makes["helpfulness"].method, makes["helpfulness"].round_steps) == ("dpo", [96, 48, 48])


def test_three_objective_suite_adds_an_elementary_expert_to_the_two_objective_ones():
    """The three-objective suite makes the two-objective suite's experts with the same settings (made once,
    cached for both) and adds readability by distillation from P-Soups' own P1A prompt, learning only
    candidates that stay on topic (the floor that brought its benign relevance within the bar)."""
    full = PROFILES["full"]
    two = {e.name: e.make for e in suite_recipe("2-objectives", full).experts}
    three = {e.name: e.make for e in suite_recipe("3-objectives", full).experts}
    assert {name: three[name] for name in two} == two
    elementary = three["elementary"]
    assert (elementary.objective, elementary.method) == ("readability", "distill")
    p1a = "Generate a response that can be easily understood by an elementary school student."
    assert elementary.instruction == p1a and elementary.floor == {"relevance": 0.5}


def test_quick_profile_shortens_every_expert():
    """quick: the profile's prompts and steps for every made expert, one DPO round where the recipe iterates."""
    quick = PROFILES["quick"]
    for suite in SUITES:
        makes = [e.make for e in suite_recipe(suite, quick).experts if e.make]
        assert {(m.prompt_count, m.steps, m.round_steps) for m in makes} == {(quick.prompt_count, quick.steps, None)}


def test_profiles_run_known_suites_and_the_two_objective_one():
    """The demo's closing answers come from the two-objective bundle, so every profile builds it; the
    quick one builds only it, with answers long enough (as long as full's) for concision to show."""
    for profile in PROFILES.values():
        assert set(profile.suites) <= set(SUITES) and "2-objectives" in profile.suites
    assert PROFILES["quick"].suites == ("2-objectives",) and PROFILES["full"].suites == DEMO_SUITES
    assert PROFILES["quick"].max_new_tokens == PROFILES["full"].max_new_tokens


def test_rank_overrides_the_recipes():
    assert {suite_recipe(suite, PROFILES["quick"], rank=8).rank for suite in SUITES} == {8}


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
    # a router calibrated by the earlier rule (the head of the prompt list) is trained again
    spec = json.loads((bundle / "hoe.json").read_text())
    del spec["routers"][0]["training"]["calibration"]
    (bundle / "hoe.json").write_text(json.dumps(spec))
    retrained = []
    trained_summary = {"first": {"tchebycheff": 0.0, "kl": 0.0}, "last": {"tchebycheff": 0.0, "kl": 0.0}}
    monkeypatch.setattr("hoe.pipeline.demo.train_router", lambda *a, **k: retrained.append(a) or trained_summary)
    train_routers(bundle, profile, progress=False)
    assert len(retrained) == 1


def test_sample_answers_one_batch_with_word_counts(bundle_dir, capsys):
    """The demo's closing lines: one prompt under three preferences, each with its answer's length in words."""
    from hoe.pipeline.demo import sample_answers

    answers = sample_answers(bundle_dir, ["helpful", "harmless"])
    assert [a["preference"] for a in answers] == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("[")]
    assert len(lines) == 3
    for line, answer in zip(lines, answers):
        assert f"({len(answer['response'].split())} words)" in line
    assert lines[0].strip().startswith("[helpful=1, harmless=0]")


def test_the_closing_lines_quote_hoes_measured_means_at_the_sample_preferences(tmp_path, capsys):
    """One prompt's answers may not show the trade-off, so the demo ends with what the evaluation
    measured at the same three preferences (HoE's points only; a preference not evaluated is skipped)."""
    from hoe.pipeline.demo import measured_points

    def point(method, preference, mean, tokens):
        return {
            "method": method,
            "preference": preference,
            "mean": mean,
            "se": [0.01, 0.2],
            "prompts": 12,
            "tokens_per_response": tokens,
        }

    points = [
        point("soup", [1.0, 0.0], [0.9, 0.1], 10.0),
        point("hoe", [1.0, 0.0], [0.736, 1.404], 25.3),
        point("hoe", [0.0, 1.0], [0.574, 1.917], 48.0),
    ]
    (tmp_path / "results.json").write_text(json.dumps({"points": points}))
    lines = measured_points(tmp_path / "results.json", ["concision", "helpfulness"])
    assert lines == [
        "    [concision=1, helpfulness=0] concision 0.736 ± 0.01, helpfulness 1.4 ± 0.2; 25 tokens per answer",
        "    [concision=0, helpfulness=1] concision 0.574 ± 0.01, helpfulness 1.92 ± 0.2; 48 tokens per answer",
    ]
    assert "measured on the 12 held-out prompts" in capsys.readouterr().out
