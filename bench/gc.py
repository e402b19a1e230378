"""``bench/run.py --gc``: what continuous online garbage collection costs the origin.

All real processes on loopback, token auth on, every origin (and PostgreSQL) under
``taskset -c 0``, the benchmark's own process (every aiohttp client) on CPU 1. Two parts:

1. **Throughput with GC off vs on.** Two origins on SQLite, alike but for the timer:
   ``off`` (``gc_interval_seconds = 0``: no pass ever) and ``on`` (``gc_interval_seconds = 1``:
   a pass every second, back to back when a pass takes longer), both with
   ``gc_grace_seconds = 20`` (longer than the slowest push) and the namespace's time-machine
   window at 0, so what the workload leaves behind really is garbage 20 seconds later and the ``on`` origin's passes
   delete it as it goes. Only the origin under load runs: the other one is stopped
   (``SIGSTOP``) meanwhile, so its timer steals nothing from the sample. Three workloads, their
   repetitions interleaved (off, on; on, off; ...):

   - **push**: fresh small images (a 4 KiB random layer, its config, its manifest: two
     monolithic ``POST ?digest=`` and a manifest ``PUT``), 8 images at a time, moving 16 tags
     round-robin: every push leaves the manifest it untags, its layer and its config behind;
   - **pull**: 16 stable tagged images (a 1 MiB layer each), 16 pullers each looping over
     them: manifest ``GET`` by tag, then its config and layer, for a fixed time;
   - **mixed**: both at once (the pullers run until the push is done): GC under load.

   Around every sample the origin's ``/metrics`` say how many passes ran and what they deleted.

2. **Time per 10,000 manifests.** A fresh origin (GC timer off, ``gc_grace_seconds = 2``) gets
   10,000 images pushed (one 4 KiB layer shared by all, a config of its own each) into 4
   repositories, 16 tags each, every push moving a tag: with the default time-machine window
   (14 days) every one stays reachable through its tag's history. Then ``POST /api/v1/gc``:
   (a) everything reachable (the walk), 3 passes; (b) the window set to 0, so all but the 64
   tagged manifests are unreachable: the pass that deletes them (and their links and history,
   and tombstones their configs); (c) past the grace again: the pass that deletes the
   tombstoned blobs' bytes. On SQLite, then on PostgreSQL (the test suite's throwaway server,
   as ``--replicas`` starts it) with 2,000 images only (seeding is what takes the time: about
   27 ms of the origin's CPU per image), its times scaled to 10,000.

``run.py`` loads this module for ``--gc`` only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import json
import os
import shutil
import signal
import sqlite3
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.replicas import (
    CONCURRENCY,
    SMALL_LAYER_BYTES,
    TIMEOUT,
    client_cpu,
    in_flight,
    indent,
    mid,
    postgres_cpu,
    postgres_options,
    small_images,
    start_postgres,
)
from bench.run import (
    CLIENT_CPU,
    OCI_CONFIG,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    REPO,
    SERVER_CPU,
    MiB,
    Server,
    busy_between,
    cpu_times,
    descriptor,
    image,
    log,
    prometheus_samples,
    report,
    run,
    run_header,
    running,
    sample_value,
    sha256_bytes,
    start_run,
    tool_versions,
    wait_ready,
    wharf_origin,
    wharf_version,
)
from tests.postgres import PostgresServer

NAMESPACE = REPO.split("/", 1)[0]  # "bench": an organization the run creates
GRACE = 2.0  # gc_grace_seconds of part 2's origins (a day in production)
# Part 1's: longer than its slowest push from first blob to manifest (the mixed workload's
# p99 is ~9 s): a push slower than the grace is refused (MANIFEST_BLOB_UNKNOWN), by design.
LOAD_GRACE = 20.0
INTERVAL = 1.0  # the "on" origin's gc_interval_seconds (300 by default)
MOVING_TAGS = 16  # the push workload's tags, moved round-robin
STABLE_TAGS = 16  # the pull workload's images, never moved
PULL_LAYER_BYTES = 1 * MiB
PULLERS = 16  # concurrent pull loops (pull alone)
MIXED_PULLERS = 4  # beside the push (mixed): more would starve the push
SEED_REPOSITORIES = 4
SEED_TAGS = 16  # per seed repository
WALKS = 3  # passes with everything reachable
CT_BLOB = {"Content-Type": "application/octet-stream"}
API_TIMEOUT = aiohttp.ClientTimeout(total=3600)  # a pass over 10,000 manifests takes a while


def sizes(args: argparse.Namespace) -> None:
    """The run's sizes: ``--quick`` shrinks it to a smoke test."""
    if args.quick:
        args.repeats, args.images, args.mixed_images, args.pull_seconds = 1, 60, 30, 2.0
        args.manifests, args.pg_manifests = 400, 200
    else:
        args.repeats, args.images, args.mixed_images, args.pull_seconds = 3, 200, 100, 5.0
        # Seeding costs the origin about 27 ms of CPU per image (one config POST, one manifest
        # PUT): 10,000 take 4-5 minutes, so PostgreSQL gets fewer, its times scaled.
        args.manifests, args.pg_manifests = 10_000, 2_000


# --------------------------------------------------------------------------- origins


