"""The app as each of N server processes builds it: ``graphrec serve --workers N`` exports its resolved settings as
``GRAPHREC_*`` variables (graphrec/environment.py) and has uvicorn start N workers, each importing
:func:`app_from_environment` by name. Every worker binds the aliases, caches the item table and polls the registry on
its own, so all of them follow a promotion; the OS spreads connections over them on the one port."""

from __future__ import annotations

from fastapi import FastAPI

from graphrec.settings import Settings
from serving.app import create_app


def app_from_environment() -> FastAPI:
    """The serving app for the settings in this process's environment (uvicorn's ``--factory`` target)."""
    return create_app(Settings())
