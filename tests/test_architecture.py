"""The package's layout holds: every package sits in the import-layer contract that `make test`
checks with lint-imports, and the levels import each other at module top (a function-local
`from hoe…` import hid the old upward imports; only the CLI defers, for its start-up time)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "hoe"
DEFERRING = {"cli.py"}  # imports a command's modules when it runs: `hoe --help` answers in 0.6 s, not 4-7 s


def contract_layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return [name.strip() for layer in layers for name in layer.split("|")]


def test_every_package_and_module_is_in_a_layer():
    named = set(contract_layers())
    children = {f"hoe.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    children |= {f"hoe.{p.stem}" for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    assert children == named


def local_hoe_imports(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    for block in tree.body:  # `if TYPE_CHECKING:` imports are for type checkers, at module level too
        if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING":
            top |= {id(node) for node in block.body}
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "hoe" and id(node) not in top
    ]


def test_hoe_imports_are_at_module_top():
    found = {
        str(p.relative_to(PACKAGE)): lines
        for p in PACKAGE.rglob("*.py")
        if p.name not in DEFERRING and (lines := local_hoe_imports(p))
    }
    assert found == {}


def test_the_layer_contract_holds():
    linter = Path(sys.executable).parent / "lint-imports"
    if not linter.exists():
        pytest.skip("import-linter is not installed (pip install 'hoe[test]')")
    result = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_the_facade_names_what_it_exports_and_stays_light():
    """`from hoe import …` reaches every public name, and importing hoe alone loads no torch."""
    import hoe

    for name in hoe.__all__:
        assert getattr(hoe, name) is not None
    code = "import sys, hoe; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_cli_starts_without_torch():
    """`hoe --help` reads every command's settings model; none of them may pull torch in (it cost ~2 s
    before hoe.rewards became lazy and the dtype names moved out of hoe.checkpoints)."""
    code = "import sys, hoe.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    import hoe.rewards

    assert hoe.rewards.get_scorer("concision").score(["q"], ["a b"]) == [1 / (1 + 2 / 50)]  # loaded on first use
    assert "concision" in hoe.rewards.NAMED_SCORERS
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hoe.rewards.nope  # noqa: B018


def test_the_facade_lists_each_export_once():
    import hoe

    assert sorted(hoe.__all__) == sorted(["HoEError", "__version__", *hoe._EXPORTS])