@dataclass
class Origin:
    key: str
    label: str
    server: Server
    password: str
    config_text: str
    database: str  # "SQLite" or "PostgreSQL"
    headers: dict[str, str] = field(default_factory=dict)  # the bearer token for /v2/

    @property
    def admin(self) -> dict[str, str]:
        """Basic auth as the admin, for /api/v1/."""
        return {"Authorization": aiohttp.encode_basic_auth("admin", self.password)}


def origin_config(interval: float, grace: float, database_url: str) -> str:
    return (
        "# generated by bench/gc.py\n"
        "[origin]\n"
        + (f'database_url = "{database_url}"\n' if database_url else "")
        + f"gc_interval_seconds = {interval:.1f}\n"
        f"gc_grace_seconds = {grace:.1f}\n"
    )


def start_origin(
    key: str,
    label: str,
    interval: float,
    database_url: str,
    repositories: list[str],
    scratch: Path,
    version: str,
    stack: contextlib.ExitStack,
    grace: float = GRACE,
) -> Origin:
    """``wharf origin serve --config`` with these GC settings (``database_url`` "": SQLite),
    ready; the organization NAMESPACE made; the admin's token for ``repositories``."""
    folder = scratch / key
    folder.mkdir(parents=True)
    config = folder / "origin.toml"
    config.write_text(origin_config(interval, grace, database_url))
    server = wharf_origin(key, folder / "data", version)
    server.argv += ["--config", str(config)]
    stack.enter_context(running({key: server}, scratch))
    # Whatever else happens, a stopped origin gets SIGCONT before it is asked to stop.
    stack.callback(signal_group, server, signal.SIGCONT)
    wait_ready(server)
    password = (folder / "data" / "admin-password").read_text().strip()
    origin = Origin(
        key,
        label,
        server,
        password,
        config.read_text(),
        "PostgreSQL" if database_url else "SQLite",
    )
    asyncio.run(api(origin, "POST", "/organizations", {"name": NAMESPACE}, expect=201))
    origin.headers = asyncio.run(token(origin, repositories))
    return origin


async def api(
    origin: Origin, method: str, path: str, body: object = None, expect: int = 200
) -> Any:
    """``/api/v1`` + ``path`` as the admin; the response's JSON."""
    url = f"{origin.server.url}/api/v1{path}"
    async with (
        aiohttp.ClientSession(timeout=API_TIMEOUT) as http,
        http.request(method, url, json=body, headers=origin.admin) as r,
    ):
        text = await r.text()
        if r.status != expect:
            raise RuntimeError(f"{origin.key}: {method} {url} -> {r.status} {text}")
        return json.loads(text) if text else None


async def token(origin: Origin, repositories: list[str]) -> dict[str, str]:
    """The admin's bearer token for pull and push on ``repositories``."""
    params = [("service", "wharf")] + [("scope", f"repository:{r}:pull,push") for r in repositories]
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.get(f"{origin.server.url}/auth/token", params=params, headers=origin.admin) as r,
    ):
        if r.status != 200:
            raise RuntimeError(f"{origin.key}: token -> {r.status} {await r.text()}")
        return {"Authorization": f"Bearer {(await r.json())['token']}"}


async def set_window(origin: Origin, seconds: int) -> None:
    await api(origin, "PUT", f"/namespaces/{NAMESPACE}/time-machine", {"seconds": seconds})


def signal_group(server: Server, signum: int) -> None:
    if server.proc is not None and server.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signum)


@contextlib.contextmanager
def alone(active: Origin, origins: list[Origin]) -> Iterator[None]:
    """Only ``active`` runs: every other origin is stopped (SIGSTOP) until the block ends."""
    others = [o for o in origins if o is not active]
    for other in others:
        signal_group(other.server, signal.SIGSTOP)
    signal_group(active.server, signal.SIGCONT)
    try:
        yield
    finally:
        for other in others:
            signal_group(other.server, signal.SIGCONT)


async def post_blob(
    http: aiohttp.ClientSession, base: str, repo: str, digest: str, body: bytes
) -> None:
    """A monolithic upload: ``POST /v2/<repo>/blobs/uploads/?digest=`` with the whole blob."""
    url = f"{base}/v2/{repo}/blobs/uploads/?digest={digest}"
    async with http.post(url, data=body, headers=CT_BLOB) as r:
        if r.status != 201:
            raise RuntimeError(f"POST {url} -> {r.status} {await r.text()}")


async def put_manifest(
    http: aiohttp.ClientSession, base: str, repo: str, tag: str, manifest: bytes
) -> None:
    url = f"{base}/v2/{repo}/manifests/{tag}"
    async with http.put(url, data=manifest, headers={"Content-Type": OCI_MANIFEST}) as r:
        if r.status != 201:
            raise RuntimeError(f"PUT {url} -> {r.status} {await r.text()}")


Image = tuple[bytes, bytes, list[bytes]]  # config, manifest, layers (bench.run.image)


async def push_one(http: aiohttp.ClientSession, base: str, repo: str, tag: str, img: Image) -> None:
    config, manifest, layers = img
    for blob in (*layers, config):
        await post_blob(http, base, repo, sha256_bytes(blob), blob)
    await put_manifest(http, base, repo, tag, manifest)


# --------------------------------------------------------------------------- part 1: samples


@dataclass(frozen=True)
class Push:
    images: int
    seconds: float
    latencies: tuple[float, ...]  # per image: its two blobs and its manifest

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class Pull:
    pulls: int
    requests: int
    bytes: int
    seconds: float


