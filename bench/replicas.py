"""``bench/run.py --replicas``: one origin replica on PostgreSQL vs on SQLite, two vs one.

Three setups, all real processes on loopback, token auth on, every replica under
``taskset -c 0`` (PostgreSQL too), the benchmark's own process (the aiohttp clients) and wrk
on CPU 1:

- **A**: one replica on SQLite (the default: ``metadata.db`` in its data dir);
- **B**: one replica on PostgreSQL;
- **C**: two replicas on one PostgreSQL database (another database of the same server as B),
  sharing one blob directory (a stand-in for a shared filesystem), every request of the
  benchmark going to the next replica in turn (round-robin per request, as a load balancer
  without stickiness would).

Every setup stores blobs in a ``[[origin.locations]]`` filesystem location of its own, so A
and B differ only in the database, B and C only in the number of replicas. Four
measurements, their repetitions interleaved across the setups:

1. **push**: fresh random blobs (32 x 8 MiB), each one ``POST /v2/<repo>/blobs/uploads/?digest=``
   with the whole body (a monolithic upload), 8 at a time: MB/s and pushes/s;
2. **pull**: ``GET`` of those blobs, every blob 4 times, 8 at a time: MB/s;
3. **small pushes**: 500 images of a 4 KiB layer, a config and a manifest (two monolithic
   blob pushes and a manifest PUT by a new tag), 8 images at a time: images/s (the metadata
   path: a handful of commits per image);
4. **manifest GET by tag**: ``wrk -t1 -c64`` (C: two ``wrk -t1 -c32`` at once, one per
   replica, summed): requests/s.

During each sample the run records the CPU time of every replica, of PostgreSQL (the
postmaster and all its children, exited ones included) and of the benchmark's client side
(this process and wrk), and how busy each core was; the results say which of them the
bottleneck is. See bench/README.md ("Replicas mode"). ``run.py`` loads this module for
``--replicas`` only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import itertools
import os
import resource
import shlex
import shutil
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import aiohttp

from bench.run import (
    CLIENT_CPU,
    OCI_MANIFEST,
    REPO,
    SERVER_CPU,
    TAG,
    MiB,
    Server,
    busy_between,
    cpu_times,
    image,
    log,
    log_in,
    push_image,
    report,
    run,
    run_header,
    running,
    sha256_bytes,
    small_image,
    start_run,
    tool_versions,
    wait_ready,
    wharf_origin,
    wharf_version,
    wrk_rps,
)
from tests.postgres import PostgresServer

CONCURRENCY = 8  # pushes and pulls in flight at once
WRK_CONNECTIONS = 64  # in all: C's two wrk processes take half each
SMALL_LAYER_BYTES = 4096
BUSY = 0.90  # a core at least this busy is saturated
CT_BLOB = {"Content-Type": "application/octet-stream"}
CT_MANIFEST = {"Content-Type": OCI_MANIFEST}
TIMEOUT = aiohttp.ClientTimeout(total=900, sock_read=120)


@dataclass(frozen=True)
class Measure:
    key: str
    label: str
    unit: str
    cost_unit: str  # per unit of work: "ms/GB", "ms/image", "µs/req"
    cost_scale: float  # CPU seconds per unit of work times this is in cost_unit


MEASURES = (
    Measure("push", "push blobs (one POST ?digest= each, 8 at a time)", "MB/s", "ms/GB", 1e3),
    Measure("pull", "pull the pushed blobs (GET, 8 at a time)", "MB/s", "ms/GB", 1e3),
    Measure("small", "small pushes (4 KiB layer + config + manifest)", "images/s", "ms/image", 1e3),
    Measure("manifest", "manifest GET by tag (wrk, 64 connections)", "req/s", "µs/req", 1e6),
)
BY_KEY = {m.key: m for m in MEASURES}


def sizes(args: argparse.Namespace) -> None:
    """The run's sizes: ``--quick`` shrinks it to a smoke test."""
    if args.quick:
        args.repeats, args.blobs, args.blob_bytes, args.pull_rounds = 1, 4, 1 * MiB, 1
        args.small_pushes, args.seconds = 50, 2
    else:
        args.repeats, args.blobs, args.blob_bytes, args.pull_rounds = 3, 32, 8 * MiB, 4
        args.small_pushes, args.seconds = 500, 10


# --------------------------------------------------------------------------- CPU accounting


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state is [0])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def postgres_cpu(postmaster: int) -> float:
    """CPU seconds of the PostgreSQL server so far: the postmaster's own and its exited
    children's (cutime, cstime: backends of closed connections), and every live child's."""
    ticks = os.sysconf("SC_CLK_TCK")
    own = _stat_fields(postmaster)
    total = sum(int(v) for v in own[11:15])  # utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat_fields(entry.name)
            if int(fields[1]) == postmaster:  # ppid
                total += int(fields[11]) + int(fields[12])
    return total / ticks


