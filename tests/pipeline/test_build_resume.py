"""A killed `hoe build` loses only the expert it was making, and two builds of one bundle never
write it at once."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hoe.errors import HoEError
from hoe.pipeline import build

# run in a child process: build, and die by SIGKILL (no cleanup at all) when the merge starts,
# after both extracted experts are finished
KILLED_AT_MERGE = """
import os, signal, sys
from hoe.pipeline import build
build._make_merge = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
build.build_bundle(sys.argv[1], sys.argv[2], progress=False)
"""


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_killed_build_keeps_its_finished_experts(recipe_dir, bundle_dir, tmp_path, monkeypatch):
    recipe, out = recipe_dir / "recipe.yaml", tmp_path / "bundle"
    child = subprocess.run([sys.executable, "-c", KILLED_AT_MERGE, str(recipe), str(out)], capture_output=True)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    staging = tmp_path / ".bundle.partial"
    assert not out.exists() and sorted(p.name for p in (staging / "experts").iterdir()) == ["harmless", "helpful"]

    def no_extraction(*args, **kwargs):
        raise AssertionError("a finished expert was extracted again")

    monkeypatch.setattr(build, "extract_expert", no_extraction)
    build.build_bundle(recipe, out, progress=False)
    assert not staging.exists() and not any(p.name.startswith(".bundle.") for p in tmp_path.iterdir())
    made, reference = _files(out), _files(bundle_dir)
    assert made.keys() == reference.keys()
    different = [name for name in made if made[name] != reference[name] and not name.endswith(".json")]
    assert different == []  # the same weights as an uninterrupted build, byte for byte


def test_a_killed_build_of_another_recipe_entry_is_not_reused(recipe_dir, tmp_path, monkeypatch):
    """A finished expert in the staging folder is kept only when its recipe entry is unchanged."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        (recipe_dir / "recipe.yaml")
        .read_text()
        .replace("ft-helpful", str(recipe_dir / "ft-helpful"))
        .replace("ft-harmless", str(recipe_dir / "ft-harmless"))
    )
    out = tmp_path / "bundle"
    child = subprocess.run([sys.executable, "-c", KILLED_AT_MERGE, str(recipe), str(out)], capture_output=True)
    assert child.returncode == -signal.SIGKILL
    recipe.write_text(recipe.read_text().replace("rank: 3", "rank: 2"))
    extracted = []
    original = build.extract_expert
    monkeypatch.setattr(build, "extract_expert", lambda *a, **k: extracted.append(a[2]) or original(*a, **k))
    bundle = build.build_bundle(recipe, out, progress=False)
    assert len(extracted) == 2 and all(e.source["rank"] == 2 for e in bundle.experts[:2])


def test_two_builds_of_one_bundle_never_write_it_at_once(recipe_dir, tmp_path):
    """The second build gets one line while the first holds the bundle's lock; nothing is lost."""
    from filelock import FileLock

    out = tmp_path / "bundle"
    with FileLock(str(tmp_path / ".bundle.lock")):  # what a running build holds
        child = subprocess.run(
            [sys.executable, "-m", "hoe.cli", "build", "--recipe", str(recipe_dir / "recipe.yaml"), "--out", str(out)],
            capture_output=True,
            text=True,
        )
    assert child.returncode == 2, child.stderr[-2000:]
    assert child.stderr.strip().splitlines()[-1].startswith(f"error: another hoe build is writing '{out}'")
    assert not out.exists() and not (tmp_path / ".bundle.partial").exists()


def test_bad_input_found_during_the_build_leaves_no_staging(recipe_dir, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise HoEError("the adapter does not fit the base")

    monkeypatch.setattr(build, "extract_expert", refuse)
    with pytest.raises(HoEError, match="does not fit"):
        build.build_bundle(recipe_dir / "recipe.yaml", tmp_path / "bundle", progress=False)
    assert not (tmp_path / "bundle").exists() and not (tmp_path / ".bundle.partial").exists()