@dataclass(frozen=True)
class Sample:
    setup: str  # "off" or "on"
    kind: str  # "push", "pull", "mixed"
    repetition: int
    position: int  # place of the setup in this repetition's order
    wall: float
    push: Push | None
    pull: Pull | None
    origin_cpu: float  # CPU seconds of the origin's processes
    client_cpu: float  # of this process and its waited-for children
    busy: dict[str, float]  # each core's non-idle share
    gc: dict[str, float]  # what the origin's GC counters moved by; "last": last pass's seconds

    def value(self, unit: str) -> float:
        if unit == "images/s":
            assert self.push is not None
            return self.push.images / self.push.seconds
        assert self.pull is not None
        if unit == "pulls/s":
            return self.pull.pulls / self.pull.seconds
        if unit == "req/s":
            return self.pull.requests / self.pull.seconds
        assert unit == "MB/s"
        return self.pull.bytes / self.pull.seconds / 1e6

    def cores(self, who: str) -> float:
        return (self.origin_cpu if who == "origin" else self.client_cpu) / self.wall


async def gc_counters(server: Server) -> dict[str, float]:
    found = await prometheus_samples(server, "wharf_origin_gc_")
    deleted = "wharf_origin_gc_deleted_total"
    return {
        "passes": sample_value(found, "wharf_origin_gc_passes_total"),
        "manifests": sample_value(found, deleted, kind="manifest"),
        "links": sample_value(found, deleted, kind="link"),
        "blobs": sample_value(found, deleted, kind="blob"),
        "bytes": sample_value(found, "wharf_origin_gc_freed_bytes_total"),
        "last": sample_value(found, "wharf_origin_gc_last_pass_seconds"),
    }


async def push_images(
    http: aiohttp.ClientSession, base: str, images: list[Image], tags: list[str]
) -> Push:
    """Image i by tag ``tags[i]``, CONCURRENCY images at a time."""
    latencies: list[float] = []
    start = time.perf_counter()

    async def push(i: int) -> None:
        began = time.perf_counter()
        await push_one(http, base, REPO, tags[i], images[i])
        latencies.append(time.perf_counter() - began)

    await in_flight(len(images), push)
    return Push(len(images), time.perf_counter() - start, tuple(latencies))


async def pull_one(
    http: aiohttp.ClientSession, base: str, stable: list[Image], i: int, counts: dict[str, int]
) -> None:
    """Stable image i: its manifest by tag (bytes checked), its config and layer (statuses and
    lengths checked)."""

    async def get(url: str, headers: dict[str, str] | None = None) -> bytes:
        async with http.get(url, headers=headers) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"GET {url} -> {r.status} {body[:200]!r}")
        counts["requests"] += 1
        counts["bytes"] += len(body)
        return body

    config, manifest, layers = stable[i]
    url = f"{base}/v2/{REPO}/manifests/stable-{i + 1:02}"
    if await get(url, {"Accept": OCI_MANIFEST}) != manifest:
        raise RuntimeError(f"GET {url}: another manifest")
    for blob in (config, *layers):
        url = f"{base}/v2/{REPO}/blobs/{sha256_bytes(blob)}"
        if len(await get(url)) != len(blob):
            raise RuntimeError(f"GET {url}: wrong length")
    counts["pulls"] += 1


async def pull_until(
    http: aiohttp.ClientSession, base: str, stable: list[Image], done: asyncio.Event, loops: int
) -> Pull:
    """``loops`` loops, each pulling the next stable image (:func:`pull_one`) until ``done``."""
    counts = {"pulls": 0, "requests": 0, "bytes": 0}
    turn = iter(range(1 << 62))

    async def puller() -> None:
        while not done.is_set():
            await pull_one(http, base, stable, next(turn) % len(stable), counts)

    start = time.perf_counter()
    await asyncio.gather(*(puller() for _ in range(loops)))
    return Pull(counts["pulls"], counts["requests"], counts["bytes"], time.perf_counter() - start)


async def workload(
    origin: Origin,
    kind: str,
    stable: list[Image],
    images: list[Image],
    tags: list[str],
    seconds: float,
) -> tuple[Push | None, Pull | None]:
    base = origin.server.url
    async with aiohttp.ClientSession(timeout=TIMEOUT, headers=origin.headers) as http:
        if kind == "push":
            return await push_images(http, base, images, tags), None
        done = asyncio.Event()
        if kind == "pull":
            asyncio.get_running_loop().call_later(seconds, done.set)
            return None, await pull_until(http, base, stable, done, PULLERS)
        pulls = asyncio.create_task(pull_until(http, base, stable, done, MIXED_PULLERS))
        try:
            pushed = await push_images(http, base, images, tags)
        finally:
            done.set()
        return pushed, await pulls


