"""ASGI middleware of the serving app: the request body limit and per-route timing with outcomes.

Both are plain ASGI (no ``BaseHTTPMiddleware``): the body limit must count a streamed body as it arrives, and the
timing must see the final status of every response, including the ones error handlers write.
"""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import error_response
from serving.metrics import ServingMetrics

OUTCOME_KEY = "graphrec.outcome"  # scope key a handler sets to report an outcome the status cannot show ("fallback")


class BodyTooLarge(HTTPException):
    """The streamed request body exceeded the configured limit (FastAPI re-raises HTTPExceptions as they are)."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body over {limit} bytes")


class BodyLimit:
    """ASGI middleware: 413 for bodies over ``limit`` bytes, by Content-Length or by counting a streamed body."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Reject or pass the request on with a counting ``receive``."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await error_response(413, f"request body over {self.limit} bytes")(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counting_receive, send)


class Timing:
    """ASGI middleware: latency and outcome of every HTTP request, by route template."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request and classify its outcome from the status (and the mark handlers leave at OUTCOME_KEY)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, status_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            if status >= 500:
                outcome = "unavailable" if status == 503 else "error"
            elif status >= 400:
                outcome = "client_error"
            else:
                outcome = scope.get(OUTCOME_KEY, "ok")
            self.metrics.observe(path, outcome, time.perf_counter() - start)
