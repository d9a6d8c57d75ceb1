"""The serving API (DESIGN.md §6): FastAPI app factory.

Routes: ``POST /v1/predict``, ``POST /v1/recommend``, ``GET /v1/model``, ``GET /healthz``, ``GET /readyz``,
``GET /metrics``, ``POST /admin/reload`` (Bearer token). Errors: 422 malformed body, 413 body over
``serving_max_body_bytes``, 401/403 admin auth, 503 + ``Retry-After`` while no model is bound or the feature store /
registry is unreachable, a generic 500 (logged, no trace in the body) for anything else.

The hot path: the user row from Feast (one entity row), item rows gathered by index from the binding's cached numpy
table, ``ScorerModel.score_arrays``; no pandas. ``naive=True`` swaps in the plain path (every pair read from Feast into
a pandas frame, ``pyfunc.predict``) behind the same HTTP stack, as the benchmark baseline.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import torch
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from feast import FeatureStore

from graphrec.settings import Settings
from serving.binding import Binding, BindingManager, ModelSource, NotReady, NotServable, RegistryUnavailable
from serving.fallback import ITEMS_WITHOUT_FEATURES, UNKNOWN_USER, most_popular, popularity_scores
from serving.features import FeatureReader, StoreUnavailable
from serving.metrics import CONTENT_TYPE, ServingMetrics
from serving.schemas import (
    ErrorBody,
    ModelInfo,
    ModelsResponse,
    PredictRequest,
    RecommendRequest,
    ScoresResponse,
    Status,
)

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OUTCOME_KEY = "graphrec.outcome"
VARIANT_HEADER = "X-Graphrec-Variant"
Variant = Literal["champion", "challenger"]
VariantHeader = Annotated[Variant | None, Header(alias=VARIANT_HEADER)]  # module level: FastAPI resolves it by name


class BodyTooLarge(HTTPException):
    """The streamed request body exceeded the configured limit (FastAPI re-raises HTTPExceptions as they are)."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body over {limit} bytes")


def _json_response(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(detail=detail).model_dump(), status_code=status, headers=headers)


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
            await _json_response(413, f"request body over {self.limit} bytes")(scope, receive, send)
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
        """Time the request and classify its outcome from the status (and the fallback mark handlers leave)."""
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


@dataclass(frozen=True)
class Ranked:
    """A scores response before encoding: items best first (model-scored before fallback-scored)."""

    binding: Binding
    item_ids: np.ndarray
    scores: np.ndarray
    by_model: np.ndarray
    fallback: str | None
    items_without_features: list[int]


def ranked(binding: Binding, item_ids: np.ndarray, scores: np.ndarray, by_model: np.ndarray, fallback: str | None,
           missing: list[int] | None = None) -> Ranked:
    """Sort by (model-scored first, descending score); fails on non-finite scores (a model bug: a 500)."""
    if not np.isfinite(scores).all():
        raise ValueError(f"{binding.name} v{binding.version} produced non-finite scores")
    order = np.lexsort((-scores, ~by_model))
    return Ranked(binding, item_ids[order], scores[order], by_model[order], fallback, missing or [])


def encode(result: Ranked) -> bytes:
    """The ScoresResponse JSON of ``result``, written directly: the scores list dominates, and json.dumps of 1,000
    dicts costs about twice as much. Scores are float32, so 9 significant digits round-trip them exactly."""
    ids, scores, sources = result.item_ids.tolist(), result.scores.tolist(), result.by_model.tolist()
    items = ",".join(
        [
            f'{{"item_id":{i},"score":{s:.9g},"rank":{r},"source":"{"model" if m else "popularity"}"}}'
            for r, (i, s, m) in enumerate(zip(ids, scores, sources), start=1)
        ]
    )
    head = json.dumps(
        {"model": _model_ref(result.binding), "fallback": result.fallback,
         "items_without_features": result.items_without_features},
        separators=(",", ":"),
    )
    return f'{head[:-1]},"scores":[{items}]}}'.encode()


def _model_ref(binding: Binding) -> dict[str, str]:
    return {"name": binding.name, "version": binding.version, "alias": binding.alias}


def _model_info(binding: Binding) -> ModelInfo:
    return ModelInfo(
        name=binding.name, version=binding.version, alias=binding.alias, feature_service=binding.feature_service,
        user_view=binding.user_view, item_view=binding.item_view, loaded_at=binding.loaded_at,
        watermark=binding.item_watermark, items_cached=len(binding.items),
        fallback_stats_watermark=binding.stats_watermark,
    )


