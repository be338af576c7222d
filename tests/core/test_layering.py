"""DESIGN.md §2's layering is a contract CI checks: features import only `api.core` and
`api.webhooks`, and only `api.app` and `api.cron` reach across features."""

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_import_contract_holds() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_package_of_the_edge_is_in_the_contract() -> None:
    """A new feature package outside the contract would be free to import any other."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    layers = config["tool"]["importlinter"]["contracts"][0]["layers"]
    named = {module.strip() for layer in layers for module in layer.split("|")}
    packages = {f"api.{path.parent.name}" for path in (REPO / "api").glob("*/__init__.py")} | {
        f"api.{path.stem}" for path in (REPO / "api").glob("*.py") if path.stem != "__init__"
    }
    assert packages - named == set()