def sample(
    origin: Origin,
    kind: str,
    repetition: int,
    position: int,
    stable: list[Image],
    args: argparse.Namespace,
) -> Sample:
    """One sample of ``kind`` against ``origin`` (the pushes: fresh images, moving tags)."""
    count = {"push": args.images, "pull": 0, "mixed": args.mixed_images}[kind]
    images = small_images(count)
    tags = [f"moving-{i % MOVING_TAGS + 1:02}" for i in range(count)]
    server = origin.server
    gc0 = asyncio.run(gc_counters(server))
    cpu0, client0, jiffies0 = server.cpu_seconds(), client_cpu(), cpu_times()
    start = time.perf_counter()
    pushed, pulled = asyncio.run(workload(origin, kind, stable, images, tags, args.pull_seconds))
    wall = time.perf_counter() - start
    cpu1, client1, jiffies1 = server.cpu_seconds(), client_cpu(), cpu_times()
    gc1 = asyncio.run(gc_counters(server))
    if not server.alive():
        raise RuntimeError(f"{server.name} died during {kind}:\n{server.log_tail()}")
    moved = {k: gc1[k] - gc0[k] for k in gc1 if k != "last"}
    moved["last"] = gc1["last"]
    return Sample(
        origin.key,
        kind,
        repetition,
        position,
        wall,
        pushed,
        pulled,
        cpu1 - cpu0,
        client1 - client0,
        busy_between(jiffies0, jiffies1),
        moved,
    )


def seed_stable(origin: Origin) -> list[Image]:
    """STABLE_TAGS images of a random 1 MiB layer, tagged ``stable-NN``, and read back."""
    stable = [image([os.urandom(PULL_LAYER_BYTES)]) for _ in range(STABLE_TAGS)]

    async def seed() -> None:
        base = origin.server.url
        async with aiohttp.ClientSession(timeout=TIMEOUT, headers=origin.headers) as http:
            for i, img in enumerate(stable):
                await push_one(http, base, REPO, f"stable-{i + 1:02}", img)
            counts = {"pulls": 0, "requests": 0, "bytes": 0}
            for i in range(len(stable)):  # read back (and into the page cache)
                await pull_one(http, base, stable, i, counts)

    asyncio.run(seed())
    return stable


KINDS = ("push", "pull", "mixed")


def throughput(
    scratch: Path, version: str, args: argparse.Namespace
) -> tuple[list[Sample], list[Origin]]:
    """Part 1: the "off" and "on" origins, every workload interleaved between them."""
    samples: list[Sample] = []
    with contextlib.ExitStack() as stack:
        origins = [
            start_origin("off", "GC off", 0.0, "", [REPO], scratch, version, stack, LOAD_GRACE),
            start_origin("on", "GC on", INTERVAL, "", [REPO], scratch, version, stack, LOAD_GRACE),
        ]
        for origin in origins:
            asyncio.run(set_window(origin, 0))
        stable = {}
        for origin in origins:
            with alone(origin, origins):
                stable[origin.key] = seed_stable(origin)
        log("part 1: origins up (off, on), stable images pushed and read back")
        for rep in range(args.repeats):
            order = origins if rep % 2 == 0 else origins[::-1]
            for kind in KINDS:
                for position, origin in enumerate(order):
                    with alone(origin, origins):
                        s = sample(origin, kind, rep, position, stable[origin.key], args)
                    samples.append(s)
                    log(describe(s, args))
    return samples, origins


def describe(s: Sample, args: argparse.Namespace) -> str:
    parts = []
    if s.push is not None:
        parts.append(
            f"push {s.value('images/s'):6.1f} images/s (p50 {s.push.quantile(0.5) * 1e3:.0f} ms, "
            f"p99 {s.push.quantile(0.99) * 1e3:.0f} ms)"
        )
    if s.pull is not None:
        parts.append(f"pull {s.value('req/s'):6.0f} req/s {s.value('MB/s'):5.0f} MB/s")
    gc = s.gc
    return (
        f"{s.kind:5} {s.repetition + 1}/{args.repeats} {s.setup:3}: {'; '.join(parts)}; "
        f"CPU {SERVER_CPU} {s.busy.get(f'cpu{SERVER_CPU}', 0):.0%}, CPU {CLIENT_CPU} "
        f"{s.busy.get(f'cpu{CLIENT_CPU}', 0):.0%}; GC: {gc['passes']:.0f} passes, deleted "
        f"{gc['manifests']:.0f} manifests, {gc['links']:.0f} links, {gc['blobs']:.0f} blobs"
    )


# --------------------------------------------------------------------------- part 2: passes


@dataclass(frozen=True)
class Pass:
    step: str  # "walk", "delete", "sweep"
    done: dict[str, float]  # the API's answer
    wall: float  # the POST's, as the client saw it
    origin_cpu: float
    postgres_cpu: float | None


@dataclass(frozen=True)
class Collection:
    """Part 2 on one database."""

    origin: Origin
    manifests: int
    seed_seconds: float
    seed_cpu: float  # the origin's CPU seconds while seeding (and PostgreSQL's)
    passes: list[Pass]
    postgres: str = ""  # version and options, PostgreSQL only


def seed_repository(i: int) -> str:
    return f"{NAMESPACE}/seed-{i % SEED_REPOSITORIES + 1}"


