"""Preference sets: grids, lattices, files, and their errors."""

import json

import numpy as np
import pytest

from hoe.errors import HoEError
from hoe.evaluation.preference_sets import preference_label, preference_set

TWO, THREE = ["a", "b"], ["a", "b", "c"]


def test_grid_and_simplex():
    assert np.allclose(preference_set("grid:3", TWO), [[1, 0], [0.5, 0.5], [0, 1]])
    assert len(preference_set("grid:11", TWO)) == 11
    lattice = preference_set("simplex:0.5", THREE)
    assert len(lattice) == 6 and all(np.isclose(p.sum(), 1) for p in lattice)
    assert len(preference_set("simplex:0.25", THREE)) == 15


def test_files(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps([[0.3, 0.7], {"a": 1}]))
    assert np.allclose(preference_set(str(tmp_path / "p.json"), TWO), [[0.3, 0.7], [1, 0]])
    (tmp_path / "p.txt").write_text("# comment\na=0.2,b=0.8\n1,1\n[0, 2]\n")
    assert np.allclose(preference_set(str(tmp_path / "p.txt"), TWO), [[0.2, 0.8], [0.5, 0.5], [0, 1]])
    assert preference_label(np.array([0.25, 0.75])) == "0.25-0.75"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("grid:1", "at least 2 points"),
        ("simplex:0.3", "must divide 1"),
        ("grid:x", "expected grid:K"),
        ("nope.txt", "preference file not found"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(HoEError, match=message):
        preference_set(spec, TWO)


def test_bad_files(tmp_path):
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(HoEError, match="is empty"):
        preference_set(str(tmp_path / "empty.txt"), TWO)
    (tmp_path / "long.txt").write_text("0.2,0.3,0.5\n")
    with pytest.raises(HoEError, match="has 3 values but the bundle has 2"):
        preference_set(str(tmp_path / "long.txt"), TWO)
    (tmp_path / "neg.txt").write_text("-1,2\n")
    with pytest.raises(HoEError, match="non-negative"):
        preference_set(str(tmp_path / "neg.txt"), TWO)
    (tmp_path / "bad.json").write_text("[[0.5, 0.5]")
    with pytest.raises(HoEError, match="not valid JSON"):
        preference_set(str(tmp_path / "bad.json"), TWO)


def test_anchors_and_united_sets(tmp_path):
    """'anchors' gives the bundle's anchors; '+' unites sets in the order named, each λ once."""
    anchors = np.array([[1.0, 0.0], [0.0, 1.0], [0.25, 0.75]])
    assert np.allclose(preference_set("anchors", TWO, anchors=anchors), anchors)
    united = preference_set("grid:3+anchors", TWO, anchors=anchors)
    assert np.allclose(united, [[1, 0], [0.5, 0.5], [0, 1], [0.25, 0.75]])  # the corners appear once
    (tmp_path / "p.txt").write_text("0.4,0.6\n")
    assert np.allclose(preference_set(f" grid:2 + {tmp_path / 'p.txt'} ", TWO), [[1, 0], [0, 1], [0.4, 0.6]])
    with pytest.raises(HoEError, match="'anchors' names a bundle's anchors: use it where a bundle is evaluated"):
        preference_set("grid:3+anchors", TWO)
    with pytest.raises(HoEError, match="'grid:1': a grid needs at least 2 points"):
        preference_set("anchors+grid:1", TWO, anchors=anchors)