def client_cpu() -> float:
    """CPU seconds of the client side so far: this process (aiohttp clients, every thread) and
    its waited-for children (wrk, curl)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def iowait_jiffies() -> dict[str, tuple[int, int]]:
    """(iowait, total) jiffies of each CPU, from /proc/stat."""
    found = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            v = [int(x) for x in values[:8]]
            found[name] = (v[4], sum(v))
    return found


def affinity(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return "?"


# --------------------------------------------------------------------------- setups


@dataclass
class Setup:
    key: str  # "A", "B", "C"
    label: str
    database: str  # "SQLite" or "PostgreSQL"
    replicas: list[Server]
    folder: Path  # its data dirs, its config, its blob directory
    database_url: str
    config_text: str

    def target(self, i: int) -> Server:
        """Request ``i``'s replica: round-robin."""
        return self.replicas[i % len(self.replicas)]

    @property
    def bearer(self) -> dict[str, str]:
        return self.replicas[0].headers


def origin_toml(database_url: str, blobs: Path) -> str:
    return (
        "# generated by bench/replicas.py\n"
        "[origin]\n"
        + (f'database_url = "{database_url}"\n' if database_url else "")
        + "\n[[origin.locations]]\n"
        'name = "shared"\n'
        'driver = "filesystem"\n'
        f'path = "{blobs}"\n'
    )


def start_setup(
    key: str,
    label: str,
    database_url: str,
    count: int,
    scratch: Path,
    version: str,
    stack: contextlib.ExitStack,
) -> Setup:
    """``count`` replicas on ``database_url`` ("" for SQLite), one after the other (the first
    creates the admin), each ready before the next starts; the admin's token for REPO; the
    small image tagged TAG pushed, and read back from every replica."""
    folder = scratch / key
    blobs = folder / "blobs"
    blobs.mkdir(parents=True)
    config = folder / "origin.toml"
    config.write_text(origin_toml(database_url, blobs))
    replicas = []
    for i in range(count):
        server = wharf_origin(f"{key}-replica-{i + 1}", folder / f"replica-{i + 1}", version)
        server.argv += ["--config", str(config)]
        stack.enter_context(running({server.name: server}, scratch))
        wait_ready(server)
        replicas.append(server)
    first = replicas[0]
    asyncio.run(log_in(first, folder / "replica-1"))
    for other in replicas[1:]:  # the signing keys are shared: a token of one is good at all
        other.headers, other.creds = first.headers, first.creds
    setup = Setup(
        key,
        label,
        "PostgreSQL" if database_url else "SQLite",
        replicas,
        folder,
        database_url,
        config.read_text(),
    )
    asyncio.run(seed(setup))
    return setup


async def seed(setup: Setup) -> None:
    config, layer, manifest = small_image()
    async with aiohttp.ClientSession(timeout=TIMEOUT, headers=setup.bearer) as http:
        await push_image(http, setup.replicas[0].url, [config, layer], manifest)
        for server in setup.replicas:
            url = f"{server.url}/v2/{REPO}/manifests/{TAG}"
            async with http.get(url, headers={"Accept": OCI_MANIFEST}) as r:
                body = await r.read()
                if r.status != 200 or body != manifest:
                    raise RuntimeError(f"{server.name}: GET {url} -> {r.status} {body[:200]!r}")


def start_postgres(pg: PostgresServer) -> tuple[int, str]:
    """Start the server with this thread on the server core, so the postmaster and every
    backend it forks inherit that affinity; back to the client core after. The postmaster's
    pid and CPUs."""
    os.sched_setaffinity(0, {int(SERVER_CPU)})
    try:
        pg.start()
    except BaseException:
        with contextlib.suppress(Exception):  # whatever it got to: its folder, a server
            pg.stop()
        raise
    finally:
        os.sched_setaffinity(0, {int(CLIENT_CPU)})
    postmaster = int((pg.root / "data" / "postmaster.pid").read_text().split()[0])
    pinned = affinity(postmaster)
    if pinned != SERVER_CPU:
        raise RuntimeError(f"PostgreSQL's postmaster runs on CPUs {pinned}, not {SERVER_CPU}")
    return postmaster, pinned


def postgres_options(pg: PostgresServer) -> str:
    """The ``-c`` settings the server was started with (from ``postmaster.opts``)."""
    argv = shlex.split((pg.root / "data" / "postmaster.opts").read_text())
    return " ".join(f"-c {value}" for flag, value in itertools.pairwise(argv) if flag == "-c")


# --------------------------------------------------------------------------- one sample


@dataclass(frozen=True)
class Work:
    value: float  # in the measure's unit
    units: float  # work done, in the unit of its cost: GB, images, requests
    note: str = ""


@dataclass(frozen=True)
class Sample:
    setup: str
    measure: str
    repetition: int
    position: int  # place of the setup in this repetition's order
    work: Work
    wall: float
    cpu: dict[str, float]  # CPU seconds: each replica by name, "postgresql", "client"
    busy: dict[str, float]  # each core's non-idle share
    iowait: dict[str, float]  # each core's iowait share

    def cores(self, who: str) -> float:
        """CPU seconds per wall second of ``who`` ("origin": all replicas together)."""
        if who == "origin":
            return sum(v for k, v in self.cpu.items() if "replica" in k) / self.wall
        return self.cpu.get(who, 0.0) / self.wall

    def cost(self, who: str) -> float:
        """``who``'s CPU seconds per unit of work."""
        return self.cores(who) * self.wall / self.work.units


