"""Credentials out of whatever the service logs or shows: ``scheme://user:password@host`` becomes ``scheme://***@host``.

Tracking and store URIs may carry a user and password (``postgresql://u:p@db/mlflow``, ``http://u:p@mlflow:5000``);
the MLflow client repeats the URI in its error messages, so every error text the service logs or answers with passes
through :func:`redact_text`.
"""

from __future__ import annotations

import re

MASK = "***"
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/'\"<>]+)@")


def redact_text(text: str) -> str:
    """``text`` with the userinfo (``user:password@`` or a bare ``token@``) of every URI in it masked: a URI alone,
    or an error message that quotes URIs anywhere in its text."""
    return _USERINFO.sub(lambda match: f"{match['scheme']}{MASK}@", text)