class Service:
    """What the routes call: the binding manager, the feature reader and the request logic."""

    def __init__(self, settings: Settings, manager: BindingManager, reader: FeatureReader, metrics: ServingMetrics,
                 naive: bool):
        self.settings, self.manager, self.reader, self.metrics, self.naive = settings, manager, reader, metrics, naive

    def _scores(self, binding: Binding, user_id: int, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, str | None]:
        """(scores, scored-by-model mask, fallback reason) of the candidates."""
        user_row = self.reader.user_row(binding.user_view, binding.model.user_features, user_id)
        if user_row is None:
            return popularity_scores(binding.stats, item_ids), np.zeros(len(item_ids), dtype=bool), UNKNOWN_USER
        index, found = binding.items.locate(item_ids)
        scores = np.empty(len(item_ids), dtype=np.float32)
        scores[found] = binding.score(user_row, index[found])
        if found.all():
            return scores, found, None
        scores[~found] = popularity_scores(binding.stats, item_ids[~found])
        return scores, found, ITEMS_WITHOUT_FEATURES

    def _naive_scores(self, binding: Binding, user_id: int, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, str | None]:
        """Same contract as :meth:`_scores`, the plain way: every pair read from Feast into pandas, pyfunc.predict."""
        model = binding.model
        frame = self.reader.naive_frame(binding.user_view, model.user_features, binding.item_view, model.item_features,
                                        user_id, item_ids.tolist())
        complete = frame.notna().all(axis=1).to_numpy()
        if not complete.any():
            return popularity_scores(binding.stats, item_ids), complete, UNKNOWN_USER
        scores = popularity_scores(binding.stats, item_ids)
        scores[complete] = np.asarray(binding.pyfunc.predict(frame[complete]), dtype=np.float32)
        return scores, complete, None if complete.all() else ITEMS_WITHOUT_FEATURES

    def predict(self, body: PredictRequest, variant: str | None) -> Ranked:
        """The /v1/predict result."""
        binding = self.manager.pick(body.user_id, variant)
        item_ids = np.asarray(body.item_ids, dtype=np.int64)
        score = self._naive_scores if self.naive else self._scores
        scores, by_model, fallback = score(binding, body.user_id, item_ids)
        missing = item_ids[~by_model].tolist() if fallback == ITEMS_WITHOUT_FEATURES else []
        return ranked(binding, item_ids, scores, by_model, fallback, missing)

    def recommend(self, body: RecommendRequest, variant: str | None) -> Ranked:
        """The /v1/recommend result: retrieval by dot product over cached item vectors, then the scorer re-ranks."""
        binding = self.manager.pick(body.user_id, variant)
        user_row = self.reader.user_row(binding.user_view, binding.model.user_features, body.user_id)
        if user_row is None:
            top = most_popular(binding.stats, binding.items.ids, body.k)
            return ranked(binding, top, popularity_scores(binding.stats, top), np.zeros(len(top), dtype=bool), UNKNOWN_USER)
        wanted = max(self.settings.serving_recommend_candidates, body.k)
        candidates = binding.retrieve(user_row, wanted)
        if candidates is None:  # no shared vector: the most popular items are the candidates
            candidates, _ = binding.items.locate(most_popular(binding.stats, binding.items.ids, wanted))
        scores = binding.score(user_row, candidates)
        best = np.argsort(-scores, kind="stable")[: body.k]
        return ranked(binding, binding.items.ids[candidates[best]], scores[best], np.ones(len(best), dtype=bool), None)

    def model(self) -> ModelsResponse:
        """The /v1/model body."""
        champion = self.manager.pick(0, "champion")
        challenger = self.manager.bindings.get("challenger")
        return ModelsResponse(
            **_model_info(champion).model_dump(),
            challenger=_model_info(challenger) if challenger is not None else None,
            challenger_share=self.manager.challenger_share,
            last_refresh_error=self.manager.last_error,
        )


def _authorize(settings: Settings, authorization: str | None) -> JSONResponse | None:
    """None when the Bearer token matches; else the 401/403 response."""
    token = settings.serving_admin_token
    if token is None:
        return _json_response(403, "admin endpoints are disabled (no admin token configured)")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return _json_response(401, "a Bearer token is required", {"WWW-Authenticate": "Bearer"})
    if not secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
        return _json_response(403, "invalid admin token")
    return None


def _default_store(settings: Settings) -> FeatureStore:
    from featurestore.config import feature_store

    return feature_store(settings)


def _service_of(request: Request) -> Service:
    return request.app.state.service


