"""The serving app factory (docs/ARCHITECTURE.md §6): lifespan, error handlers, routers and middleware.

Routes: ``POST /v1/predict``, ``POST /v1/recommend``, ``POST /v1/feedback``, ``GET /v1/model``, ``GET /healthz``,
``GET /readyz``, ``GET /metrics``, ``POST /admin/reload`` (Bearer token), the web pages ``GET /ui/user`` and
``GET /ui/model``, and unless ``serving_api_docs`` is false ``/docs``, ``/redoc`` and ``/openapi.json``. Errors: 422
malformed body, 413 body over ``serving_max_body_bytes``, 401/403 admin auth, 503 + ``Retry-After`` while no model is
bound or the feature store / registry is unreachable, a generic 500 (logged, no trace in the body) for anything else.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI
from feast import FeatureStore

from featurestore.config import feature_store
from graphrec.settings import Settings
from serving.api.routes import admin, feedback, health, model, scores, web
from serving.binding import BindingManager, ModelSource, describe_error
from serving.errors import install_error_handlers
from serving.features import FeatureReader
from serving.metrics import ServingMetrics
from serving.middleware import BodyLimit, Timing
from serving.requestlog import RequestLog, Sink, SqlSink
from serving.service import Service

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    naive: bool = False,
    store: FeatureStore | None = None,
    poll: bool = True,
    request_sink: Sink | None = None,
) -> FastAPI:
    """The serving app for ``settings``: binds ``models:/<registered_model_name>@champion`` (and @challenger) at
    start-up and, with ``poll``, re-checks aliases and watermarks every ``serving_poll_interval_s``. ``store``
    overrides the Feast FeatureStore built from ``settings``; ``naive`` selects the plain baseline scoring path;
    ``request_sink`` overrides the request log's database (``settings.request_log_uri``) while
    ``serving_request_log`` is on."""
    metrics = ServingMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(settings.serving_torch_threads)  # per-request batches are small: threads only contend
        reader = FeatureReader(store if store is not None else feature_store(settings))
        manager = BindingManager(
            settings.registered_model_name,
            ModelSource(settings.mlflow_uri),
            reader,
            settings.serving_challenger_share,
            on_swap=metrics.swapped,
        )
        app.state.service = Service(
            manager, reader, recommend_candidates=settings.serving_recommend_candidates, naive=naive
        )
        metrics.watch_watermarks(app.state.service.watermark_ages)
        if settings.serving_request_log:
            app.state.request_log = RequestLog(
                request_sink if request_sink is not None else SqlSink(settings.request_log_uri),
                metrics,
                capacity=settings.serving_request_log_queue,
                feature_share=settings.serving_request_log_feature_share,
                recent=settings.serving_request_log_recent,
            ).start()
        try:
            manager.refresh()
        except Exception as error:  # noqa: BLE001  start anyway: not ready until the poller binds a model
            log.warning("no model bound at start-up (%s); /readyz stays 503 until one is", describe_error(error))
        if poll:
            manager.start(settings.serving_poll_interval_s)
        try:
            yield
        finally:
            manager.stop()
            if app.state.request_log is not None:
                app.state.request_log.close()

    docs = settings.serving_api_docs  # off: no interactive docs and no schema on the public port (docs/SECURITY.md)
    app = FastAPI(
        title="graphrec serving",
        version="1",
        lifespan=lifespan,
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.state.settings, app.state.metrics, app.state.request_log = settings, metrics, None
    install_error_handlers(app, settings.serving_retry_after_s)
    for group in (scores, feedback, model, health, admin, web):
        app.include_router(group.router)
    app.add_middleware(BodyLimit, limit=settings.serving_max_body_bytes)
    app.add_middleware(Timing, metrics=metrics)
    return app
