"""Settings as ``GRAPHREC_*`` environment variables: how a process hands its resolved settings (command-line options
included) to the processes it starts. uvicorn's worker processes import the app by name and can read only their
environment (``graphrec serve --workers``)."""

from __future__ import annotations

from enum import Enum

from pydantic import SecretStr

from graphrec.settings import Settings

PREFIX = "GRAPHREC_"


def settings_environment(settings: Settings) -> dict[str, str]:
    """Every set field of ``settings`` as ``GRAPHREC_<FIELD>`` text that ``Settings()`` parses back to the same value
    (secrets in clear: the environment is the child's own, as the parent's is)."""
    environment = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, Enum):
            text = str(value.value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        environment[PREFIX + name.upper()] = text
    return environment