class Probe:
    """What each sample reads before and after: the CPU time of every process that matters,
    and the cores' jiffies."""

    def __init__(self, setup: Setup, postmaster: int | None) -> None:
        self.setup = setup
        self.postmaster = postmaster

    def cpu(self) -> dict[str, float]:
        found = {server.name: server.cpu_seconds() for server in self.setup.replicas}
        if self.postmaster is not None:
            found["postgresql"] = postgres_cpu(self.postmaster)
        found["client"] = client_cpu()
        return found

    def sample(
        self, measure: str, repetition: int, position: int, fn: Callable[[], Work]
    ) -> Sample:
        cpu0, jiffies0, io0 = self.cpu(), cpu_times(), iowait_jiffies()
        start = time.perf_counter()
        work = fn()
        wall = time.perf_counter() - start
        cpu1, jiffies1, io1 = self.cpu(), cpu_times(), iowait_jiffies()
        for server in self.setup.replicas:
            if not server.alive():
                raise RuntimeError(f"{server.name} died during {measure}:\n{server.log_tail()}")
        iowait = {
            core: (io1[core][0] - io0[core][0]) / max(1, io1[core][1] - io0[core][1])
            for core in io1
        }
        return Sample(
            self.setup.key,
            measure,
            repetition,
            position,
            work,
            wall,
            {k: cpu1[k] - cpu0[k] for k in cpu1},
            busy_between(jiffies0, jiffies1),
            iowait,
        )


# --------------------------------------------------------------------------- the measurements


async def in_flight(count: int, job: Callable[[int], Awaitable[None]]) -> None:
    """``job(0)`` ... ``job(count - 1)``, CONCURRENCY at a time, in order of index."""
    indexes = iter(range(count))

    async def worker() -> None:
        for i in indexes:
            await job(i)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def monolithic(http: aiohttp.ClientSession, server: Server, digest: str, body: bytes) -> None:
    url = f"{server.url}/v2/{REPO}/blobs/uploads/?digest={digest}"
    async with http.post(url, data=body, headers=CT_BLOB) as r:
        if r.status != 201:
            raise RuntimeError(f"{server.name}: POST {url} -> {r.status} {await r.text()}")


async def push_blobs(setup: Setup, blobs: list[bytes], digests: list[str]) -> Work:
    """Every blob in one request, CONCURRENCY at a time, request i to replica i mod n."""
    async with aiohttp.ClientSession(timeout=TIMEOUT, headers=setup.bearer) as http:
        start = time.perf_counter()

        async def push(i: int) -> None:
            await monolithic(http, setup.target(i), digests[i], blobs[i])

        await in_flight(len(blobs), push)
        wall = time.perf_counter() - start
    sent = sum(map(len, blobs))
    return Work(sent / wall / 1e6, sent / 1e9, f"{len(blobs) / wall:.1f} pushes/s")


async def read_back(setup: Setup, blobs: list[bytes], digests: list[str]) -> None:
    """Untimed, after the push: every blob from another replica than the one it was pushed
    to (C; A and B have one), sha256 checked."""
    async with aiohttp.ClientSession(timeout=TIMEOUT, headers=setup.bearer) as http:

        async def check(i: int) -> None:
            server = setup.target(i + 1)
            url = f"{server.url}/v2/{REPO}/blobs/{digests[i]}"
            async with http.get(url) as r:
                body = await r.read()
            if r.status != 200 or sha256_bytes(body) != digests[i]:
                raise RuntimeError(f"{server.name}: GET {url} -> {r.status}, {len(body)} bytes")

        await in_flight(len(blobs), check)


async def pull_blobs(setup: Setup, digests: list[str], size: int, rounds: int) -> Work:
    """Every blob ``rounds`` times, CONCURRENCY at a time, request i to replica i mod n; each
    response's status and length checked (its bytes were checked after the push)."""
    wanted = digests * rounds
    async with aiohttp.ClientSession(timeout=TIMEOUT, headers=setup.bearer) as http:
        start = time.perf_counter()

        async def pull(i: int) -> None:
            server = setup.target(i)
            url = f"{server.url}/v2/{REPO}/blobs/{wanted[i]}"
            got = 0
            async with http.get(url) as r:
                async for chunk in r.content.iter_any():
                    got += len(chunk)
                if r.status != 200 or got != size:
                    raise RuntimeError(f"{server.name}: GET {url} -> {r.status}, {got} bytes")

        await in_flight(len(wanted), pull)
        wall = time.perf_counter() - start
    received = len(wanted) * size
    return Work(received / wall / 1e6, received / 1e9, f"{len(wanted)} GETs")


def small_images(count: int) -> list[tuple[bytes, bytes, list[bytes]]]:
    """(config, manifest, [layer]) of ``count`` fresh images of one random 4 KiB layer."""
    return [image([os.urandom(SMALL_LAYER_BYTES)]) for _ in range(count)]


