"""``bench/run.py --push``: pushes through an edge, and what follows them.

One Wharf origin (token auth on) and two edges, ``eu`` and ``us``, all real processes on
loopback, all under ``taskset -c 0``; the benchmark's own process (the aiohttp clients and
pollers) and skopeo on CPU 1. Both edges have the replicator account, so both accept pushes
and both follow the origin's event feed; replication rules give ``eu-team/*`` to ``eu`` and
``us-team/*`` to ``us``. Three measurements:

1. **acknowledgement**: ``skopeo copy`` of a 3-layer image (fresh random layers of 8 MiB, 1 MiB
   and 64 KiB) from a local OCI layout to the origin directly and to the ``eu`` edge,
   alternating; seconds until skopeo exits, and the edge's over the origin's per repetition.
2. **replication lag**: 100 small 3-layer images pushed to the ``eu`` edge back to back
   through the OCI API (aiohttp), each to a new tag; per push, from the edge's 201 for the
   manifest until the origin answers ``HEAD /v2/<repo>/manifests/<tag>`` with 200 and the
   pushed digest (one poller for the oldest pending push, every 5 ms); the edge's own
   ``wharf_edge_replication_lag_seconds`` histogram beside it.
3. **prefetch lag**: small images pushed to the origin directly, alternately to ``eu-team/app``
   and ``us-team/app``; per push, from the origin's 201 until the region's edge has processed
   the push's event: its ``wharf_edge_prefetch_cursor`` gauge (polled every 5 ms from just
   before the manifest PUT) reaches the event's ``seq`` (read from the origin's feed after the
   push); the edge's ``wharf_edge_prefetch_lag_seconds`` histogram beside it.

See bench/README.md ("Push mode"). ``run.py`` loads this module for ``--push`` only.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import json
import math
import os
import re
import secrets
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.run import (
    CLIENT_CPU,
    OCI_MANIFEST,
    SERVER_CPU,
    MiB,
    Server,
    edges_running,
    free_port,
    image,
    isolated_skopeo,
    log,
    prometheus_samples,
    push_blob,
    report,
    run,
    run_header,
    running,
    sample_labels,
    sample_total,
    sample_value,
    sha256_bytes,
    start_run,
    tar_layer,
    wharf_edge,
    wharf_origin,
    wharf_version,
    write_oci_layout,
)

REPLICATOR = "edge-sync"  # the edges' account at the origin (named in its `replicators`)
REGIONS = ("eu", "us")  # one edge each; eu also takes the pushes of measurements 1 and 2
PUSH_EDGE = "eu"
ACK_LAYERS = (8 * MiB, 1 * MiB, 64 * 1024)  # measurement 1's layers, fresh random bytes each push
SMALL_LAYERS = (16 * 1024, 4 * 1024, 1024)  # measurements 2 and 3: small 3-layer images
LAG_REPO = "bench/replicated"
POLL = 0.005  # s between two polls of one poller (the origin's HEAD, an edge's /metrics)
FILE_POLL = 0.001  # s between two reads of an edge's cursor file (measurement 3's cross-check)
MAX_SCOPES = 32  # the origin's limit of scopes per token
GIVE_UP = 120.0  # s: a push that has not reached the origin (or an edge) by then is missing
ACK_AIM = 1.0  # the edge's acknowledgement no slower than a direct push: median ratio <= 1
LAG_AIM = 2.0  # replication lag p99 < 2 s on loopback
CT_MANIFEST = {"Content-Type": OCI_MANIFEST}


def region_repo(region: str) -> str:
    return f"{region}-team/app"


# --------------------------------------------------------------------------- numbers


def rank(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1): p99 of 100 values is the 99th smallest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def s3(v: float) -> str:
    return f"{v:.3f}"


def msf(v: float) -> str:
    return f"{v * 1000:.0f} ms" if v >= 0.1 else f"{v * 1000:.1f} ms"


@dataclass(frozen=True)
class Histogram:
    """A Prometheus histogram's count, sum and cumulative buckets (``le``, count)."""

    count: float
    total: float
    buckets: tuple[tuple[str, float], ...]

    @classmethod
    def of(cls, samples: dict[str, float], name: str) -> Histogram:
        buckets = []
        for key, value in samples.items():
            sample_name, labels = sample_labels(key)
            if sample_name == f"{name}_bucket" and "le" in labels:
                buckets.append((labels["le"], value))
        buckets.sort(key=lambda b: math.inf if b[0] == "+Inf" else float(b[0]))
        return cls(
            sample_value(samples, f"{name}_count"),
            sample_value(samples, f"{name}_sum"),
            tuple(buckets),
        )

    def minus(self, before: Histogram) -> Histogram:
        earlier = dict(before.buckets)
        return Histogram(
            self.count - before.count,
            self.total - before.total,
            tuple((le, n - earlier.get(le, 0.0)) for le, n in self.buckets),
        )

    def describe(self) -> str:
        """``count N, sum S s (mean M); <= 0.05 s: a, <= 0.1 s: b, ...`` up to the first
        bucket that holds them all."""
        if not self.count:
            return "count 0"
        parts = []
        for le, n in self.buckets:
            parts.append(f"<= {le} s: {n:.0f}" if le != "+Inf" else f"all: {n:.0f}")
            if n >= self.count:
                break
        return (
            f"count {self.count:.0f}, sum {self.total:.3f} s (mean {msf(self.total / self.count)}); "
            + ", ".join(parts)
        )


# --------------------------------------------------------------------------- setup


@dataclass
class Setup:
    password: str  # the origin's admin password
    token: str  # the admin's: pull,push on LAG_REPO and the region repositories, and api:v1:*
    # The admin's pull tokens for the repositories measurement 1 pushes to, by repository
    # (the origin grants at most MAX_SCOPES scopes per token).
    ack_tokens: dict[str, str]
    replicator_password: str = field(repr=False)
    rules: list[dict[str, object]] = field(default_factory=list)

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def ack_bearer(self, repo: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.ack_tokens[repo]}"}


def ack_labels(repeats: int) -> list[str]:
    """Measurement 1's pushes: a warm-up to each, then ``repeats`` to each; each its own
    repository, bench/ack-LABEL."""
    return ["warmup-origin", "warmup-edge"] + [
        f"{target}-{i + 1}" for i in range(repeats) for target in ("origin", "edge")
    ]


async def admin_token(http: aiohttp.ClientSession, origin: Server, scopes: list[str]) -> str:
    params = [("service", "wharf")] + [("scope", scope) for scope in scopes]
    async with http.get(f"{origin.url}/auth/token", params=params) as r:
        if r.status != 200:
            raise RuntimeError(f"token -> {r.status} {await r.text()}")
        return str((await r.json())["token"])