async def seed_manifests(origin: Origin, count: int) -> float:
    """``count`` images (one shared 4 KiB layer, a config of their own) by tag, image i into
    repository i mod 4, moving its tags round-robin; CONCURRENCY at a time. Seconds taken."""
    layer = os.urandom(SMALL_LAYER_BYTES)
    layer_digest = sha256_bytes(layer)
    base = origin.server.url
    async with aiohttp.ClientSession(timeout=TIMEOUT, headers=origin.headers) as http:
        for r in range(SEED_REPOSITORIES):
            await post_blob(http, base, seed_repository(r), layer_digest, layer)
        start = time.perf_counter()

        async def push(i: int) -> None:
            config = json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "config": {"Labels": {"bench.seq": str(i)}},
                    "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
                },
                sort_keys=True,
            ).encode()
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": descriptor(OCI_CONFIG, config),
                    "layers": [descriptor(OCI_LAYER_TAR, layer)],
                },
                sort_keys=True,
            ).encode()
            repo = seed_repository(i)
            await post_blob(http, base, repo, sha256_bytes(config), config)
            tag = f"t{(i // SEED_REPOSITORIES) % SEED_TAGS + 1:02}"
            await put_manifest(http, base, repo, tag, manifest)
            if (i + 1) % 2000 == 0:
                rate = (i + 1) / (time.perf_counter() - start)
                log(f"{origin.key}: {i + 1}/{count} images pushed ({rate:.0f}/s)")

        await in_flight(count, push)
        return time.perf_counter() - start


def collect(origin: Origin, step: str, postmaster: int | None) -> Pass:
    """``POST /api/v1/gc``: one pass now, timed."""
    server = origin.server
    cpu0 = server.cpu_seconds()
    pg0 = postgres_cpu(postmaster) if postmaster is not None else None
    start = time.perf_counter()
    done = asyncio.run(api(origin, "POST", "/gc"))
    wall = time.perf_counter() - start
    pg = postgres_cpu(postmaster) - pg0 if postmaster is not None and pg0 is not None else None
    found = Pass(
        step, {k: float(v) for k, v in done.items()}, wall, server.cpu_seconds() - cpu0, pg
    )
    log(
        f"{origin.key}: {step:6} pass {found.done['seconds']:.2f} s (wall {wall:.2f} s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in found.done.items() if k != "seconds")
    )
    return found


def past_grace() -> None:
    time.sleep(GRACE + 0.5)


def collection(
    key: str,
    label: str,
    database_url: str,
    postmaster: int | None,
    count: int,
    scratch: Path,
    version: str,
    postgres: str = "",
) -> Collection:
    """Part 2 on one fresh origin: ``count`` images seeded, then the walk, delete and sweep
    passes."""
    repositories = [seed_repository(r) for r in range(SEED_REPOSITORIES)]
    with contextlib.ExitStack() as stack:
        origin = start_origin(key, label, 0.0, database_url, repositories, scratch, version, stack)
        log(f"{key}: seeding {count} manifests")
        cpu0 = origin.server.cpu_seconds() + (postgres_cpu(postmaster) if postmaster else 0.0)
        seconds = asyncio.run(seed_manifests(origin, count))
        cpu = origin.server.cpu_seconds() + (postgres_cpu(postmaster) if postmaster else 0.0) - cpu0
        log(
            f"{key}: {count} images in {seconds:.0f} s ({count / seconds:.0f}/s, "
            f"{cpu / count * 1e3:.1f} ms of server CPU per image)"
        )
        past_grace()
        passes = [collect(origin, "walk", postmaster) for _ in range(WALKS)]
        asyncio.run(set_window(origin, 0))  # every ended tag state: out of the window
        passes.append(collect(origin, "delete", postmaster))
        past_grace()
        passes.append(collect(origin, "sweep", postmaster))
        if not origin.server.alive():
            raise RuntimeError(f"{key} died:\n{origin.server.log_tail()}")
    return Collection(origin, count, seconds, cpu, passes, postgres)


def postgres_collection(scratch: Path, version: str, args: argparse.Namespace) -> Collection:
    pg = PostgresServer()
    with contextlib.ExitStack() as stack:
        postmaster, cpus = start_postgres(pg)
        stack.callback(pg.stop)
        described = (
            f"{run([str(pg.bin / 'postgres'), '--version']).strip()}, started with "
            f"`{postgres_options(pg)}`, postmaster on CPUs {cpus}"
        )
        log(f"PostgreSQL up: {described}")
        url = asyncio.run(pg.new_database())
        return collection(
            "postgresql",
            "PostgreSQL",
            url,
            postmaster,
            args.pg_manifests,
            scratch,
            version,
            described,
        )


# --------------------------------------------------------------------------- report

ROWS = (
    ("push", "push alone: small images, 8 at a time", "images/s"),
    ("pull", "pull alone: manifest by tag + config + 1 MiB layer, 16 pullers", "pulls/s"),
    ("pull", "pull alone", "req/s"),
    ("pull", "pull alone", "MB/s"),
    ("mixed", "push and pull at once: the push", "images/s"),
    ("mixed", "push and pull at once: the pull", "req/s"),
    ("mixed", "push and pull at once: the pull", "MB/s"),
)


def of(samples: list[Sample], setup: str, kind: str) -> list[Sample]:
    return sorted(
        (s for s in samples if s.setup == setup and s.kind == kind), key=lambda s: s.repetition
    )


def on_off(samples: list[Sample], kind: str, unit: str) -> list[float]:
    """On over off, per repetition."""
    off = {s.repetition: s.value(unit) for s in of(samples, "off", kind)}
    return [
        s.value(unit) / off[s.repetition] for s in of(samples, "on", kind) if off.get(s.repetition)
    ]


