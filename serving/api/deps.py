"""Typed dependencies of the routes: the app's service, settings, metrics and request log, and admin authentication.

``create_app`` puts the settings and metrics on ``app.state`` and the lifespan adds the service; routes declare what
they need with the ``...Dep`` aliases. The providers are ``async`` so FastAPI calls them on the event loop rather than
handing each to the thread pool.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request

from graphrec.settings import Settings
from serving.metrics import ServingMetrics
from serving.requestlog import RequestLog
from serving.schemas import ErrorBody
from serving.service import Service

ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}}


async def get_service(request: Request) -> Service:
    """The service the lifespan built (bindings, feature reader)."""
    return request.app.state.service


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


async def get_metrics(request: Request) -> ServingMetrics:
    """The app's own metrics registry."""
    return request.app.state.metrics


async def get_request_log(request: Request) -> RequestLog | None:
    """The app's request log (None: logging is off)."""
    return request.app.state.request_log


ServiceDep = Annotated[Service, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServingMetrics, Depends(get_metrics)]
RequestLogDep = Annotated[RequestLog | None, Depends(get_request_log)]


async def require_admin(settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """Pass when ``Authorization: Bearer <serving_admin_token>`` matches (compared in constant time); 401 without a
    Bearer token, 403 for a wrong one or when no admin token is configured (admin endpoints disabled)."""
    token = settings.serving_admin_token
    if token is None:
        raise HTTPException(403, "admin endpoints are disabled (no admin token configured)")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HTTPException(401, "a Bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    if not secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise HTTPException(403, "invalid admin token")