async def prepare_origin(origin: Server, data_dir: Path, ack_repeats: int) -> Setup:
    """The replicator account, one replication rule per region, the admin's tokens (taken
    now, so that no timed part waits for a login)."""
    password = (data_dir / "admin-password").read_text().strip()
    admin = {"Authorization": aiohttp.encode_basic_auth("admin", password)}
    replicator_password = secrets.token_urlsafe(24)
    rules = []
    async with aiohttp.ClientSession(headers=admin) as http:
        async with http.post(
            f"{origin.url}/api/v1/users",
            json={"name": REPLICATOR, "password": replicator_password},
        ) as r:
            if r.status != 201:
                raise RuntimeError(f"create {REPLICATOR} -> {r.status} {await r.text()}")
        for region in REGIONS:
            async with http.post(
                f"{origin.url}/api/v1/replication/rules",
                json={"repositories": f"{region}-team/*", "regions": [region]},
            ) as r:
                if r.status != 201:
                    raise RuntimeError(f"rule for {region} -> {r.status} {await r.text()}")
                rules.append(await r.json())
        repos = [LAG_REPO, *(region_repo(region) for region in REGIONS)]
        token = await admin_token(
            http, origin, ["api:v1:*", *(f"repository:{repo}:pull,push" for repo in repos)]
        )
        ack_repos = [f"bench/ack-{label}" for label in ack_labels(ack_repeats)]
        ack_tokens = {}
        for i in range(0, len(ack_repos), MAX_SCOPES):
            chunk = ack_repos[i : i + MAX_SCOPES]
            got = await admin_token(http, origin, [f"repository:{repo}:pull" for repo in chunk])
            ack_tokens.update(dict.fromkeys(chunk, got))
    origin.creds = f"admin:{password}"  # skopeo's, at the origin and at the edge alike
    return Setup(password, token, ack_tokens, replicator_password, rules)


def push_edges(origin: Server, scratch: Path, setup: Setup) -> dict[str, Server]:
    """One edge per region, with the replicator account (so it accepts pushes and follows the
    feed), a port picked up front, a fresh data dir; ``swarm = false`` (every blob here is far
    below the swarm's threshold), every other setting default."""
    ports: list[int] = []
    while len(ports) < len(REGIONS):
        port = free_port()
        if port not in ports:
            ports.append(port)
    edges = {}
    for region, port in zip(REGIONS, ports, strict=True):
        name = f"edge-{region}"
        config = scratch / f"{name}.toml"
        config.write_text(
            f"# generated by bench/push.py: the edge of region {region}\n"
            "[edge]\n"
            f'node_id = "{name}"\n'
            f'region = "{region}"\n'
            f'zone = "{region}"\n'
            f'advertise_url = "http://127.0.0.1:{port}"\n'
            "swarm = false\n"
        )
        edges[region] = wharf_edge(
            name,
            config,
            f"127.0.0.1:{port}",
            origin.url,
            scratch / name,
            origin.version,
            port,
            # The password in the environment: never in a file or a command line.
            env={
                "WHARF_EDGE_REPLICATION_USERNAME": REPLICATOR,
                "WHARF_EDGE_REPLICATION_PASSWORD": setup.replicator_password,
            },
            creds=origin.creds,
        )
    return edges


def small_image(sizes: tuple[int, ...] = SMALL_LAYERS) -> tuple[bytes, bytes, list[bytes]]:
    """(config, manifest, layers) of a fresh image: one uncompressed tar layer of random bytes
    per size."""
    return image([tar_layer({f"layer{i}/data.bin": os.urandom(n)}) for i, n in enumerate(sizes)])


async def push_small(
    http: aiohttp.ClientSession,
    base: str,
    repo: str,
    tag: str,
    img: tuple[bytes, bytes, list[bytes]],
) -> float:
    """Blobs (POST, PUT ?digest=), then the manifest by tag; returns when its 201 arrived
    (``time.perf_counter()``)."""
    config, manifest, layers = img
    for blob in (config, *layers):
        await push_blob(http, base, repo, sha256_bytes(blob), blob)
    url = f"{base}/v2/{repo}/manifests/{tag}"
    async with http.put(url, data=manifest, headers=CT_MANIFEST) as r:
        body = await r.read()
        acked = time.perf_counter()
        if r.status != 201:
            raise RuntimeError(f"PUT {url} -> {r.status} {body[:300]!r}")
    return acked


async def until_tagged(
    http: aiohttp.ClientSession, url: str, digest: str, since: float, poll: float = POLL
) -> tuple[float | None, str]:
    """HEAD ``url`` every ``poll`` s until it answers 200 with ``digest``: the seconds from
    ``since`` (a ``perf_counter``) to that answer, or None after GIVE_UP s; and the last
    status seen."""
    last = ""
    while True:
        try:
            async with http.head(url, headers={"Accept": OCI_MANIFEST}) as r:
                now = time.perf_counter()
                got = r.headers.get("Docker-Content-Digest", "")
                last = f"{r.status} {got[:19]}"
                if r.status == 200 and got == digest:
                    return now - since, last
        except (aiohttp.ClientError, TimeoutError) as exc:
            now, last = time.perf_counter(), f"{type(exc).__name__}: {exc}"
        if now - since > GIVE_UP:
            return None, last
        await asyncio.sleep(poll)


async def until_settled(edge: Server, within: float = 60.0) -> None:
    """Until the edge has nothing left to replicate (its pending gauge 0)."""
    deadline = time.monotonic() + within
    while True:
        found = await prometheus_samples(edge, "wharf_edge_replication_pending")
        if sample_value(found, "wharf_edge_replication_pending") == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{edge.name} still has pushes pending after {within:.0f} s")
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- 1. acknowledgement


@dataclass(frozen=True)
class AckSample:
    target: str  # "origin" or "edge"
    repetition: int
    position: int  # 0: first of its pair
    seconds: float  # skopeo copy, start to exit
    server_cpu: float  # the origin's and the edges' CPU seconds during it
    at_origin: float | None = None  # edge: from skopeo's exit until the origin had the tag
    same_digest: bool = True  # the manifest the origin (edge: the edge) holds is the layout's


def layout_digest(layout: Path) -> str:
    index = json.loads((layout / "index.json").read_text())
    return str(index["manifests"][0]["digest"])