def _install_error_handlers(app: FastAPI, settings: Settings) -> None:
    retry = {"Retry-After": str(settings.serving_retry_after_s)}

    async def unavailable(request: Request, error: Exception) -> JSONResponse:
        log.warning("503 on %s: %s", request.url.path, error)
        return _json_response(503, f"temporarily unavailable: {type(error).__name__}", retry)

    async def internal(request: Request, error: Exception) -> JSONResponse:
        log.error("unhandled error on %s", request.url.path, exc_info=error)
        return _json_response(500, "internal server error")

    for kind in (NotReady, StoreUnavailable, RegistryUnavailable, NotServable):
        app.add_exception_handler(kind, unavailable)
    app.add_exception_handler(Exception, internal)


def create_app(settings: Settings, *, naive: bool = False, store: FeatureStore | None = None,
               poll: bool = True) -> FastAPI:
    """The serving app for ``settings``: binds ``models:/<registered_model_name>@champion`` (and @challenger) at
    start-up and, with ``poll``, re-checks aliases and watermarks every ``serving_poll_interval_s``. ``store``
    overrides the Feast FeatureStore built from ``settings``; ``naive`` selects the plain baseline scoring path."""
    metrics = ServingMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(settings.serving_torch_threads)  # per-request batches are small: threads only contend
        reader = FeatureReader(store if store is not None else _default_store(settings))
        manager = BindingManager(settings.registered_model_name, ModelSource(settings.mlflow_uri), reader,
                                 settings.serving_challenger_share, on_swap=metrics.swapped)
        app.state.service = Service(settings, manager, reader, metrics, naive)
        try:
            manager.refresh()
        except Exception as error:  # noqa: BLE001  start anyway: not ready until the poller binds a model
            log.warning("no model bound at start-up (%s); /readyz stays 503 until one is", error)
        if poll:
            manager.start(settings.serving_poll_interval_s)
        try:
            yield
        finally:
            manager.stop()

    app = FastAPI(title="graphrec serving", version="1", lifespan=lifespan)
    _install_error_handlers(app, settings)
    errors = {503: {"model": ErrorBody, "description": "No model bound, or the feature store/registry is down."}}

    @app.post("/v1/predict", response_model=ScoresResponse, responses=errors)
    def predict(body: PredictRequest, request: Request, variant: VariantHeader = None) -> Response:
        """Score and rank candidate items for a user."""
        return _scores_response(request, metrics, _service_of(request).predict(body, variant))

    @app.post("/v1/recommend", response_model=ScoresResponse, responses=errors)
    def recommend(body: RecommendRequest, request: Request, variant: VariantHeader = None) -> Response:
        """Top-k items of the catalogue for a user."""
        return _scores_response(request, metrics, _service_of(request).recommend(body, variant))

    @app.get("/v1/model", response_model=ModelsResponse, responses=errors)
    def model(request: Request) -> ModelsResponse:
        """The served versions, their feature views, load time and item-feature watermark."""
        return _service_of(request).model()

    @app.get("/healthz", response_model=Status)
    def healthz() -> Status:
        """The process is alive."""
        return Status(status="alive")

    @app.get("/readyz", response_model=Status, responses={503: {"model": Status}})
    def readyz(request: Request) -> Response:
        """200 once a champion and its features are loaded, else 503."""
        manager = _service_of(request).manager
        if manager.ready:
            return JSONResponse(Status(status="ready").model_dump())
        detail = Status(status="not ready", detail=manager.last_error).model_dump()
        return JSONResponse(detail, status_code=503, headers={"Retry-After": str(settings.serving_retry_after_s)})

    @app.get("/metrics")
    def prometheus() -> Response:
        """Prometheus text exposition."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/admin/reload", response_model=ModelsResponse,
              responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, **errors})
    def reload(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response | ModelsResponse:
        """Re-read aliases and reload every binding now (Bearer token required)."""
        denied = _authorize(settings, authorization)
        if denied is not None:
            return denied
        service = _service_of(request)
        service.manager.refresh(force=True)
        return service.model()

    app.add_middleware(BodyLimit, limit=settings.serving_max_body_bytes)
    app.add_middleware(Timing, metrics=metrics)
    return app


def _scores_response(request: Request, metrics: ServingMetrics, result: Ranked) -> Response:
    """The encoded scores body, marking fallbacks for the metrics."""
    if result.fallback is not None:
        request.scope[OUTCOME_KEY] = "fallback"
        metrics.fallback(result.fallback)
    return Response(encode(result), media_type="application/json")
