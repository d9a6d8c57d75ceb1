"""The architecture rules that are not import contracts (those are in pyproject.toml, checked by lint-imports):
private names of libraries are touched only in featurestore/internals.py (Feast, redis-py) and
serving/mlflow_internals.py (MLflow), each of which refuses versions it was not written for."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from featurestore.internals import UnsupportedVersion, check_versions
from serving.mlflow_internals import UnsupportedMlflow, check_mlflow_version

REPO_ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_PACKAGES = ("graphrec", "cli", "featurestore", "feature_repo", "training", "registry", "serving", "bench")
INTERNALS = REPO_ROOT / "featurestore" / "internals.py"
MLFLOW_INTERNALS = REPO_ROOT / "serving" / "mlflow_internals.py"
WATCHED_LIBRARIES = ("feast", "redis")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(path: Path) -> list[str]:
    """``file:line what`` for each private name of a watched library imported, and each private attribute read on
    anything but ``self`` or ``cls``, in one module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in WATCHED_LIBRARIES:
            found += [f"{path}:{node.lineno} imports {alias.name}" for alias in node.names if _private(alias.name)]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner not in ("self", "cls"):
                found.append(f"{path}:{node.lineno} reads .{node.attr}")
    return found


def production_modules() -> list[Path]:
    """Every Python module of the production packages (and bench), the two internals modules excluded."""
    modules = [p for package in PRODUCTION_PACKAGES for p in sorted((REPO_ROOT / package).rglob("*.py"))]
    return [p for p in modules if p not in (INTERNALS, MLFLOW_INTERNALS)]


def test_no_module_but_internals_touches_private_names() -> None:
    modules = production_modules()
    assert len(modules) > 50, "the scan found too few modules: is the tree where this test expects it?"
    assert private_uses(INTERNALS), "the scanner must see the private names internals.py uses"
    assert private_uses(MLFLOW_INTERNALS), "the scanner must see the private names mlflow_internals.py uses"
    offenders = [use for module in modules for use in private_uses(module)]
    assert offenders == [], "private library names outside the internals modules:\n" + "\n".join(offenders)


def test_scanner_flags_a_private_import_and_attribute(tmp_path: Path) -> None:
    module = tmp_path / "offender.py"
    module.write_text("from feast.infra.online_stores.helpers import _mmh3\nx = store._get_provider()\nself._ok = 1\n")
    assert [use.split(" ", 1)[1] for use in private_uses(module)] == ["imports _mmh3", "reads ._get_provider"]


def test_internals_refuse_an_unknown_feast_or_redis() -> None:
    check_versions({"feast": "0.67.0", "redis": "7.4.1"})
    with pytest.raises(UnsupportedVersion, match=r"found feast 0\.68\.0"):
        check_versions({"feast": "0.68.0", "redis": "7.4.1"})
    with pytest.raises(UnsupportedVersion, match=r"found redis 8\.0\.0"):
        check_versions({"feast": "0.67.0", "redis": "8.0.0"})


def test_mlflow_internals_refuse_an_unknown_mlflow() -> None:
    check_mlflow_version("3.17.2")
    with pytest.raises(UnsupportedMlflow, match=r"found mlflow 3\.18\.0"):
        check_mlflow_version("3.18.0")