async def push_small(
    setup: Setup, images: list[tuple[bytes, bytes, list[bytes]]], tags: list[str]
) -> Work:
    """Each image: its layer and config (``POST ?digest=``), then its manifest by a new tag;
    CONCURRENCY images at a time; every request to the next replica in turn."""
    turn = itertools.count()
    async with aiohttp.ClientSession(timeout=TIMEOUT, headers=setup.bearer) as http:
        start = time.perf_counter()

        async def push(i: int) -> None:
            config, manifest, layers = images[i]
            for blob in (*layers, config):
                await monolithic(http, setup.target(next(turn)), sha256_bytes(blob), blob)
            server = setup.target(next(turn))
            url = f"{server.url}/v2/{REPO}/manifests/{tags[i]}"
            async with http.put(url, data=manifest, headers=CT_MANIFEST) as r:
                if r.status != 201:
                    raise RuntimeError(f"{server.name}: PUT {url} -> {r.status} {await r.text()}")

        await in_flight(len(images), push)
        wall = time.perf_counter() - start
        requests = next(turn)
        # Every replica has the last image by its tag.
        manifest = images[-1][1]
        for server in setup.replicas:
            url = f"{server.url}/v2/{REPO}/manifests/{tags[-1]}"
            async with http.get(url, headers={"Accept": OCI_MANIFEST}) as r:
                body = await r.read()
                if r.status != 200 or body != manifest:
                    raise RuntimeError(f"{server.name}: GET {url} -> {r.status} {body[:200]!r}")
    return Work(
        len(images) / wall, len(images), f"{requests / wall:.0f} requests/s ({requests} requests)"
    )


def manifest_gets(setup: Setup, seconds: int, warm_up: bool) -> Work:
    """``wrk -t1`` against each replica at once, WRK_CONNECTIONS split between them."""
    path = f"/v2/{REPO}/manifests/{TAG}"
    n = len(setup.replicas)
    connections = [] if n == 1 else [f"-c{WRK_CONNECTIONS // n}"]  # wrk's last -c counts

    def one(server: Server) -> tuple[str, float, float, str]:
        flags = [*connections, "-H", f"Accept: {OCI_MANIFEST}", *server.header_flags()]
        done = wrk_rps(server.url + path, seconds, warm_up, flags)
        return server.name, done.value, done.work, done.note

    with ThreadPoolExecutor(max_workers=n) as pool:
        runs = list(pool.map(one, setup.replicas))
    note = "; ".join(f"{name}: {rps:.0f} req/s, {what}" for name, rps, _, what in runs)
    return Work(sum(r[1] for r in runs), sum(r[2] for r in runs), note)


def fsync_ms(folder: Path, size: int, times: int) -> float:
    """Median ms of writing ``size`` bytes to a new file and fsyncing it, in ``folder``."""
    data = os.urandom(size)
    took = []
    for i in range(times):
        path = folder / f"fsync-probe-{i}"
        start = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        took.append(time.perf_counter() - start)
        path.unlink()
    return statistics.median(took) * 1000


def measure(setups: list[Setup], postmaster: int, args: argparse.Namespace) -> list[Sample]:
    """Each repetition: every measurement against every setup before the next measurement
    (the setups' order reversed every other repetition), so drifts of the VM fall on every
    setup alike."""
    probes = {s.key: Probe(s, postmaster if s.database_url else None) for s in setups}
    samples: list[Sample] = []

    def keep(s: Sample) -> None:
        samples.append(s)
        m = BY_KEY[s.measure]
        cores = ", ".join(
            f"{who} {s.cores(who):.2f}"
            for who in ("origin", "postgresql", "client")
            if who in s.cpu or who == "origin"
        )
        log(
            f"{s.measure:8} {s.repetition + 1}/{args.repeats} {s.setup}: {s.work.value:9.1f} "
            f"{m.unit}  CPU {SERVER_CPU} {s.busy.get(f'cpu{SERVER_CPU}', 0):.0%}, CPU "
            f"{CLIENT_CPU} {s.busy.get(f'cpu{CLIENT_CPU}', 0):.0%}; cores: {cores}  {s.work.note}"
        )

    for rep in range(args.repeats):
        order = setups if rep % 2 == 0 else setups[::-1]
        pushed: dict[str, list[str]] = {}
        for position, setup in enumerate(order):
            blobs = [os.urandom(args.blob_bytes) for _ in range(args.blobs)]
            digests = [sha256_bytes(b) for b in blobs]
            fn = partial(in_loop, push_blobs, setup, blobs, digests)
            keep(probes[setup.key].sample("push", rep, position, fn))
            asyncio.run(read_back(setup, blobs, digests))
            pushed[setup.key] = digests
        for position, setup in enumerate(order):
            fn = partial(
                in_loop, pull_blobs, setup, pushed[setup.key], args.blob_bytes, args.pull_rounds
            )
            keep(probes[setup.key].sample("pull", rep, position, fn))
        for position, setup in enumerate(order):
            images = small_images(args.small_pushes)
            tags = [f"r{rep + 1}-{i + 1:04}" for i in range(len(images))]
            fn = partial(in_loop, push_small, setup, images, tags)
            keep(probes[setup.key].sample("small", rep, position, fn))
        for position, setup in enumerate(order):
            fn = partial(manifest_gets, setup, args.seconds, rep == 0)
            keep(probes[setup.key].sample("manifest", rep, position, fn))
    return samples


def in_loop(fn: Callable[..., Coroutine[None, None, Work]], *args: object) -> Work:
    """``fn(*args)`` run to the end in a new event loop."""
    return asyncio.run(fn(*args))


# --------------------------------------------------------------------------- numbers


