"""The demo's recipes are valid for every suite and profile; bad profiles get one line."""

import pytest

from hoe.demo import PROFILES, SUITES, run_demo, suite_recipe
from hoe.errors import HoEError
from hoe.model.recipe import load_recipe


@pytest.mark.parametrize("suite", list(SUITES))
@pytest.mark.parametrize("profile", list(PROFILES))
def test_suite_recipes_validate(tmp_path, suite, profile):
    path = tmp_path / "recipe.yaml"
    path.write_text(suite_recipe(suite, PROFILES[profile]))
    recipe, _ = load_recipe(path)
    assert recipe.objectives == SUITES[suite]["objectives"]
    makes = [e.make for e in recipe.experts]
    assert {m.objective for m in makes} == set(recipe.objectives)
    # every expert of a suite shares one candidate set (same prompts and sampling)
    assert len({(m.prompts, m.prompt_count, m.k, m.max_new_tokens) for m in makes}) == 1


def test_unknown_profile(tmp_path):
    with pytest.raises(HoEError, match="unknown profile 'huge'"):
        run_demo(tmp_path, profile="huge")
