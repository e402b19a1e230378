"""What an edge counts: hits, misses, coalesced waiters, bytes by source, upstream latency,
cache size, evictions, failed fills by reason, stale serves."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edge.store import BlobStore


@dataclass(frozen=True)
class EdgeMetrics:
    hits: Counter
    misses: Counter
    coalesced: Counter
    served: Counter
    upstream_latency: Histogram
    fill_failures: Counter
    stale: Counter
    fills_in_flight: Gauge
    filled: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry, store: BlobStore) -> EdgeMetrics:
        cache_bytes = Gauge("wharf_edge_cache_bytes", "Bytes of blobs on disk", registry=registry)
        cache_bytes.set_function(lambda: store.total)
        entries = Gauge("wharf_edge_cache_entries", "Blobs on disk", registry=registry)
        entries.set_function(lambda: len(store))
        evictions = Counter(
            "wharf_edge_cache_evictions",
            "Blobs evicted to stay under the cache size",
            registry=registry,
        )
        evictions.inc(0)
        store.on_evict = evictions.inc
        return cls(
            hits=Counter(
                "wharf_edge_cache_hits", "Requests answered from disk", ("kind",), registry=registry
            ),
            misses=Counter(
                "wharf_edge_cache_misses",
                "Requests that needed the upstream",
                ("kind",),
                registry=registry,
            ),
            coalesced=Counter(
                "wharf_edge_fill_coalesced_waiters",
                "Requests that joined a fill another request started",
                registry=registry,
            ),
            served=Counter(
                "wharf_edge_served_bytes",
                "Blob bytes sent to clients, by source",
                ("source",),
                registry=registry,
            ),
            upstream_latency=Histogram(
                "wharf_edge_upstream_latency_seconds",
                "Time until the upstream answered (headers)",
                ("upstream", "kind"),
                registry=registry,
            ),
            fill_failures=Counter(
                "wharf_edge_fill_failures",
                "Fills that failed, by reason",
                ("reason",),
                registry=registry,
            ),
            stale=Counter(
                "wharf_edge_stale_serves",
                "Tags served past their TTL because the upstream was unreachable",
                registry=registry,
            ),
            fills_in_flight=Gauge(
                "wharf_edge_fills_in_flight", "Upstream fills running", registry=registry
            ),
            filled=Counter(
                "wharf_edge_filled_bytes",
                "Blob bytes fetched into the cache, by source (peer, upstream)",
                ("source",),
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class SwarmMetrics:
    """What the edge's BitTorrent swarm counts (``wharf_edge_swarm_*``)."""

    received: Counter
    fills: Counter
    web_seeds: Counter
    sent: Counter
    banned: Counter
    peers: Gauge
    torrents: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SwarmMetrics:
        metrics = cls(
            received=Counter(
                "wharf_edge_swarm_received_bytes",
                "Blob bytes fetched through the swarm, by source (peers, web_seed: the origin)",
                ("source",),
                registry=registry,
            ),
            fills=Counter(
                "wharf_edge_swarm_fills",
                "Fills through the swarm, by result (complete; fallback: finished over HTTP)",
                ("result",),
                registry=registry,
            ),
            web_seeds=Counter(
                "wharf_edge_swarm_web_seeds_added",
                "Times the origin was added as web seed to a fill",
                registry=registry,
            ),
            sent=Counter(
                "wharf_edge_swarm_sent_bytes",
                "Blob bytes uploaded to other edges",
                registry=registry,
            ),
            banned=Counter(
                "wharf_edge_swarm_banned_peers",
                "Peers banned for sending pieces that failed their hash check",
                registry=registry,
            ),
            peers=Gauge("wharf_edge_swarm_peers", "Peers connected now", registry=registry),
            torrents=Gauge(
                "wharf_edge_swarm_torrents", "Torrents seeding or fetching", registry=registry
            ),
        )
        for source in ("peers", "web_seed"):
            metrics.received.labels(source).inc(0)
        for result in ("complete", "fallback"):
            metrics.fills.labels(result).inc(0)
        return metrics


@dataclass(frozen=True)
class ReplicationMetrics:
    """What the edge's replicator counts (``wharf_edge_replication_*``)."""

    depth: Gauge
    oldest: Gauge
    replicated: Counter
    bytes: Counter
    failures: Counter
    conflicts: Counter
    lag: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ReplicationMetrics:
        metrics = cls(
            depth=Gauge(
                "wharf_edge_replication_pending",
                "Pushes accepted here that the origin does not have yet",
                registry=registry,
            ),
            oldest=Gauge(
                "wharf_edge_replication_oldest_pending_seconds",
                "Age of the oldest push the origin does not have yet (0: none)",
                registry=registry,
            ),
            replicated=Counter(
                "wharf_edge_replication_replicated",
                "Objects carried to the origin, by kind (blob, mount, manifest, tag)",
                ("kind",),
                registry=registry,
            ),
            bytes=Counter(
                "wharf_edge_replication_sent_bytes",
                "Blob bytes uploaded to the origin",
                registry=registry,
            ),
            failures=Counter(
                "wharf_edge_replication_failures",
                "Replication attempts that failed (retry: tried again later; refused: for good)",
                ("reason",),
                registry=registry,
            ),
            conflicts=Counter(
                "wharf_edge_replication_conflicts",
                "Pushed tags the origin kept its own digest for (moved there since the push)",
                registry=registry,
            ),
            lag=Histogram(
                "wharf_edge_replication_lag_seconds",
                "From a push's acknowledgement here until the origin had it",
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
                registry=registry,
            ),
        )
        for kind in ("blob", "mount", "manifest", "tag"):
            metrics.replicated.labels(kind).inc(0)
        for reason in ("retry", "refused"):
            metrics.failures.labels(reason).inc(0)
        return metrics


@dataclass(frozen=True)
class PrefetchMetrics:
    """What the edge's prefetcher counts (``wharf_edge_prefetch_*``)."""

    prefetched: Counter
    failures: Counter
    lag: Histogram
    cursor: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> PrefetchMetrics:
        metrics = cls(
            prefetched=Counter(
                "wharf_edge_prefetch_objects",
                "Manifests and blobs brought here because a replication rule names them",
                ("kind",),
                registry=registry,
            ),
            failures=Counter(
                "wharf_edge_prefetch_failures",
                "Rounds of the event feed that failed (tried again with backoff)",
                registry=registry,
            ),
            lag=Histogram(
                "wharf_edge_prefetch_lag_seconds",
                "From an event at the origin (a push, a tag moved) until this region has it",
                buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
                registry=registry,
            ),
            cursor=Gauge(
                "wharf_edge_prefetch_cursor",
                "The last event of the origin's feed this edge has seen",
                registry=registry,
            ),
        )
        for kind in ("manifest", "blob"):
            metrics.prefetched.labels(kind).inc(0)
        return metrics