def of(samples: list[Sample], setup: str, measure: str) -> list[Sample]:
    return sorted(
        (s for s in samples if s.setup == setup and s.measure == measure),
        key=lambda s: s.repetition,
    )


def mid(values: list[float], fmt: str = "{:.0f}") -> str:
    """median (min-max); the median alone for one value."""
    if not values:
        return "-"
    text = fmt.format(statistics.median(values))
    if len(values) > 1:
        text += f" ({fmt.format(min(values))}-{fmt.format(max(values))})"
    return text


def ratios(samples: list[Sample], measure: str, top: str, bottom: str) -> list[float]:
    """``top``'s value over ``bottom``'s, per repetition."""
    below = {s.repetition: s.work.value for s in of(samples, bottom, measure)}
    return [
        s.work.value / below[s.repetition]
        for s in of(samples, top, measure)
        if below.get(s.repetition)
    ]


def median_of(found: list[Sample], get: Callable[[Sample], float]) -> float:
    return statistics.median([get(s) for s in found]) if found else 0.0


def server_busy(s: Sample) -> float:
    return s.busy.get(f"cpu{SERVER_CPU}", 0.0)


def client_busy(s: Sample) -> float:
    return s.busy.get(f"cpu{CLIENT_CPU}", 0.0)


@dataclass(frozen=True)
class Load:
    """The medians over a setup's repetitions of one measurement: how busy each core was and
    who kept it busy (in cores: CPU seconds per wall second)."""

    server: float
    client: float
    iowait: float
    origin: float
    replicas: tuple[float, ...]
    postgres: float
    client_process: float
    origin_cost: float  # CPU seconds per unit of work
    postgres_cost: float

    @classmethod
    def of(cls, found: list[Sample]) -> Load:
        names = sorted(k for k in found[0].cpu if "replica" in k) if found else []

        def replica(name: str) -> float:
            return median_of(found, lambda s: s.cores(name))

        return cls(
            median_of(found, server_busy),
            median_of(found, client_busy),
            median_of(found, lambda s: s.iowait.get(f"cpu{SERVER_CPU}", 0.0)),
            median_of(found, lambda s: s.cores("origin")),
            tuple(replica(name) for name in names),
            median_of(found, lambda s: s.cores("postgresql")),
            median_of(found, lambda s: s.cores("client")),
            median_of(found, lambda s: s.cost("origin")),
            median_of(found, lambda s: s.cost("postgresql")),
        )

    @property
    def other(self) -> float:
        """CPU 0's busy share that neither the replicas nor PostgreSQL account for: the
        kernel's loopback and disk work (softirq, kworkers), anything else on the machine."""
        return max(0.0, self.server - self.origin - self.postgres)

    def core(self, which: str) -> str:
        """How busy a core was, and who kept it busy."""
        if which == SERVER_CPU:
            busy = self.server
            shares = {
                "the origin": self.origin,
                "PostgreSQL": self.postgres,
                "kernel/other": self.other,
            }
        else:
            busy = self.client
            shares = {
                "the client processes": self.client_process,
                "kernel/other": max(0.0, self.client - self.client_process),
            }
        top = max(shares, key=lambda k: shares[k])
        detail = ", ".join(f"{k} {v:.0%}" for k, v in shares.items() if v >= 0.005)
        return f"CPU {which} {busy:.0%}: mostly {top} ({detail})"

    def bottleneck(self) -> str:
        server, client = self.server >= BUSY, self.client >= BUSY
        if server and client:
            return (
                f"both cores saturated: server core ({self.core(SERVER_CPU)}), client core "
                f"({self.core(CLIENT_CPU)})"
            )
        if server:
            return f"server core ({self.core(SERVER_CPU)})"
        if client:
            return f"client core ({self.core(CLIENT_CPU)})"
        return (
            f"no core saturated (CPU {SERVER_CPU} {self.server:.0%}, CPU {CLIENT_CPU} "
            f"{self.client:.0%}, iowait on CPU {SERVER_CPU} {self.iowait:.0%}): the requests "
            "wait (disk flushes, round trips, locks), not for CPU"
        )


# --------------------------------------------------------------------------- report


def results_table(samples: list[Sample], setups: list[Setup], args: argparse.Namespace) -> str:
    head = " | ".join(f"{s.key}: {s.label}" for s in setups)
    lines = [
        f"| measurement | unit | {head} | B / A | C / B |",
        "|---|---|" + "--:|" * len(setups) + "--:|--:|",
    ]
    per_push = args.blob_bytes / 1e6  # MB per pushed blob
    rows: list[tuple[str, str, str, float]] = [(m.key, m.label, m.unit, 1.0) for m in MEASURES]
    rows.insert(
        1, ("push", f"push blobs, as pushes of {args.blob_bytes // MiB} MiB", "pushes/s", per_push)
    )
    for key, label, unit, divide in rows:
        fmt = "{:.1f}" if unit in ("pushes/s", "images/s") else "{:.0f}"
        cells = [
            mid([s.work.value / divide for s in of(samples, setup.key, key)], fmt)
            for setup in setups
        ]
        lines.append(
            f"| {label} | {unit} | {' | '.join(cells)} | "
            f"{mid(ratios(samples, key, 'B', 'A'), '{:.2f}')} | "
            f"{mid(ratios(samples, key, 'C', 'B'), '{:.2f}')} |"
        )
    return "\n".join(lines)


