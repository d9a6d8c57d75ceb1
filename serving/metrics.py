"""Prometheus metrics of the serving app, in a registry of its own (several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from serving.binding import Binding

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServingMetrics:
    """Request latency and outcomes, fallbacks, and which model version each alias serves."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "graphrec_request_seconds",
            "Request latency, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "graphrec_requests",
            "Requests by route and outcome (ok, fallback, client_error, unavailable, error).",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "graphrec_fallbacks", "Responses that used a fallback, by reason.", ["reason"], registry=self.registry
        )
        self.model_version = Gauge(
            "graphrec_model_version",
            "Registered version served by each alias (0: none).",
            ["alias"],
            registry=self.registry,
        )
        self.model_loads = Counter(
            "graphrec_model_swaps",
            "Binding swaps (new version or new item features), by alias.",
            ["alias"],
            registry=self.registry,
        )

    def observe(self, route: str, outcome: str, seconds: float) -> None:
        """Record one finished request."""
        self.latency.labels(route).observe(seconds)
        self.requests.labels(route, outcome).inc()

    def fallback(self, reason: str) -> None:
        """Record one fallback response."""
        self.fallbacks.labels(reason).inc()

    def swapped(self, alias: str, binding: Binding | None) -> None:
        """Record a binding swap (listener of :class:`serving.binding.BindingManager`)."""
        self.model_version.labels(alias).set(int(binding.version) if binding is not None else 0)
        self.model_loads.labels(alias).inc()

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)
