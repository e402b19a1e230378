"""HTTP metrics for one component, in a registry owned by its app (no global registry)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True)
class HttpMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    received: Counter
    sent: Counter
    _children: dict[tuple[str, str, int], tuple[Any, Any, Any, Any]] = field(
        default_factory=dict, compare=False
    )

    @classmethod
    def create(cls, component: str, registry: CollectorRegistry) -> HttpMetrics:
        prefix = f"wharf_{component}_http"
        labels = ("route", "method", "status")
        return cls(
            registry=registry,
            requests=Counter(
                f"{prefix}_requests", "HTTP requests served", labels, registry=registry
            ),
            latency=Histogram(
                f"{prefix}_request_duration_seconds",
                "Time from request to last byte sent",
                ("route", "method"),
                buckets=_BUCKETS,
                registry=registry,
            ),
            received=Counter(
                f"{prefix}_received_bytes", "Request body bytes read", ("route",), registry=registry
            ),
            sent=Counter(
                f"{prefix}_sent_bytes", "Response body bytes sent", ("route",), registry=registry
            ),
        )

    def observe(
        self, route: str, method: str, status: int, seconds: float, received: int, sent: int
    ) -> None:
        if method not in _METHODS:
            method = "OTHER"  # a client picks the method: keep the label set bounded
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # labels() costs microseconds: resolve each combination once
            children = self._children[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
                self.received.labels(route),
                self.sent.labels(route),
            )
        requests, latency, received_bytes, sent_bytes = children
        requests.inc()
        latency.observe(seconds)
        if received:
            received_bytes.inc(received)
        if sent:
            sent_bytes.inc(sent)


METRICS = web.AppKey("http_metrics", HttpMetrics)


async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
