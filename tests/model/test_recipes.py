"""The recipes shipped in recipes/ are valid (schema, anchors, objective names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hoe.errors import HoEError
from hoe.model.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipes_validate(path):
    recipe, _ = load_recipe(path)
    assert len(recipe.experts) >= len(recipe.objectives)


def test_make_entries_name_a_known_objective(tmp_path):
    (tmp_path / "r.yaml").write_text(
        "base: smollm2-135m-instruct\nobjectives: [a, b]\nexperts:\n"
        "  - {name: x, anchor: [1, 0], make: {objective: wit}}\n  - {name: y, anchor: [0, 1], make: {objective: civility}}\n"
    )
    with pytest.raises(HoEError, match=r"experts\.0\.make\.objective: unknown objective 'wit'"):
        load_recipe(tmp_path / "r.yaml")
