"""Prometheus metrics of the serving app, in a registry of its own (several apps can live in one process)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from serving.binding import Binding

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = CONTENT_TYPE_LATEST
FALLBACK_WINDOW = 1000  # scoring responses the fallback ratio is taken over
WatermarkAges = Callable[[], dict[str, float]]


class WatermarkAgeCollector(Collector):
    """``graphrec_feature_watermark_age_seconds{view}``: seconds since each online view's latest materialization,
    read when scraped (the views and their watermarks come from the Feast registry the service already caches)."""

    def __init__(self) -> None:
        self.ages: WatermarkAges | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per materialized view (none before the service has a reader)."""
        family = GaugeMetricFamily(
            "graphrec_feature_watermark_age_seconds",
            "Seconds since the latest materialization of each online feature view.",
            labels=["view"],
        )
        for view, age in sorted((self.ages() if self.ages is not None else {}).items()):
            family.add_metric([view], age)
        yield family


class ServingMetrics:
    """Request latency and outcomes, fallbacks and their recent ratio, which model version each alias serves, the
    request log's queue depth, written and shed rows, and the online views' watermark ages."""

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
        self._recent_fallbacks: deque[bool] = deque(maxlen=FALLBACK_WINDOW)
        Gauge(
            "graphrec_fallback_ratio",
            f"Share of the last {FALLBACK_WINDOW} scoring responses that used a fallback.",
            registry=self.registry,
        ).set_function(self.fallback_ratio)
        self.log_queue = Gauge(
            "graphrec_request_log_queue_depth", "Rows waiting for the request log's writer.", registry=self.registry
        )
        self.log_rows = Counter(
            "graphrec_request_log_rows", "Rows written to the request log, by kind.", ["kind"], registry=self.registry
        )
        self.log_shed = Counter(
            "graphrec_request_log_shed",
            "Rows the request log dropped, by kind and reason (queue_full, write_error); responses are unaffected.",
            ["kind", "reason"],
            registry=self.registry,
        )
        for kind in ("request", "feedback"):  # exported from the start, at 0
            self.log_rows.labels(kind)
            for reason in ("queue_full", "write_error"):
                self.log_shed.labels(kind, reason)
        self.watermarks = WatermarkAgeCollector()
        self.registry.register(self.watermarks)

    def observe(self, route: str, outcome: str, seconds: float) -> None:
        """Record one finished request."""
        self.latency.labels(route).observe(seconds)
        self.requests.labels(route, outcome).inc()

    def fallback(self, reason: str) -> None:
        """Record one fallback response."""
        self.fallbacks.labels(reason).inc()

    def scored(self, fallback: bool) -> None:
        """Record one scoring response for the fallback ratio (a bounded deque: appends are atomic)."""
        self._recent_fallbacks.append(fallback)

    def recent_fallbacks(self) -> tuple[int, int]:
        """(answers that used a fallback, answers) among the last ``FALLBACK_WINDOW`` scoring responses."""
        recent = list(self._recent_fallbacks)
        return sum(recent), len(recent)

    def fallback_ratio(self) -> float:
        """Share of the last ``FALLBACK_WINDOW`` scoring responses that used a fallback (0 before any)."""
        used, answers = self.recent_fallbacks()
        return used / max(answers, 1)

    def watch_queue(self, depth: Callable[[], int]) -> None:
        """Report ``depth()`` as the request log's queue depth when scraped."""
        self.log_queue.set_function(depth)

    def watch_watermarks(self, ages: WatermarkAges) -> None:
        """Report ``ages()`` (view -> seconds since its watermark) when scraped."""
        self.watermarks.ages = ages

    def logged(self, kind: str, rows: int) -> None:
        """Record rows the request log wrote."""
        if rows:
            self.log_rows.labels(kind).inc(rows)

    def shed(self, kind: str, reason: str, rows: int = 1) -> None:
        """Record rows the request log dropped instead of delaying a response."""
        if rows:
            self.log_shed.labels(kind, reason).inc(rows)

    def swapped(self, alias: str, binding: Binding | None) -> None:
        """Record a binding swap (listener of :class:`serving.binding.BindingManager`)."""
        self.model_version.labels(alias).set(int(binding.version) if binding is not None else 0)
        self.model_loads.labels(alias).inc()

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)