def ack_push(
    target: str,
    server: Server,
    servers: list[Server],
    origin: Server,
    setup: Setup,
    scratch: Path,
    label: str,
    repetition: int = -1,
    position: int = 0,
) -> AckSample:
    """A fresh 3-layer image pushed with skopeo to ``server``; for the edge, then until the
    origin has it and the edge has nothing pending (untimed but for ``at_origin``)."""
    layout = scratch / f"layout-{label}"
    write_oci_layout(
        layout,
        "v1",
        [tar_layer({f"layer{i}/data.bin": os.urandom(n)}) for i, n in enumerate(ACK_LAYERS)],
    )
    digest = layout_digest(layout)
    repo = f"bench/ack-{label}"
    argv = isolated_skopeo(
        "copy",
        "--quiet",
        "--insecure-policy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"admin:{setup.password}",
        f"oci:{layout}:v1",
        f"docker://{server.hostport}/{repo}:v1",
    )
    cpu0 = sum(s.cpu_seconds() for s in servers)
    start = time.perf_counter()
    run(argv, timeout=300)
    exited = time.perf_counter()
    cpu1 = sum(s.cpu_seconds() for s in servers)
    shutil.rmtree(layout, ignore_errors=True)

    async def after() -> tuple[float | None, bool]:
        async with aiohttp.ClientSession(headers=setup.ack_bearer(repo)) as http:
            at_origin: float | None = None
            if target == "edge":
                at_origin, last = await until_tagged(
                    http, f"{origin.url}/v2/{repo}/manifests/v1", digest, exited
                )
                if at_origin is None:
                    log(f"WARNING: {label}: not at the origin after {GIVE_UP:.0f} s ({last})")
                await until_settled(server)
            async with http.head(
                f"{server.url}/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST}
            ) as r:
                same = r.status == 200 and r.headers.get("Docker-Content-Digest") == digest
            return at_origin, same

    at_origin, same = asyncio.run(after())
    if not same:
        log(f"WARNING: {label}: {server.name} does not hold the layout's manifest {digest[:19]}")
    return AckSample(
        target, repetition, position, exited - start, cpu1 - cpu0, at_origin, same_digest=same
    )


def measure_ack(
    origin: Server, edge: Server, servers: list[Server], setup: Setup, scratch: Path, repeats: int
) -> list[AckSample]:
    """One untimed warm-up push to each, then ``repeats`` pairs, the order alternating
    (origin, edge; edge, origin; ...)."""
    targets = {"origin": origin, "edge": edge}
    for target, server in targets.items():
        ack_push(target, server, servers, origin, setup, scratch, f"warmup-{target}")
    log("acknowledgement: warm-up pushes done")
    samples = []
    for i in range(repeats):
        order = ["origin", "edge"] if i % 2 == 0 else ["edge", "origin"]
        for position, target in enumerate(order):
            s = ack_push(
                target,
                targets[target],
                servers,
                origin,
                setup,
                scratch,
                f"{target}-{i + 1}",
                i,
                position,
            )
            samples.append(s)
            extra = "" if s.at_origin is None else f", at the origin {s.at_origin:.3f} s later"
            log(
                f"ack {i + 1}/{repeats} {target:6} {s.seconds:.3f} s "
                f"(servers' CPU {s.server_cpu:.2f} s){extra}"
            )
    return samples


def ack_ratios(samples: list[AckSample]) -> list[float]:
    by = {(s.target, s.repetition): s.seconds for s in samples}
    reps = sorted({s.repetition for s in samples})
    return [
        by[("edge", r)] / by[("origin", r)]
        for r in reps
        if ("edge", r) in by and ("origin", r) in by
    ]


# --------------------------------------------------------------------------- 2. replication lag


@dataclass(frozen=True)
class LagRun:
    pushes: int
    lags: list[float]  # per push that reached the origin: s from the edge's 201 to the HEAD
    missing: list[str]  # tags that did not reach the origin in GIVE_UP s (with the last status)
    push_seconds: list[float]  # per image: blobs and manifest at the edge
    wall: float  # all the pushes, back to back
    drained: float  # from the last 201 until the last push was at the origin
    most_pending: int  # the most pushes between ack and origin at once (as the poller saw)
    heads: int  # HEADs the poller sent the origin
    histogram: Histogram  # the edge's wharf_edge_replication_lag_seconds over the run
    replicated: dict[str, float]  # wharf_edge_replication_replicated_total by kind
    failures: dict[str, float]  # wharf_edge_replication_failures_total by reason
    conflicts: float


def counter_by(
    after: dict[str, float], before: dict[str, float], name: str, label: str
) -> dict[str, float]:
    """How ``name``'s samples moved, by ``label``."""
    moved: dict[str, float] = {}
    for key, value in after.items():
        sample_name, labels = sample_labels(key)
        if sample_name == name:
            moved[labels.get(label, "")] = value - before.get(key, 0.0)
    return moved


@dataclass
class Frontier:
    """Pushes acknowledged by the edge and not yet seen at the origin, oldest first."""

    pending: collections.deque[tuple[str, str, float]] = field(
        default_factory=collections.deque
    )  # (tag, digest, when the edge's 201 arrived)
    lags: dict[str, float | None] = field(default_factory=dict)
    heads: int = 0  # HEADs sent to the origin
    most: int = 0  # the most pushes pending at once
    closed: bool = False  # no more pushes will come
    news: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, tag: str, digest: str, acked: float) -> None:
        self.pending.append((tag, digest, acked))
        self.most = max(self.most, len(self.pending))
        self.news.set()

    def close(self) -> None:
        self.closed = True
        self.news.set()

    async def watch(self, http: aiohttp.ClientSession, origin: Server) -> None:
        """HEAD the oldest pending push's tag at the origin every POLL s until it answers 200
        with the digest; then at once the next one (it may be there already), and so on.

        One poller for all, in push order, because the edge's replicator carries one
        repository's pushes in push order: a poller per pending push would send the origin
        one HEAD per pending push every 5 ms (thousands a second once a backlog builds), on the
        core it shares with the edge, and slow down what it measures. A push that reached the
        origin before an older one would be timed when the older one is seen: late, never
        early."""
        while True:
            if not self.pending:
                if self.closed:
                    return
                self.news.clear()
                await self.news.wait()
                continue
            tag, digest, acked = self.pending[0]
            url = f"{origin.url}/v2/{LAG_REPO}/manifests/{tag}"
            last = ""
            try:
                self.heads += 1
                async with http.head(url, headers={"Accept": OCI_MANIFEST}) as r:
                    now = time.perf_counter()
                    got = r.headers.get("Docker-Content-Digest", "")
                    last = f"{r.status} {got[:19]}"
                    arrived = r.status == 200 and got == digest
            except (aiohttp.ClientError, TimeoutError) as exc:
                now, arrived, last = time.perf_counter(), False, f"{type(exc).__name__}: {exc}"
            if arrived or now - acked > GIVE_UP:
                self.pending.popleft()
                self.lags[tag] = now - acked if arrived else None
                if not arrived:
                    log(
                        f"WARNING: {LAG_REPO}:{tag} not at the origin after {GIVE_UP:.0f} s ({last})"
                    )
                continue  # the next one at once
            await asyncio.sleep(POLL)