def cpu_table(samples: list[Sample], setups: list[Setup]) -> str:
    lines = [
        f"| measurement | setup | CPU {SERVER_CPU} busy | CPU {CLIENT_CPU} busy | iowait CPU {SERVER_CPU} | "
        "origin, cores (per replica) | PostgreSQL, cores | client, cores | origin CPU per unit | "
        "PostgreSQL CPU per unit | bottleneck |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for m in MEASURES:
        for setup in setups:
            load = Load.of(of(samples, setup.key, m.key))
            each = " + ".join(f"{c:.2f}" for c in load.replicas)
            pg = setup.database == "PostgreSQL"
            lines.append(
                f"| {m.label} | {setup.key} | {load.server:.0%} | {load.client:.0%} | "
                f"{load.iowait:.0%} | {load.origin:.2f}"
                + (f" ({each})" if len(load.replicas) > 1 else "")
                + f" | {f'{load.postgres:.2f}' if pg else '-'} | {load.client_process:.2f} | "
                f"{load.origin_cost * m.cost_scale:.0f} {m.cost_unit} | "
                + (f"{load.postgres_cost * m.cost_scale:.0f} {m.cost_unit}" if pg else "-")
                + f" | {load.bottleneck()} |"
            )
    return "\n".join(lines)


def bottlenecks(samples: list[Sample], setups: list[Setup]) -> str:
    """Per measurement, where each setup's bottleneck was and what a unit of work cost whom,
    read off the CPU samples."""
    notes = []
    for m in MEASURES:
        loads = {s.key: Load.of(of(samples, s.key, m.key)) for s in setups}
        where = "; ".join(f"{k}: {load.bottleneck()}" for k, load in loads.items())
        costs = ", ".join(
            f"{k} {load.origin_cost * m.cost_scale:.0f}"
            + (
                f" + PostgreSQL {load.postgres_cost * m.cost_scale:.0f}"
                if setup.database == "PostgreSQL"
                else ""
            )
            for (k, load), setup in zip(loads.items(), setups, strict=True)
        )
        notes.append(f"- **{m.label}**: {where}. CPU per unit ({m.cost_unit}), origin: {costs}.")
        a, b = loads.get("A"), loads.get("B")
        if a is not None and b is not None and a.origin_cost:
            total_b = b.origin_cost + b.postgres_cost
            notes.append(
                f"  - B / A in CPU per unit of work, origin and database together: "
                f"{total_b / a.origin_cost:.2f} (A's SQLite runs inside the origin's process, "
                "so its cost is in the origin's column)."
            )
        c = loads.get("C")
        if b is not None and c is not None and b.origin_cost:
            notes.append(
                f"  - C / B in the origin's CPU per unit of work: {c.origin_cost / b.origin_cost:.2f}"
                + (
                    f"; PostgreSQL's: {c.postgres_cost / b.postgres_cost:.2f}"
                    if b.postgres_cost
                    else ""
                )
                + " (above 1: what running two replicas instead of one costs per unit)."
            )
    return "\n".join(notes)


def detail_table(samples: list[Sample]) -> str:
    lines = [
        f"| measurement | setup | repetition (place) | value | s | CPU {SERVER_CPU} / {CLIENT_CPU} busy | "
        f"iowait CPU {SERVER_CPU} | origin cores (each replica) | PostgreSQL cores | client cores | notes |",
        "|---|---|---|--:|--:|---|--:|---|--:|--:|---|",
    ]
    for m in MEASURES:
        for s in sorted(
            (s for s in samples if s.measure == m.key), key=lambda s: (s.setup, s.repetition)
        ):
            each = ", ".join(f"{s.cores(k):.2f}" for k in sorted(s.cpu) if "replica" in k)
            pg = f"{s.cores('postgresql'):.2f}" if "postgresql" in s.cpu else "-"
            lines.append(
                f"| {m.key} | {s.setup} | {s.repetition + 1} ({s.position + 1}) | "
                f"{s.work.value:.1f} {m.unit} | {s.wall:.2f} | {server_busy(s):.0%} / "
                f"{client_busy(s):.0%} | {s.iowait.get(f'cpu{SERVER_CPU}', 0):.0%} | "
                f"{s.cores('origin'):.2f} ({each}) | {pg} | {s.cores('client'):.2f} | "
                f"{s.work.note} |"
            )
    return "\n".join(lines)


@dataclass(frozen=True)
class Context:
    """What the results file says about the run besides the samples."""

    version: str
    postgres_version: str
    postgres_options: str
    postmaster_cpus: str
    fsync_small_ms: float
    fsync_big_ms: float


def versions_line(context: Context) -> str:
    packages = ", ".join(
        f"{p} {importlib.metadata.version(p)}"
        for p in ("aiohttp", "SQLAlchemy", "aiosqlite", "asyncpg")
    )
    return (
        f"{context.version}; {packages}; SQLite {sqlite3.sqlite_version} (Python's sqlite3); "
        f"{context.postgres_version}; {tool_versions()['wrk']}"
    )


def replicas_markdown(
    samples: list[Sample],
    setups: list[Setup],
    context: Context,
    started: datetime.datetime,
    elapsed: float,
    args: argparse.Namespace,
) -> str:
    quick = (
        f"**--quick run: {args.repeats} repetition, {args.blobs} x {args.blob_bytes // MiB} MiB "
        f"blobs, {args.small_pushes} small pushes, {args.seconds}-s wrk runs; not for the record.**"
    )
    a_toml = next(s.config_text for s in setups if s.key == "A")
    b_toml = next(s.config_text for s in setups if s.key == "B")
    return f"""# Wharf benchmark results: origin replicas, PostgreSQL vs SQLite, two vs one

{run_header(args, started, elapsed, quick)}

Push and pull throughput and manifest requests/s of one origin replica on PostgreSQL (B) vs on
SQLite (A), and of two replicas on PostgreSQL with the requests spread over both (C) vs one (B),
all real processes on loopback, token auth on.

**What C measures here.** This machine has {os.cpu_count()} cores: one for the servers, one for the
clients. C's two replicas share the server core with each other and with PostgreSQL, so C
cannot scale out here: it measures what running two replicas instead of one costs (the
coordination through PostgreSQL, two caches to fill, two processes taking turns on one core),
not what a second machine would add.

Versions: {versions_line(context)}.

CPU pinning: every replica runs under `taskset -c {SERVER_CPU}`; PostgreSQL was started with the
benchmark's thread pinned to CPU {SERVER_CPU}, so the postmaster and every backend it forks
inherit it (the postmaster's `Cpus_allowed_list`: {context.postmaster_cpus}); the benchmark's own
process (every aiohttp client) is pinned to CPU {CLIENT_CPU}, and wrk runs under `taskset -c {CLIENT_CPU}`.

## Setups

- **A: {setups[0].label}**: `wharf origin serve --listen 127.0.0.1:0 --data-dir DIR --config
  origin.toml`, every other setting default (SQLite in `DIR/metadata.db`: WAL,
  `synchronous=FULL`, i.e. an fsync of the WAL at every commit), with
  `WHARF_ORIGIN_TOKEN_TTL_SECONDS=86400` (one token for the whole run):

  ```toml
{indent(a_toml)}
  ```
- **B: {setups[1].label}**: the same, on a PostgreSQL database of its own:

  ```toml
{indent(b_toml)}
  ```
- **C: {setups[2].label}**: two such replicas with one config (another database of the same
  PostgreSQL server, one blob directory for both, standing in for a shared filesystem),
  started one after the other (the first creates the admin; each answers `/readyz` before the
  next starts). They coordinate through PostgreSQL (an advisory lock elects the leader that
  runs the singleton workers; signing keys and sessions are shared), so a token from one is
  good at the other. Every request of the benchmark goes to the next replica in turn.
- **PostgreSQL**: {context.postgres_version}, the test suite's throwaway server
  (`tests/postgres.py`: `initdb --no-sync`, started with `{context.postgres_options}`). B and C
  use two databases of that one server; its CPU time in each sample is the whole server's
  (C's idle replicas poll it during B's samples, and B's during C's: the leader's lock check
  every `leader_poll_seconds`, 1 s).

**Not apples to apples: PostgreSQL runs with `fsync=off`, `synchronous_commit=off` and
`full_page_writes=off`** (how the test class starts it; it takes no options, and
command-line settings cannot be overridden with `ALTER SYSTEM`), while SQLite fsyncs its WAL
at every commit (`synchronous=FULL`). PostgreSQL here never waits for the disk; a production
PostgreSQL would, at every commit (or group of commits). On this disk a write of 4 KiB and its
fsync took {context.fsync_small_ms:.1f} ms (median of 20), of an 8 MiB file
{context.fsync_big_ms:.1f} ms (median of 5), measured in the scratch directory before the run.
So B / A for the metadata-heavy small pushes flatters PostgreSQL; the blob pushes fsync
every blob in every setup alike.

## Results

{results_table(samples, setups, args)}

Median (min-max) over {args.repeats} repetition(s); the ratios are per repetition (same
repetition, B over A, C over B), then median (min-max). Above 1.00: the first is faster.

## CPU: where the bottleneck is

{cpu_table(samples, setups)}

Medians over the repetitions. **CPU N busy**: that core's non-idle share over the sample
(/proc/stat; softirq, i.e. loopback TCP, included); **iowait**: its share waiting for the disk
with nothing else to run. **cores**: a process's user + system CPU seconds per wall second
(1.00 keeps a core busy alone): **origin**: the replicas' processes (for A, SQLite's work too:
it runs inside the origin, in aiosqlite's thread), **PostgreSQL**: the postmaster and all its
children (exited backends included, through the postmaster's cutime/cstime), **client**: the
benchmark's process and wrk. **CPU per unit**: CPU time over the work (GB pushed or pulled,
images pushed, requests answered, wrk's warm-up included). **bottleneck**: a core at least
{BUSY:.0%} busy is saturated; on the server core, its largest user is named ("kernel/other": what
neither the replicas nor PostgreSQL account for: softirq and kernel threads, anything else on
the machine).

{bottlenecks(samples, setups)}

## Details

{detail_table(samples)}

## Method and notes

- Repetitions: in each, push (all setups), pull (all setups), small pushes, manifest GETs;
  the setups' order A, B, C, reversed every other repetition. All three setups run for the
  whole run, one at a time under load.
- **push**: {args.blobs} fresh blobs of {args.blob_bytes // MiB} MiB random bytes per sample
  (generated before it), each one `POST /v2/{REPO}/blobs/uploads/?digest=<digest>` with the whole
  blob as its body (a monolithic upload: one request, no session), {CONCURRENCY} in flight from
  one aiohttp client, request i to replica i mod n; 201 expected. MB/s = 10^6 bytes/s of the
  sample's wall time. After the sample (untimed) every blob is read back from the other
  replica (C) or the same one (A, B) and checked by sha256: it also leaves every blob in the
  page cache for the pull.
- **pull**: those blobs, each {args.pull_rounds} time(s), `GET /v2/{REPO}/blobs/<digest>`,
  {CONCURRENCY} in flight, request i to replica i mod n; each response's status and length
  checked (not its sha256: hashing on the client core would cap the measurement).
- **small pushes**: {args.small_pushes} fresh images per sample: one 4 KiB layer of random bytes,
  its config and its OCI manifest; per image the layer and the config (`POST ?digest=`), then
  `PUT /v2/{REPO}/manifests/<new tag>`; {CONCURRENCY} images in flight; every request to the next
  replica in turn (so C's manifest PUT often lands on another replica than its blobs). At the
  end every replica must return the last image's manifest by its tag.
- **manifest GET by tag**: `wrk -t1 -c{WRK_CONNECTIONS} -d{args.seconds}s --timeout 10s --latency -H
  'Accept: {OCI_MANIFEST}' -H 'Authorization: Bearer <token>'` on `/v2/{REPO}/manifests/{TAG}`
  (the small image pushed when the setup started); C: two wrk processes at once, `-c{WRK_CONNECTIONS // 2}`
  each, one per replica, their req/s summed. A 2-s warm-up (untimed) in the first repetition;
  any non-2xx fails the run.
- The admin's token (`pull,push` on `{REPO}`) comes from the first replica's `/auth/token`
  before anything is timed, so no sample pays a login.
- The client side is one Python process (asyncio, aiohttp) on one core: where it saturates
  CPU {CLIENT_CPU} (the pulls, likely), the origin's CPU per GB says more than the MB/s.
- CPU time of processes other than the replicas, PostgreSQL and the client (the kernel's
  loopback and writeback work, anything else running) shows only in the cores' busy shares.
"""


def indent(text: str) -> str:
    return "\n".join(f"  {line}" if line else "" for line in text.strip().splitlines())


# --------------------------------------------------------------------------- the run


def replicas_main(args: argparse.Namespace) -> int:
    """--replicas: one origin replica on PostgreSQL vs on SQLite, two vs one; see
    bench/README.md."""
    sizes(args)
    started, t0 = datetime.datetime.now(datetime.UTC), time.perf_counter()
    scratch = start_run(args, ("taskset", "curl", "wrk"))
    # The benchmark's own work (the clients, checking bytes) is client work.
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    # The version (git revision included) is for the results file; a run without one skips it.
    version = wharf_version() if args.output is not None else "wharf (version not read)"
    fsync_small = fsync_ms(scratch, 4096, 20)
    fsync_big = fsync_ms(scratch, 8 * MiB, 5)
    log(f"write + fsync in {scratch}: 4 KiB {fsync_small:.1f} ms, 8 MiB {fsync_big:.1f} ms")
    pg = PostgresServer()
    measured = False
    try:
        with contextlib.ExitStack() as stack:
            postmaster, cpus = start_postgres(pg)
            stack.callback(pg.stop)
            pg_version = run([str(pg.bin / "postgres"), "--version"]).strip()
            options = postgres_options(pg)
            log(
                f"{pg_version} up on port {pg.port} (postmaster {postmaster}, CPUs {cpus}): {options}"
            )
            setups = [
                start_setup("A", "1 replica, SQLite", "", 1, scratch, version, stack),
                start_setup(
                    "B",
                    "1 replica, PostgreSQL",
                    asyncio.run(pg.new_database()),
                    1,
                    scratch,
                    version,
                    stack,
                ),
                start_setup(
                    "C",
                    "2 replicas, PostgreSQL",
                    asyncio.run(pg.new_database()),
                    2,
                    scratch,
                    version,
                    stack,
                ),
            ]
            log(
                "setups up: "
                + "; ".join(
                    f"{s.key} ({s.label}): {', '.join(r.url for r in s.replicas)}" for s in setups
                )
            )
            samples = measure(setups, postmaster, args)
        measured = True
    finally:
        if not measured:
            log(f"FAILED; scratch kept at {scratch} (server logs *.log)")
        elif args.keep_scratch:
            log(f"scratch kept at {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    context = Context(
        version,
        pg_version,
        options,
        cpus,
        fsync_small,
        fsync_big,
    )
    report(
        args,
        [
            results_table(samples, setups, args),
            cpu_table(samples, setups),
            "Where the bottleneck is:\n\n" + bottlenecks(samples, setups),
            detail_table(samples),
        ],
        lambda: replicas_markdown(samples, setups, context, started, elapsed, args),
        elapsed,
    )
    return 0