def throughput_table(samples: list[Sample]) -> str:
    lines = [
        "| workload | unit | GC off | GC on | on / off | lost with GC on |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for kind, label, unit in ROWS:
        fmt = "{:.1f}" if unit in ("images/s", "pulls/s") else "{:.0f}"
        cells = [
            mid([s.value(unit) for s in of(samples, setup, kind)], fmt) for setup in ("off", "on")
        ]
        ratios = on_off(samples, kind, unit)
        lost = f"{(1 - statistics.median(ratios)):.1%}" if ratios else "-"
        lines.append(
            f"| {label} | {unit} | {' | '.join(cells)} | {mid(ratios, '{:.3f}')} | {lost} |"
        )
    return "\n".join(lines)


def gc_work_table(samples: list[Sample]) -> str:
    lines = [
        "| workload | setup | samples | passes | manifests deleted | links deleted | "
        "blobs deleted | MB freed | last pass (s) |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for kind in KINDS:
        for setup in ("off", "on"):
            found = of(samples, setup, kind)
            total = {
                k: sum(s.gc[k] for s in found)
                for k in ("passes", "manifests", "links", "blobs", "bytes")
            }
            lines.append(
                f"| {kind} | {setup} | {len(found)} | {total['passes']:.0f} | "
                f"{total['manifests']:.0f} | {total['links']:.0f} | {total['blobs']:.0f} | "
                f"{total['bytes'] / 1e6:.1f} | {mid([s.gc['last'] for s in found], '{:.3f}')} |"
            )
    return "\n".join(lines)


def cpu_table(samples: list[Sample]) -> str:
    lines = [
        f"| workload | setup | CPU {SERVER_CPU} busy | CPU {CLIENT_CPU} busy | origin, cores | "
        "client, cores | origin CPU per image pushed | push p50 / p99 per image |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for kind in KINDS:
        for setup in ("off", "on"):
            found = of(samples, setup, kind)
            pushes = [s.push for s in found if s.push is not None]
            per_image = (
                mid([s.origin_cpu / s.push.images * 1e3 for s in found if s.push], "{:.1f}") + " ms"
                if kind == "push"
                else "-"
            )
            latency = (
                f"{mid([p.quantile(0.5) * 1e3 for p in pushes])} / "
                f"{mid([p.quantile(0.99) * 1e3 for p in pushes])} ms"
                if pushes
                else "-"
            )
            lines.append(
                f"| {kind} | {setup} | "
                f"{mid([s.busy.get(f'cpu{SERVER_CPU}', 0) * 100 for s in found])}% | "
                f"{mid([s.busy.get(f'cpu{CLIENT_CPU}', 0) * 100 for s in found])}% | "
                f"{mid([s.cores('origin') for s in found], '{:.2f}')} | "
                f"{mid([s.cores('client') for s in found], '{:.2f}')} | {per_image} | {latency} |"
            )
    return "\n".join(lines)


def detail_table(samples: list[Sample]) -> str:
    lines = [
        "| workload | setup | repetition (place) | s | images/s | pulls/s | req/s | MB/s | "
        "GC passes | deleted: manifests, links, blobs |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for kind in KINDS:
        for s in sorted(
            (s for s in samples if s.kind == kind), key=lambda s: (s.setup, s.repetition)
        ):
            push = f"{s.value('images/s'):.1f}" if s.push else "-"
            pull = (
                f"{s.value('pulls/s'):.1f} | {s.value('req/s'):.0f} | {s.value('MB/s'):.0f}"
                if s.pull
                else "- | - | -"
            )
            lines.append(
                f"| {kind} | {s.setup} | {s.repetition + 1} ({s.position + 1}) | {s.wall:.1f} | "
                f"{push} | {pull} | {s.gc['passes']:.0f} | {s.gc['manifests']:.0f}, "
                f"{s.gc['links']:.0f}, {s.gc['blobs']:.0f} |"
            )
    return "\n".join(lines)


STEPS = {
    "walk": ("(a) everything reachable: the walk", "manifests", "manifests walked"),
    "delete": ("(b) window 0: the pass that deletes them", "manifests", "manifests deleted"),
    "sweep": ("(c) a grace later: the pass that deletes the bytes", "blobs", "blobs deleted"),
}


def per_10k(c: Collection, p: Pass) -> tuple[float, str]:
    """Seconds per 10,000 of what the pass did, and what that is."""
    _, key, what = STEPS[p.step]
    count = c.manifests if p.step == "walk" else p.done[key]
    return (p.done["seconds"] * 10_000 / count if count else float("nan")), what


def collection_table(collections: list[Collection]) -> str:
    lines = [
        "| database | manifests in store | pass | seconds (server) | s per 10,000 | of what | "
        "manifests deleted | "
        "links | history | tombstoned | blobs deleted | MB freed | wall (client) | "
        "origin CPU s | PostgreSQL CPU s |",
        "|---|--:|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for c in collections:
        for step in STEPS:
            found = [p for p in c.passes if p.step == step]
            label = STEPS[step][0] + (f", {len(found)} passes" if len(found) > 1 else "")
            what = per_10k(c, found[0])[1]
            d = {k: statistics.median(p.done[k] for p in found) for k in found[0].done}
            pg = (
                mid([p.postgres_cpu for p in found if p.postgres_cpu is not None], "{:.2f}")
                if c.origin.database == "PostgreSQL"
                else "-"
            )
            lines.append(
                f"| {c.origin.database} | {c.manifests} | {label} | {mid([p.done['seconds'] for p in found], '{:.2f}')} | "
                f"{mid([per_10k(c, p)[0] for p in found], '{:.2f}')} | {what} | "
                f"{d['manifests']:.0f} | {d['links']:.0f} | {d['history']:.0f} | "
                f"{d['tombstoned']:.0f} | {d['blobs']:.0f} | {d['bytes'] / 1e6:.1f} | "
                f"{mid([p.wall for p in found], '{:.2f}')} | "
                f"{mid([p.origin_cpu for p in found], '{:.2f}')} | {pg} |"
            )
    return "\n".join(lines)


def seeding_lines(collections: list[Collection]) -> str:
    return "\n".join(
        f"- {c.origin.database}: {c.manifests} images in {c.seed_seconds:.0f} s "
        f"({c.manifests / c.seed_seconds:.0f} images/s, {CONCURRENCY} at a time; "
        f"{c.seed_cpu / c.manifests * 1e3:.1f} ms of server CPU per image"
        + (", PostgreSQL's included" if c.postgres else "")
        + ")."
        for c in collections
    )


def versions_line(version: str, collections: list[Collection]) -> str:
    packages = ", ".join(
        f"{p} {importlib.metadata.version(p)}" for p in ("SQLAlchemy", "aiosqlite", "asyncpg")
    )
    pg = "; ".join(c.postgres for c in collections if c.postgres)
    return f"{version}; {packages}; SQLite {sqlite3.sqlite_version}; " + (
        f"PostgreSQL: {pg}" if pg else "no PostgreSQL"
    )


def gc_markdown(
    samples: list[Sample],
    origins: list[Origin],
    collections: list[Collection],
    version: str,
    started: datetime.datetime,
    elapsed: float,
    args: argparse.Namespace,
) -> str:
    quick = (
        f"**--quick run: {args.repeats} repetition, {args.images} images per push sample, "
        f"{args.pull_seconds:.0f}-s pulls, {args.manifests} manifests (PostgreSQL "
        f"{args.pg_manifests}); "
        "not for the record.**"
    )
    ratios = {(kind, unit): on_off(samples, kind, unit) for kind, _, unit in ROWS}
    worst = max(
        ((k, 1 - statistics.median(v)) for k, v in ratios.items() if v),
        key=lambda kv: kv[1],
        default=(("-", "-"), 0.0),
    )
    return f"""# Wharf benchmark results: continuous garbage collection

{run_header(args, started, elapsed, quick)}

Pull and push throughput of one origin with garbage collection running continuously against
the same origin with it off, and how long a pass takes per 10,000 manifests. The aim: under
5% of the throughput lost while GC runs.

Versions: {versions_line(version, collections)}; {tool_versions()["curl"]}.

CPU placement: every origin runs under `taskset -c {SERVER_CPU}` (PostgreSQL too: it was
started with the benchmark's thread pinned to CPU {SERVER_CPU}, so the postmaster and its
backends inherit it); the benchmark's own process (every aiohttp client) is pinned to CPU
{CLIENT_CPU}. In part 1 only the origin under load runs: the other is stopped with `SIGSTOP`
for the sample (and continued after), so its timer takes nothing from the sample's core.

## How to read this

**Part 1** compares two origins that differ only in `gc_interval_seconds`: **off** (0, no pass
ever) and **on** (1: a pass every second, back to back when a pass takes longer; at the
default of 300 s GC would run 1/300 as often). Both have `gc_grace_seconds = {LOAD_GRACE:.0f}` (a day
by default; longer than the slowest push here, since a push slower than the grace from its
first blob to its manifest is refused) and their namespace's time-machine window at 0, so
each push that moves a tag leaves garbage (the untagged manifest, its links, its two blobs)
that the **on** origin's passes delete {LOAD_GRACE:.0f} seconds later, while the workload
runs (repetitions follow each other, so each sample collects earlier samples' garbage); the
GC table shows how much they deleted.
The **on / off** ratio is taken per repetition (same repetition, on over off), then its median
(min-max) shown; **lost** is 1 minus that median (negative: on was faster, i.e. noise). The
largest loss here: {worst[0][0]} {worst[0][1]}, {worst[1]:.1%}. Repetitions on this VM move by
several percent from one to the next: read a loss of a few percent next to the min-max of
its ratio. The **off** origin keeps all its garbage, so its store grows over the run (to about
{args.repeats * (args.images + args.mixed_images) + STABLE_TAGS} manifests in `{REPO}`), while the
**on** origin's stays small: part of what GC is for.

**Part 2** times `POST /api/v1/gc` (the pass's own `seconds`, measured in the origin) on a
fresh origin with GC's timer off holding {args.manifests} manifests on SQLite
({args.pg_manifests} on PostgreSQL: seeding costs the origin about 27 ms of CPU per image, so
10,000 more would add 5 minutes to the run): (a) all reachable (the cost
of walking them: every repository's manifests, tags and tag history read, nothing deleted);
(b) after the namespace's window is set to 0, the pass that deletes all but the 64 tagged ones
(manifests, their config links, their tag history; their configs tombstoned); (c) a grace
period later, the pass that deletes the tombstoned blobs' bytes (100 blobs to a transaction,
16 deletions at a time). **s per 10,000** scales the pass's seconds to 10,000 of what it did (manifests walked,
manifests deleted, blobs deleted).

## Part 1: throughput, GC off vs on

{throughput_table(samples)}

Median (min-max) over {args.repeats} repetition(s).

What GC did during the samples (from the origins' `/metrics`, counters' increase over each
sample, summed over the repetitions; **last pass**: `wharf_origin_gc_last_pass_seconds` at the
end of each sample, median (min-max)):

{gc_work_table(samples)}

CPU (medians over the repetitions; **cores**: CPU seconds per wall second of the origin's
processes and of the benchmark's own process; **CPU N busy**: the core's non-idle share from
/proc/stat, softirq included):

{cpu_table(samples)}

## Part 2: time per pass, per 10,000 manifests

{collection_table(collections)}

Seeding (not timed as part of GC; each image one config `POST ?digest=` and one manifest
`PUT` by tag, the layer pushed once per repository before):

{seeding_lines(collections)}

## Setups

- Every origin: `wharf origin serve --listen 127.0.0.1:0 --data-dir DIR --config origin.toml`
  with `WHARF_ORIGIN_TOKEN_TTL_SECONDS=86400` (one token for the run), every other setting
  default (blobs on the filesystem in the data dir; SQLite: `DIR/metadata.db`, WAL,
  `synchronous=FULL`). After start: `POST /api/v1/organizations {{"name": "{NAMESPACE}"}}`, and
  (part 1) `PUT /api/v1/namespaces/{NAMESPACE}/time-machine {{"seconds": 0}}`.
- Part 1, **off**:

  ```toml
{indent(origins[0].config_text)}
  ```
- Part 1, **on**:

  ```toml
{indent(origins[1].config_text)}
  ```
- Part 2: `gc_interval_seconds = 0.0`, `gc_grace_seconds = {GRACE:.1f}`
  {"and, on PostgreSQL, `database_url` of a database of its own on the test suite's throwaway server (`tests/postgres.py`). **It runs with `fsync=off`, `synchronous_commit=off` and `full_page_writes=off`**, while SQLite fsyncs its WAL at every commit: PostgreSQL's commits never wait for the disk (the blob files' deletion is the same filesystem work on both)." if any(c.postgres for c in collections) else "(SQLite only)."}

## Details (part 1)

{detail_table(samples)}

## Method and notes

- Each repetition runs push (off and on), then pull, then mixed; the setups' order off, on,
  reversed every other repetition.
- **push**: {args.images} fresh images per sample (a 4 KiB random layer, its config, its OCI
  manifest): layer and config `POST /v2/{REPO}/blobs/uploads/?digest=` with the whole blob,
  then `PUT /v2/{REPO}/manifests/moving-NN`, {MOVING_TAGS} tags round-robin, {CONCURRENCY} images
  in flight (aiohttp). images/s over the sample's wall time; p50/p99: one image's three
  requests.
- **pull**: {STABLE_TAGS} images tagged `stable-NN` (a 1 MiB random layer each), pushed when
  the origin started; {PULLERS} loops, each: `GET /v2/{REPO}/manifests/stable-NN` (bytes
  checked), then the config and the layer (status and length checked), for
  {args.pull_seconds:.0f} s. req/s counts the three GETs of a pull, MB/s all their bytes.
- **mixed**: {args.mixed_images} images pushed as above while {MIXED_PULLERS} pull loops run, from
  the push's start to its end (with {PULLERS} the pulls starve the push).
- GC's counters come from `/metrics` right before and after each sample. A pass counts its
  deletions as it goes (repository by repository, blob by blob) and itself when it ends: a pass
  running across a sample's edge shows its deletions in both samples and its count in one.
- **Part 2**: image i goes to `{NAMESPACE}/seed-(i mod {SEED_REPOSITORIES} + 1)`, tagged
  `tNN` ({SEED_TAGS} tags per repository, round-robin, so each tag moves about
  {args.manifests // (SEED_REPOSITORIES * SEED_TAGS)} times on SQLite); {CONCURRENCY} images in
  flight. The default window (14 days) keeps every ended tag state, so every manifest stays
  reachable until the window is set to 0. Before (a) and before (c) the run sleeps
  {GRACE + 0.5:.1f} s (past the grace).
"""


# --------------------------------------------------------------------------- the run


def gc_main(args: argparse.Namespace) -> int:
    """--gc: throughput with continuous GC on vs off, and seconds per pass over 10,000
    manifests; see this module's docstring."""
    sizes(args)
    started, t0 = datetime.datetime.now(datetime.UTC), time.perf_counter()
    scratch = start_run(args, ("taskset", "curl"))
    # The benchmark's own work (the clients, checking bytes) is client work.
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    version = wharf_version() if args.output is not None else "wharf (version not read)"
    measured = False
    try:
        samples, origins = throughput(scratch, version, args)
        log(f"part 1 done at {time.perf_counter() - t0:.0f} s")
        collections = [collection("sqlite", "SQLite", "", None, args.manifests, scratch, version)]
        log(f"part 2, SQLite done at {time.perf_counter() - t0:.0f} s")
        collections.append(postgres_collection(scratch, version, args))
        log(f"part 2, PostgreSQL done at {time.perf_counter() - t0:.0f} s")
        measured = True
    finally:
        if not measured:
            log(f"FAILED; scratch kept at {scratch} (server logs *.log)")
        elif args.keep_scratch:
            log(f"scratch kept at {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    report(
        args,
        [
            throughput_table(samples),
            gc_work_table(samples),
            cpu_table(samples),
            collection_table(collections),
            seeding_lines(collections),
        ],
        lambda: gc_markdown(samples, origins, collections, version, started, elapsed, args),
        elapsed,
    )
    return 0