async def measure_lag(origin: Server, edge: Server, setup: Setup, pushes: int) -> LagRun:
    images = [small_image() for _ in range(pushes)]
    name = "wharf_edge_replication_lag_seconds"
    before = await prometheus_samples(edge, "wharf_edge_replication_")
    frontier = Frontier()
    timeout = aiohttp.ClientTimeout(total=120)
    async with (
        aiohttp.ClientSession(headers=setup.bearer, timeout=timeout) as to_edge,
        aiohttp.ClientSession(headers=setup.bearer, timeout=timeout) as to_origin,
    ):
        watcher = asyncio.create_task(frontier.watch(to_origin, origin))
        tags = []
        push_seconds = []
        start = time.perf_counter()
        for i, img in enumerate(images):
            tag = f"t{i + 1:03}"
            t0 = time.perf_counter()
            acked = await push_small(to_edge, edge.url, LAG_REPO, tag, img)
            push_seconds.append(acked - t0)
            tags.append(tag)
            frontier.add(tag, sha256_bytes(img[1]), acked)
        last_ack = time.perf_counter()
        wall = last_ack - start
        frontier.close()
        await watcher
        drained = time.perf_counter() - last_ack
    await until_settled(edge)
    # The histogram is observed as the replicator finishes an item, a moment after the origin
    # answers; wait until it has counted every push (or 10 s).
    deadline = time.monotonic() + 10
    while True:
        after = await prometheus_samples(edge, "wharf_edge_replication_")
        hist = Histogram.of(after, name).minus(Histogram.of(before, name))
        if hist.count >= pushes or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    results = [frontier.lags.get(tag) for tag in tags]
    return LagRun(
        pushes,
        [lag for lag in results if lag is not None],
        [tag for tag, lag in zip(tags, results, strict=True) if lag is None],
        push_seconds,
        wall,
        drained,
        frontier.most,
        frontier.heads,
        hist,
        counter_by(after, before, "wharf_edge_replication_replicated_total", "kind"),
        counter_by(after, before, "wharf_edge_replication_failures_total", "reason"),
        sample_total(after, "wharf_edge_replication_conflicts_total")
        - sample_total(before, "wharf_edge_replication_conflicts_total"),
    )


# --------------------------------------------------------------------------- 3. prefetch lag


@dataclass(frozen=True)
class PrefetchSample:
    region: str
    repetition: int
    seq: int
    lag: float | None  # s from the origin's 201 until the edge's cursor gauge reached seq
    file_lag: float | None  # the same by the edge's cursor file
    polls: int  # /metrics reads of the edge for this push
    at: str  # the event's time at the origin, as its feed gives it


@dataclass(frozen=True)
class PrefetchRegion:
    region: str
    histogram: Histogram  # the edge's wharf_edge_prefetch_lag_seconds over the run
    prefetched: dict[str, float]  # wharf_edge_prefetch_objects_total by kind
    failures: float  # wharf_edge_prefetch_failures_total
    metrics_ms: float  # median time of one /metrics read of this edge (the poll's resolution)
    metrics_cpu_ms: float  # the edge's CPU time per /metrics read (measured before, idle)


