"""The ``system`` marker: every test here carries it and runs only when selected (``pytest -m system``)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker."""
    config.addinivalue_line("markers", "system: reliability tier (minutes; run with `pytest -m system tests/system`)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark this folder's tests ``system`` and skip them unless the marker expression selects them."""
    selected = "system" in (config.getoption("markexpr") or "")
    for item in items:
        if "tests/system/" in item.nodeid:
            item.add_marker(pytest.mark.system)
            if not selected:
                item.add_marker(pytest.mark.skip(reason="system tier: run with `pytest -m system tests/system`"))
