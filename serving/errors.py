"""Error responses of the serving API: every one an ``ErrorBody`` (``{"detail": ...}``), never a stack trace.

A registry or feature-store outage, or no model bound yet, is a 503 with ``Retry-After``; anything unexpected is a
generic 500 whose cause goes to the log only.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from serving.binding import NotReady, NotServable, RegistryUnavailable
from serving.features import StoreUnavailable
from serving.schemas import ErrorBody

log = logging.getLogger(__name__)

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "No model bound, or the feature store/registry is down."}
}  # the OpenAPI ``responses`` entry of every route that needs a bound model


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An ``ErrorBody`` JSON response: the one shape of every error the app writes itself."""
    return JSONResponse(ErrorBody(detail=detail).model_dump(), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI, retry_after_s: int) -> None:
    """503 + ``Retry-After`` for the outage exceptions, a logged generic 500 for any other exception."""
    retry = {"Retry-After": str(retry_after_s)}

    async def unavailable(request: Request, error: Exception) -> JSONResponse:
        log.warning("503 on %s: %s", request.url.path, error)
        return error_response(503, f"temporarily unavailable: {type(error).__name__}", retry)

    async def internal(request: Request, error: Exception) -> JSONResponse:
        log.error("unhandled error on %s", request.url.path, exc_info=error)
        return error_response(500, "internal server error")

    for kind in (NotReady, StoreUnavailable, RegistryUnavailable, NotServable):
        app.add_exception_handler(kind, unavailable)
    app.add_exception_handler(Exception, internal)
