"""Error responses of the serving API: every one an ``ErrorBody`` (``{"detail": ...}``), never a stack trace.

A registry or feature-store outage, or no model bound yet, is a 503 with ``Retry-After`` (its cause logged once per
distinct cause and then at most every 30 s with a count, see :class:`OutageLog`); anything unexpected is a
generic 500 whose cause goes to the log only. A malformed request is a 422 naming each problem's location and message,
never the raw input: FastAPI's default handler echoes it and fails to encode NaN, Infinity or a lone surrogate (a 500).
A body that is not UTF-8 is a 422 saying so (FastAPI's own answer is a bare 400 "error parsing the body").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from serving.binding import NotReady, NotServable, RegistryUnavailable
from serving.features import StoreUnavailable
from serving.redact import redact_text
from serving.schemas import ErrorBody

log = logging.getLogger(__name__)

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "No model bound, or the feature store/registry is down."}
}  # the OpenAPI ``responses`` entry of every route that needs a bound model


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An ``ErrorBody`` JSON response: the one shape of every error the app writes itself."""
    return JSONResponse(ErrorBody(detail=detail).model_dump(), status_code=status, headers=headers)


MAX_PROBLEMS = 10  # problems named in one 422 detail; the rest are counted
MAX_TEXT_CHARS = 120  # a location part or a message is clipped to this (field names come from the client)


def _safe(text: object) -> str:
    """``text`` as clipped, encodable text: lone surrogates and other unencodable code points escaped."""
    line = " ".join(str(text).split()).encode("utf-8", "backslashreplace").decode("utf-8")
    return line if len(line) <= MAX_TEXT_CHARS else f"{line[: MAX_TEXT_CHARS - 3]}..."


def validation_detail(errors: Sequence[Any]) -> str:
    """One line naming where each problem is and what is wrong (``body.user_id: Input should be ...``), no input."""
    problems = []
    for error in errors[:MAX_PROBLEMS]:
        where = ".".join(_safe(part) for part in error.get("loc", ())) or "request"
        message = _safe(error.get("msg", "invalid value"))
        if error.get("type") == "json_invalid":
            message = f"{message}: {_safe(error.get('ctx', {}).get('error', 'invalid JSON'))}"
        problems.append(f"{where}: {message}")
    more = f"; and {len(errors) - MAX_PROBLEMS} more" if len(errors) > MAX_PROBLEMS else ""
    return f"invalid request: {'; '.join(problems) or 'malformed body'}{more}"


class OutageLog:
    """Logs a 503's cause once per distinct message, then at most once per ``interval_s`` with the count of the
    503s not logged in between: an outage under load is a few lines, not one per request."""

    def __init__(self, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.interval_s, self.clock = interval_s, clock
        self.last_message: str | None = None
        self.last_logged_at = 0.0
        self.suppressed = 0

    def record(self, path: str, error: Exception) -> None:
        """Log this 503 unless the same cause was logged less than ``interval_s`` ago (then count it)."""
        message = redact_text(str(error))
        now = self.clock()
        if message == self.last_message and now - self.last_logged_at < self.interval_s:
            self.suppressed += 1
            return
        repeats = f" ({self.suppressed} more 503s since the last line)" if self.suppressed else ""
        log.warning("503 on %s: %s%s", path, message, repeats)
        self.last_message, self.last_logged_at, self.suppressed = message, now, 0


def install_error_handlers(app: FastAPI, retry_after_s: int) -> None:
    """422 for malformed requests, 503 + ``Retry-After`` for the outages, a logged generic 500 for anything else."""
    retry = {"Retry-After": str(retry_after_s)}

    outages = OutageLog()

    async def unavailable(request: Request, error: Exception) -> JSONResponse:
        outages.record(request.url.path, error)
        return error_response(503, f"temporarily unavailable: {type(error).__name__}", retry)

    async def internal(request: Request, error: Exception) -> JSONResponse:
        log.error("unhandled error on %s", request.url.path, exc_info=error)
        return error_response(500, "internal server error")

    async def invalid(request: Request, error: Exception) -> JSONResponse:
        try:
            detail = validation_detail(error.errors() if isinstance(error, RequestValidationError) else [])
        except Exception:  # noqa: BLE001  an unexpected error shape still gets a 422, never a 500
            detail = "invalid request: malformed body"
        return error_response(422, detail)

    async def http_error(request: Request, error: HTTPException) -> Response:
        cause = error.__cause__  # FastAPI raises its 400 "error parsing the body" from the decoding error
        if isinstance(cause, UnicodeDecodeError):
            return error_response(422, f"invalid request: body: not valid UTF-8 (byte {cause.start})")
        return await http_exception_handler(request, error)

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    for kind in (NotReady, StoreUnavailable, RegistryUnavailable, NotServable):
        app.add_exception_handler(kind, unavailable)
    app.add_exception_handler(Exception, internal)