class CursorWatcher:
    """Watches an edge's feed cursor two ways at once: its ``wharf_edge_prefetch_cursor`` gauge,
    one /metrics read every POLL s (what the measurement is), and the cursor file the edge
    saves just before it sets the gauge (``<data dir>/feed-cursor``), read by this process
    every FILE_POLL s at no cost to the edge (the cross-check of the gauge's resolution).
    Each keeps (when first seen, value) per change."""

    def __init__(self, http: aiohttp.ClientSession, edge: Server, cursor_file: Path) -> None:
        self.http = http
        self.edge = edge
        self.cursor_file = cursor_file
        self.gauge: list[tuple[float, float]] = []
        self.file: list[tuple[float, float]] = []
        self.reads: list[float] = []  # how long each /metrics read took
        self.polls = 0
        self.news = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def read(self) -> float:
        async with self.http.get(self.edge.url + "/metrics") as r:
            text = await r.text()
        for line in text.splitlines():
            if line.startswith("wharf_edge_prefetch_cursor "):
                return float(line.rpartition(" ")[2])
        raise RuntimeError(f"{self.edge.name}: no wharf_edge_prefetch_cursor in /metrics")

    @staticmethod
    def keep(seen: list[tuple[float, float]], when: float, value: float) -> None:
        if not seen or seen[-1][1] != value:
            seen.append((when, value))

    async def gauge_loop(self) -> None:
        while True:
            t0 = time.perf_counter()
            value = await self.read()
            now = time.perf_counter()
            self.polls += 1
            self.reads.append(now - t0)
            self.keep(self.gauge, now, value)
            self.news.set()
            await asyncio.sleep(POLL)

    async def file_loop(self) -> None:
        while True:
            with contextlib.suppress(OSError, ValueError):
                value = float(self.cursor_file.read_text().strip() or 0)
                self.keep(self.file, time.perf_counter(), value)
            await asyncio.sleep(FILE_POLL)

    def start(self) -> None:
        self.gauge.clear()
        self.file.clear()
        self.polls = 0
        self.tasks = [
            asyncio.create_task(self.gauge_loop()),
            asyncio.create_task(self.file_loop()),
        ]

    async def stop(self) -> int:
        """Stop watching; the number of /metrics reads since ``start``."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return self.polls

    @staticmethod
    def first(seen: list[tuple[float, float]], seq: int) -> float | None:
        return next((when for when, value in seen if value >= seq), None)

    async def reached(self, seq: int, within: float = GIVE_UP) -> tuple[float | None, float | None]:
        """When the gauge, and the file, were first seen at ``seq`` or beyond
        (``perf_counter``s; None: not within ``within`` s)."""
        deadline = time.perf_counter() + within
        while (gauge := self.first(self.gauge, seq)) is None:
            if time.perf_counter() > deadline:
                return None, self.first(self.file, seq)
            self.news.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.news.wait()
        # The file is written before the gauge is set: it is seen by now, or a moment later.
        for _ in range(100):
            if (found := self.first(self.file, seq)) is not None:
                return gauge, found
            await asyncio.sleep(FILE_POLL)
        return gauge, None


def data_dir(server: Server) -> Path:
    return Path(server.argv[server.argv.index("--data-dir") + 1])


async def metrics_cost(edge: Server, reads: int = 50) -> float:
    """The edge's CPU ms per /metrics read: ``reads`` back to back, its CPU time over them
    (what the watcher's polling costs the edge, on the core it shares)."""
    async with aiohttp.ClientSession() as http:
        cpu0 = edge.cpu_seconds()
        for _ in range(reads):
            async with http.get(edge.url + "/metrics") as r:
                await r.read()
        cpu1 = edge.cpu_seconds()
    return (cpu1 - cpu0) * 1000 / reads


async def event_seq(
    http: aiohttp.ClientSession, origin: Server, region: str, after: int, repo: str, digest: str
) -> tuple[int, str]:
    """The seq of the push of ``digest`` to ``repo`` in ``region``'s feed (events after ``after``)."""
    async with http.get(
        f"{origin.url}/api/v1/replication/events",
        params={"region": region, "after": str(after), "limit": "1000"},
    ) as r:
        if r.status != 200:
            raise RuntimeError(f"feed of {region} -> {r.status} {await r.text()}")
        page = await r.json()
    for event in page["events"]:
        if event["kind"] == "push" and event["repository"] == repo and event["digest"] == digest:
            return int(event["seq"]), str(event["at"])
    raise RuntimeError(f"no push event for {repo}@{digest[:19]} after {after} in {region}'s feed")


async def measure_prefetch(
    origin: Server, edges: dict[str, Server], setup: Setup, repeats: int
) -> tuple[list[PrefetchSample], list[PrefetchRegion]]:
    """``repeats`` pushes per region to the origin, the regions alternating (eu, us; us, eu;
    ...), each waited for at its edge before the next."""
    name = "wharf_edge_prefetch_lag_seconds"
    metrics_cpu = {r: await metrics_cost(e) for r, e in edges.items()}
    before = {r: await prometheus_samples(e, "wharf_edge_prefetch_") for r, e in edges.items()}
    samples: list[PrefetchSample] = []
    reads: dict[str, list[float]] = {r: [] for r in edges}
    last_seq = dict.fromkeys(edges, 0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with (
        aiohttp.ClientSession(headers=setup.bearer, timeout=timeout) as to_origin,
        aiohttp.ClientSession(timeout=timeout) as to_edges,
    ):
        watchers = {
            r: CursorWatcher(to_edges, e, data_dir(e) / "feed-cursor") for r, e in edges.items()
        }
        for i in range(repeats):
            for region in REGIONS if i % 2 == 0 else REGIONS[::-1]:
                repo, tag = region_repo(region), f"p{i + 1:03}"
                config, manifest, layers = small_image()
                for blob in (config, *layers):
                    await push_blob(to_origin, origin.url, repo, sha256_bytes(blob), blob)
                watcher = watchers[region]
                watcher.start()
                url = f"{origin.url}/v2/{repo}/manifests/{tag}"
                async with to_origin.put(url, data=manifest, headers=CT_MANIFEST) as r:
                    body = await r.read()
                    acked = time.perf_counter()
                    if r.status != 201:
                        raise RuntimeError(f"PUT {url} -> {r.status} {body[:300]!r}")
                seq, at = await event_seq(
                    to_origin, origin, region, last_seq[region], repo, sha256_bytes(manifest)
                )
                last_seq[region] = seq
                when, seen_in_file = await watcher.reached(seq)
                polls = await watcher.stop()
                reads[region].extend(watcher.reads)
                watcher.reads.clear()
                lag = None if when is None else when - acked
                file_lag = None if seen_in_file is None else seen_in_file - acked
                if lag is None:
                    log(f"WARNING: {region}: event {seq} not processed in {GIVE_UP:.0f} s")
                else:
                    log(
                        f"prefetch {i + 1}/{repeats} {region}: event {seq} at the edge in "
                        f"{msf(lag)} (cursor file: {'-' if file_lag is None else msf(file_lag)})"
                    )
                samples.append(PrefetchSample(region, i, seq, lag, file_lag, polls, at))
    regions = []
    for region, edge in edges.items():
        after = await prometheus_samples(edge, "wharf_edge_prefetch_")
        regions.append(
            PrefetchRegion(
                region,
                Histogram.of(after, name).minus(Histogram.of(before[region], name)),
                counter_by(after, before[region], "wharf_edge_prefetch_objects_total", "kind"),
                sample_total(after, "wharf_edge_prefetch_failures_total")
                - sample_total(before[region], "wharf_edge_prefetch_failures_total"),
                statistics.median(reads[region]) * 1000 if reads[region] else 0.0,
                metrics_cpu[region],
            )
        )
    return samples, regions


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class PushResults:
    acks: list[AckSample]
    lag: LagRun
    prefetch: list[PrefetchSample]
    regions: list[PrefetchRegion]
    edges_version: str
    rules: list[dict[str, object]]


def measure_push(
    origin: Server, edges: dict[str, Server], setup: Setup, scratch: Path, args: argparse.Namespace
) -> PushResults:
    servers = [origin, *edges.values()]
    edge = edges[PUSH_EDGE]
    log(f"1. acknowledgement: {args.ack_repeats} skopeo pushes each to the origin and {edge.name}")
    acks = measure_ack(origin, edge, servers, setup, scratch, args.ack_repeats)
    check_alive(servers)
    log(f"2. replication lag: {args.lag_pushes} pushes to {edge.name}, back to back")
    lag = asyncio.run(measure_lag(origin, edge, setup, args.lag_pushes))
    log(
        f"replication lag over {len(lag.lags)} pushes: p50 {msf(rank(lag.lags, 0.5))}, "
        f"p99 {msf(rank(lag.lags, 0.99))}, max {msf(max(lag.lags))}; missing {len(lag.missing)}"
        if lag.lags
        else "replication lag: no push reached the origin"
    )
    check_alive(servers)
    log(f"3. prefetch lag: {args.prefetch_pushes} pushes per region to the origin")
    prefetch, regions = asyncio.run(measure_prefetch(origin, edges, setup, args.prefetch_pushes))
    check_alive(servers)
    return PushResults(acks, lag, prefetch, regions, edge.version, setup.rules)


def check_alive(servers: list[Server]) -> None:
    for server in servers:
        if not server.alive():
            raise RuntimeError(f"{server.name} died:\n{server.log_tail()}")


def push_main(args: argparse.Namespace) -> int:
    """--push: a push's acknowledgement at the origin and at an edge, the edge's replication
    lag, and each region's prefetch lag; see bench/README.md."""
    started, t0 = datetime.datetime.now(datetime.UTC), time.perf_counter()
    scratch = start_run(args, ("taskset", "curl", "skopeo", "unshare"))
    # The benchmark's own work (pushing, polling, checking) is client work.
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    # The version (git revision included) is for the results file; a run without one skips it.
    version = wharf_version() if args.output is not None else "wharf (version not read)"
    origin = wharf_origin(
        "origin", scratch / "origin", version, WHARF_ORIGIN_REPLICATORS=REPLICATOR
    )
    try:
        with running({"origin": origin}, scratch):
            setup = asyncio.run(prepare_origin(origin, scratch / "origin", args.ack_repeats))
            edges = push_edges(origin, scratch, setup)
            with edges_running(list(edges.values()), scratch):
                log(
                    f"origin and edges up ({', '.join(f'{r}: {e.url}' for r, e in edges.items())}); "
                    f"replicator {REPLICATOR}, rules "
                    + ", ".join(f"{r}-team/* -> {r}" for r in REGIONS)
                )
                results = measure_push(origin, edges, setup, scratch, args)
    except BaseException:
        log(f"FAILED; scratch kept at {scratch} (server logs *.log)")
        raise
    else:
        if not args.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            log(f"scratch kept at {scratch}")
    elapsed = time.perf_counter() - t0
    report(
        args,
        [
            aims_table(results),
            ack_table(results.acks),
            lag_table(results.lag),
            prefetch_table(results),
            "What this run saw:\n\n" + observations(results),
        ],
        lambda: push_markdown(results, origin, args, started, elapsed),
        elapsed,
    )
    return 0


# --------------------------------------------------------------------------- report


def stats_row(values: list[float]) -> str:
    """median | p90 | min - max, in seconds."""
    if not values:
        return "- | - | -"
    return (
        f"{s3(statistics.median(values))} | {s3(rank(values, 0.9))} | "
        f"{s3(min(values))} - {s3(max(values))}"
    )


def aims_table(r: PushResults) -> str:
    lines = ["| aim | measured | met |", "|---|---|---|"]
    ratios = ack_ratios(r.acks)
    if ratios:
        ratio = statistics.median(ratios)
        within = sum(x <= ACK_AIM for x in ratios)
        lines.append(
            f"| an edge acknowledges a push no slower than the origin (edge / origin, median of "
            f"the paired ratios, <= {ACK_AIM:.2f}) | {ratio:.2f} ({within} of {len(ratios)} "
            f"pairs within; edge {s3(median_at(r.acks, 'edge'))} s, origin "
            f"{s3(median_at(r.acks, 'origin'))} s) | {'met' if ratio <= ACK_AIM else 'MISSED'} |"
        )
    lag = r.lag
    if lag.lags:
        p99 = rank(lag.lags, 0.99)
        met = p99 < LAG_AIM and not lag.missing
        lines.append(
            f"| replication lag p99 < {LAG_AIM:.0f} s over {lag.pushes} pushes to the edge | "
            f"p99 {s3(p99)} s (p50 {s3(rank(lag.lags, 0.5))} s, max {s3(max(lag.lags))} s)"
            + (f"; {len(lag.missing)} never reached the origin" if lag.missing else "")
            + f" | {'met' if met else 'MISSED'} |"
        )
    else:
        lines.append("| replication lag p99 < 2 s | no push reached the origin | MISSED |")
    problems = problem_list(r)
    lines.append(
        "| no replication failure, conflict or missing push; no prefetch failure; every "
        "prefetched push processed at its edge | "
        + ("; ".join(problems) if problems else "none seen")
        + f" | {'NOT met' if problems else 'met'} |"
    )
    return "\n".join(lines)


def median_at(samples: list[AckSample], target: str) -> float:
    return statistics.median([s.seconds for s in samples if s.target == target])


def problem_list(r: PushResults) -> list[str]:
    found = []
    if r.lag.missing:
        found.append(f"{len(r.lag.missing)} edge pushes not at the origin: {r.lag.missing[:5]}")
    failures = {k: v for k, v in r.lag.failures.items() if v}
    if failures:
        found.append(f"replication failures {failures}")
    if r.lag.conflicts:
        found.append(f"{r.lag.conflicts:.0f} replication conflicts")
    if r.lag.histogram.count != r.lag.pushes:
        found.append(
            f"the edge's lag histogram counted {r.lag.histogram.count:.0f} of {r.lag.pushes} pushes"
        )
    bad = [s for s in r.acks if not s.same_digest or (s.target == "edge" and s.at_origin is None)]
    if bad:
        found.append(f"{len(bad)} skopeo pushes not where expected")
    for region in r.regions:
        if region.failures:
            found.append(f"{region.region}: {region.failures:.0f} failed feed rounds")
        n = sum(1 for s in r.prefetch if s.region == region.region)
        if region.prefetched.get("manifest", 0) != n:
            found.append(
                f"{region.region}: {region.prefetched.get('manifest', 0):.0f} manifests "
                f"prefetched for {n} pushes"
            )
        if region.prefetched.get("blob", 0) != n * (len(SMALL_LAYERS) + 1):
            found.append(
                f"{region.region}: {region.prefetched.get('blob', 0):.0f} blobs prefetched for "
                f"{n * (len(SMALL_LAYERS) + 1)} pushed"
            )
    not_seen = [s for s in r.prefetch if s.lag is None]
    if not_seen:
        found.append(f"{len(not_seen)} pushes never processed at their edge")
    return found


def ack_table(samples: list[AckSample]) -> str:
    lines = [
        "| push (skopeo copy, 3 layers: 8 MiB, 1 MiB, 64 KiB) | n | median s | p90 s | min - max s |",
        "|---|--:|--:|--:|--:|",
    ]
    for target, label in (("origin", "to the origin directly"), ("edge", "to the edge (eu)")):
        values = [s.seconds for s in samples if s.target == target]
        lines.append(f"| {label} | {len(values)} | {stats_row(values)} |")
    ratios = ack_ratios(samples)
    if ratios:
        lines.append(
            f"| edge / origin, per pair | {len(ratios)} | {statistics.median(ratios):.2f} | "
            f"{rank(ratios, 0.9):.2f} | {min(ratios):.2f} - {max(ratios):.2f} |"
        )
    later = [s.at_origin for s in samples if s.at_origin is not None]
    if later:
        lines.append(
            f"| edge pushes: from skopeo's exit until at the origin (not part of the "
            f"acknowledgement) | {len(later)} | {stats_row(later)} |"
        )
    cpu = {t: [s.server_cpu for s in samples if s.target == t] for t in ("origin", "edge")}
    if all(cpu.values()):
        lines.append(
            f"| servers' CPU s during the push (origin + edges), origin / edge | - | "
            f"{statistics.median(cpu['origin']):.2f} / {statistics.median(cpu['edge']):.2f} | - | - |"
        )
    return "\n".join(lines)


def lag_table(lag: LagRun) -> str:
    lines = [
        f"| replication lag, {lag.pushes} pushes to the edge | n | p50 | p90 | p99 | max |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    if lag.lags:
        v = lag.lags
        lines.append(
            f"| edge's 201 -> origin's HEAD 200 with the digest | {len(v)} | "
            f"{msf(rank(v, 0.5))} | {msf(rank(v, 0.9))} | {msf(rank(v, 0.99))} | {msf(max(v))} |"
        )
    p = lag.push_seconds
    lines.append(
        f"| one image pushed at the edge (4 blobs + manifest) | {len(p)} | {msf(rank(p, 0.5))} | "
        f"{msf(rank(p, 0.9))} | {msf(rank(p, 0.99))} | {msf(max(p))} |"
    )
    h = lag.histogram
    replicated = ", ".join(f"{k} {v:.0f}" for k, v in sorted(lag.replicated.items()) if v)
    return "\n".join(
        [
            *lines,
            "",
            f"All {lag.pushes} pushes took {lag.wall:.2f} s ({lag.pushes / lag.wall:.1f} images/s); "
            f"the last one was at the origin {lag.drained:.3f} s after its 201; at most "
            f"{lag.most_pending} pushes were between the edge's 201 and the origin at once; "
            f"the poller sent the origin {lag.heads} HEADs.",
            f"The edge's wharf_edge_replication_lag_seconds over these pushes: {h.describe()}.",
            f"Replicated (wharf_edge_replication_replicated_total): {replicated or 'nothing'}; "
            f"failures {dict(lag.failures)}; conflicts {lag.conflicts:.0f}.",
        ]
    )


def prefetch_table(r: PushResults) -> str:
    lines = [
        "| region (rule) | pushes | p50 | p90 | max | cursor file: p50, max | edge's wharf_edge_prefetch_lag_seconds | one /metrics read: time, edge CPU |",
        "|---|--:|--:|--:|--:|--:|---|--:|",
    ]
    for region in r.regions:
        lags = [s.lag for s in r.prefetch if s.region == region.region and s.lag is not None]
        n = sum(1 for s in r.prefetch if s.region == region.region)
        cells = (
            f"{msf(rank(lags, 0.5))} | {msf(rank(lags, 0.9))} | {msf(max(lags))}"
            if lags
            else "- | - | -"
        )
        files = [s.file_lag for s in r.prefetch if s.region == region.region and s.file_lag]
        by_file = f"{msf(rank(files, 0.5))}, {msf(max(files))}" if files else "-"
        lines.append(
            f"| {region.region} ({region.region}-team/*) | {n} | {cells} | {by_file} | "
            f"{region.histogram.describe()} | {region.metrics_ms:.1f} ms, "
            f"{region.metrics_cpu_ms:.1f} ms |"
        )
    return "\n".join(lines)


def observations(r: PushResults) -> str:
    notes = [f"- {p}" for p in problem_list(r)]
    late = [s for s in r.acks if s.target == "edge" and s.at_origin is not None]
    if late:
        notes.append(
            f"- skopeo pushes to the edge were at the origin {s3(statistics.median([s.at_origin or 0 for s in late]))} s "
            "(median) after skopeo exited: the deferred part of an edge push."
        )
    negative = [s for s in r.prefetch if s.lag is not None and s.lag < 0]
    if negative:
        notes.append(
            f"- {len(negative)} prefetch lag(s) below 0: the edge had processed the event "
            "before the client read the origin's 201."
        )
    lag = r.lag
    if lag.lags and rank(lag.lags, 0.99) >= LAG_AIM:
        notes.append(
            f"- slow replication: p99 {s3(rank(lag.lags, 0.99))} s; the edge took "
            f"{lag.pushes / lag.wall:.1f} images/s and carried them to the origin at "
            f"{lag.pushes / (lag.wall + lag.drained):.1f} images/s overall (up to "
            f"{lag.most_pending} waiting at once): the lag is mostly the queue."
        )
    if lag.lags and lag.histogram.count:
        mean = lag.histogram.total / lag.histogram.count
        notes.append(
            f"- replication lag, cross-check: the edge's histogram mean {msf(mean)}, the "
            f"poller's {msf(statistics.mean(lag.lags))} (the edge's clock runs from journaling "
            "the push, just before its 201, until it has recorded the origin's answer to the "
            "manifest PUT; the poller's from receiving the 201 until its next HEAD sees the tag)."
        )
    whole = [s for s in r.prefetch if s.at and not re.search(r"\.\d", s.at)]
    if r.prefetch and len(whole) == len(r.prefetch):
        notes.append(
            f"- the origin's feed gives each event's `at` in whole seconds (e.g. "
            f"`{r.prefetch[0].at}`): the edges' wharf_edge_prefetch_lag_seconds (now - `at`) "
            "reads up to 1 s high, about 0.5 s on average; the lag measured here does not "
            "depend on it."
        )
    pairs = [(s.lag, s.file_lag) for s in r.prefetch if s.lag is not None and s.file_lag]
    if pairs:
        notes.append(
            f"- prefetch lag by the cursor file (read every {FILE_POLL * 1000:.0f} ms, no cost to "
            f"the edge) was {msf(statistics.median([g - f for g, f in pairs]))} below the gauge's "
            "(median difference): the gauge's polling resolution."
        )
    for region in r.regions:
        lags = [s.lag for s in r.prefetch if s.region == region.region and s.lag is not None]
        if lags and region.histogram.count:
            notes.append(
                f"- prefetch lag in {region.region}, cross-check: the edge's histogram mean "
                f"{msf(region.histogram.total / region.histogram.count)}, measured here "
                f"{msf(statistics.mean(lags))}; each /metrics read cost the edge "
                f"{region.metrics_cpu_ms:.1f} ms of CPU (the watcher's load on CPU {SERVER_CPU})."
            )
    if not notes:
        notes.append("- nothing unusual: no failure, conflict or missing push")
    return "\n".join(notes)


def ack_detail(samples: list[AckSample]) -> str:
    lines = [
        "| repetition | first | origin s | edge s | edge / origin | edge push at the origin after | servers' CPU s (origin push / edge push) |",
        "|--:|---|--:|--:|--:|--:|---|",
    ]
    for rep in sorted({s.repetition for s in samples}):
        pair = {s.target: s for s in samples if s.repetition == rep}
        o, e = pair.get("origin"), pair.get("edge")
        if o is None or e is None:
            continue
        first = "origin" if o.position == 0 else "edge"
        later = "-" if e.at_origin is None else f"{e.at_origin:.3f} s"
        lines.append(
            f"| {rep + 1} | {first} | {s3(o.seconds)} | {s3(e.seconds)} | "
            f"{e.seconds / o.seconds:.2f} | {later} | {o.server_cpu:.2f} / {e.server_cpu:.2f} |"
        )
    return "\n".join(lines)


def prefetch_detail(samples: list[PrefetchSample]) -> str:
    lines = [
        "| push | region | event seq | event at (origin) | lag (gauge) | lag (cursor file) | /metrics reads |",
        "|--:|---|--:|---|--:|--:|--:|",
    ]
    lines.extend(
        f"| {s.repetition + 1} | {s.region} | {s.seq} | {s.at} | "
        f"{'-' if s.lag is None else msf(s.lag)} | "
        f"{'-' if s.file_lag is None else msf(s.file_lag)} | {s.polls} |"
        for s in samples
    )
    return "\n".join(lines)


def lag_distribution(lags: list[float]) -> str:
    """How many of the lags fell under each bound (the edge's histogram's buckets)."""
    bounds = (0.05, 0.1, 0.25, 0.5, 1, 2, 5)
    parts = [f"<= {b} s: {sum(v <= b for v in lags)}" for b in bounds]
    return ", ".join(parts) + f", all: {len(lags)}"


def push_markdown(
    r: PushResults,
    origin: Server,
    args: argparse.Namespace,
    started: datetime.datetime,
    elapsed: float,
) -> str:
    quick = (
        f"**--quick run: {args.ack_repeats} pushes each, {args.lag_pushes} replication "
        f"pushes, {args.prefetch_pushes} per region; not for the record.**"
    )
    return f"""# Wharf benchmark results: pushes through an edge, replication and prefetch lag

{run_header(args, started, elapsed, quick)}

Three measurements with one origin and two edges, all real processes on loopback, token auth
on: (1) how long a push takes to be acknowledged at an edge that accepts pushes against at the
origin directly (aim: the edge no slower); (2) how long after the edge's acknowledgement the
origin has the push (aim: p99 < {LAG_AIM:.0f} s over {r.lag.pushes} pushes); (3) how long after a
push to the origin each region's edge has processed it (prefetched what the rule names).

CPU pinning: the origin and both edges run under `taskset -c {SERVER_CPU}` (CPU {SERVER_CPU}):
three servers share one core, so an edge's acknowledgement, its replication to the origin and
the origin's own work take turns there; skopeo runs under `taskset -c {CLIENT_CPU}`, and the
benchmark's own process (the aiohttp pushers and every poller) is pinned to CPU {CLIENT_CPU}.

Servers: {origin.version}.

- **origin**: `wharf origin serve --listen 127.0.0.1:0 --data-dir DIR`, every default (token
  auth on, SQLite, filesystem blobs), plus `WHARF_ORIGIN_TOKEN_TTL_SECONDS=86400` and
  `WHARF_ORIGIN_REPLICATORS={REPLICATOR}`. The account `{REPLICATOR}` is created through
  `POST /api/v1/users` (admin Basic), and two replication rules through
  `POST /api/v1/replication/rules`: `eu-team/*` for region `eu`, `us-team/*` for region `us`.
- **edges** `eu` and `us`: `wharf edge serve --config edge-R.toml --listen 127.0.0.1:PORT
  --origin ORIGIN --data-dir DIR --cache-size 20GiB`, with `WHARF_EDGE_REPLICATION_USERNAME={REPLICATOR}`
  and `WHARF_EDGE_REPLICATION_PASSWORD` in the environment (so each accepts pushes and
  follows the origin's event feed for its region), and `edge-R.toml`:

  ```toml
  [edge]
  node_id = "edge-R"
  region = "R"
  zone = "R"
  advertise_url = "http://127.0.0.1:PORT"
  swarm = false             # every blob here is far below swarm_threshold_bytes
  ```

  every other setting default. Measurements 1 and 2 push to `eu`.

## Aims

{aims_table(r)}

## 1. Acknowledgement of a push

{ack_table(r.acks)}

`skopeo copy --quiet --insecure-policy --dest-tls-verify=false --dest-creds admin:PASSWORD
oci:LAYOUT:v1 docker://HOST/bench/ack-LABEL:v1` (Debian's skopeo, {tool_version("skopeo")}), timed
from start to exit, {args.ack_repeats} times to each, alternating (origin first in odd
repetitions, the edge first in even ones), after one untimed warm-up push to each. Each push
is a new OCI layout with three fresh layers of random bytes (8 MiB, 1 MiB, 64 KiB, in tar,
gzipped up front) to a new repository, so nothing is at either server before; skopeo runs in a
private mount namespace with an empty blob info cache (as in the main run). Both servers send
skopeo to the origin's `/auth/token` for its token. After each edge push (untimed), the run
polls the origin (`HEAD` of the tag every 5 ms) until it has the pushed manifest, and waits
until the edge's `wharf_edge_replication_pending` is 0, so no replication overlaps the next
push. edge / origin: per repetition, then the median.

{ack_detail(r.acks)}

## 2. Replication lag

{lag_table(r.lag)}

Lag per push, by the edge histogram's bounds: {lag_distribution(r.lag.lags)}.

{r.lag.pushes} images (a config and three uncompressed tar layers of 16 KiB, 4 KiB and 1 KiB
random bytes each) pushed to `{LAG_REPO}` at the `eu` edge, back to back, one at a time,
through the OCI API from one aiohttp client (each blob `POST /v2/{LAG_REPO}/blobs/uploads/`
then `PUT ?digest=`, then `PUT /v2/{LAG_REPO}/manifests/tNNN`, a new tag each), with the
admin's bearer token. The pushes do not wait for replication: the edge's replicator carries
them one after another (one repository's pushes in push order) while more come. Beside the
pusher, one poller task in the same process watches the oldest push not yet seen at the
origin: `HEAD /v2/{LAG_REPO}/manifests/tNNN` every 5 ms until the origin answers 200 with the
pushed digest in `Docker-Content-Digest`, then at once the next push's tag, and so on. A push's
lag is from its manifest's 201 (as the client received it) until that answer: up to 5 ms plus
one HEAD late. One poller in push order rather than one per pending push: with a backlog, a
poller per push would send the origin a HEAD per pending push every 5 ms (thousands a second),
on the core it shares with the edge, and slow down what it measures (a first smoke run did
so: tens of pushes pending, seconds of lag); a push that reached the origin before an older
one would be timed late, never early. p50/p90/p99 are nearest-rank. The edge's own
`wharf_edge_replication_lag_seconds` (the delta over these pushes) is the cross-check.

## 3. Prefetch lag per region

{prefetch_table(r)}

{args.prefetch_pushes} images per region (the same small kind as in 2) pushed to the origin
directly, alternately to `eu-team/app` and `us-team/app` (a new tag `pNNN` each), one at a
time. For each: the blobs are uploaded, a watcher starts reading the region's edge's
`/metrics` every 5 ms, the manifest is PUT; from its 201, the push's event seq is read from
`GET /api/v1/replication/events?region=R&after=PREVIOUS` (the admin's `api:v1:*` bearer token),
and the lag is from the 201 until the watcher first saw `wharf_edge_prefetch_cursor` >= that
seq. The edge moves its cursor after it has applied the page of events: the manifest fetched,
every blob in its cache, the tag set. So the lag is a prefetch complete, up to one /metrics
read (median time in the table) plus 5 ms late. Cross-checks: the same watcher reads the
cursor file the edge writes just before it sets the gauge (`DATA_DIR/feed-cursor`) every
{FILE_POLL * 1000:.0f} ms, at no cost to the edge ("cursor file"); the edge's own
`wharf_edge_prefetch_lag_seconds` (from the event's `at` at the origin until applied; delta
over these pushes); the edge's `wharf_edge_prefetch_objects_total` against what was pushed
(one manifest and four blobs per push). "one /metrics read": its median time during the
watch, and the edge's CPU time per read (50 reads back to back before the measurement): the
watcher's load on the edge's core.

{prefetch_detail(r.prefetch)}

## Notes

{observations(r)}
- Three servers on one core: while the edge replicates, the origin receiving the replication
  and the other edge's feed requests compete with it for CPU {SERVER_CPU}; separate machines
  would have no such contention (and a real network's latency instead).
- Logins: the origin checks a password with argon2 (~100 ms of CPU) and remembers a success
  for 60 s; skopeo's token requests and the edges' replicator account pay it once a minute,
  so an occasional sample carries it.
- The pollers add load on CPU {SERVER_CPU}: a HEAD at the origin every 5 ms while a push is
  pending (measurement 2), a /metrics read at one edge every 5 ms while a push is watched
  (measurement 3; its CPU cost per read is in the table).
- The origin does not stop on SIGTERM while an edge's event-feed request is held: it drains
  in-flight requests first, and a held feed request (the edges ask to wait 15 s, the origin
  holds at most `feed_max_wait_seconds`, 20 s) runs on after its edge has gone; the run
  SIGKILLs the origin after 10 s, once everything is measured.
"""


def tool_version(tool: str) -> str:
    with contextlib.suppress(OSError, RuntimeError):
        return run([tool, "--version"]).strip()
    return "version unknown"
