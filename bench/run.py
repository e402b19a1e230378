"""Wharf's origin beside CNCF Distribution 2.8 and nginx: same machine, same data, one run.

Run from the repository root::

    .venv/bin/python bench/run.py            # the full run (about 4 minutes), writes bench/RESULTS.md
    .venv/bin/python bench/run.py --quick    # a smoke test: one repetition, short runs, no RESULTS.md
    .venv/bin/python bench/run.py --auth     # instead: token auth on vs off (about 5-6 minutes),
                                             # writes bench/RESULTS-auth.md
    .venv/bin/python bench/run.py --auth --quick   # its smoke test (about 40 s), no results file
    .venv/bin/python bench/run.py --edge     # instead: the edge vs Distribution's proxy (about
                                             # 4-5 minutes), writes bench/RESULTS-edge.md
    .venv/bin/python bench/run.py --edge --quick   # its smoke test (about 1 minute), no results file
    .venv/bin/python bench/run.py --gossip   # instead: origin egress for one blob asked of
                                             # 4 and 8 edges at once, cooperating or not
                                             # (about 7-10 minutes), writes bench/RESULTS-gossip.md
    .venv/bin/python bench/run.py --gossip --quick # its smoke test (about 30 s), no results file
    .venv/bin/python bench/run.py --swarm    # instead: origin egress and time for one 256 MiB
                                             # blob asked of 4 and 8 edges at once, through the
                                             # swarm, cooperating over HTTP or plain, and of one
                                             # edge alone (about 15-20 minutes), writes
                                             # bench/RESULTS-swarm.md
    .venv/bin/python bench/run.py --swarm --quick  # its smoke test (about 1 minute), no results file
    .venv/bin/python bench/run.py --push     # instead: a push's acknowledgement at an edge vs the
                                             # origin, the edge's replication lag over 100
                                             # pushes, and each region's prefetch lag (about
                                             # 2 minutes), writes bench/RESULTS-push.md
    .venv/bin/python bench/run.py --push --quick   # its smoke test (under 1 minute), no results file

All three servers run for the whole benchmark, each pinned to CPU 0 with ``taskset -c 0``;
every client (curl, wrk, ab, skopeo) is pinned to CPU 1 with ``taskset -c 1``, so load
generator and server never share a core. Only one server is under load at a time. Each
registry is seeded through the OCI HTTP API with identical bytes (POST then PUT ?digest=);
nginx serves the same bytes as static files under the same URL paths, as the ceiling for this
machine. nginx has no registry API, so it takes no push.

``--auth`` runs two Wharf origins instead, token auth on and off
(``WHARF_ORIGIN_AUTH_ENABLED=false``), seeded alike and pinned the same way, and measures manifest
GET and blob HEAD requests/s on both, and token issue requests/s on the auth-on one.

``--edge`` runs Wharf's edge beside Distribution's pull-through proxy, both in front of one
plain Distribution (the upstream), pinned the same way: hits (blob MB/s, manifest-by-tag
requests/s), cold-miss time to first byte and total time against pulling directly, and the
upstream GETs that 50 concurrent cold requests cause (counted from the upstream's access log).

``--gossip`` runs one Wharf origin (auth on) and, per sample, N fresh edges of one region with
static peers, cooperating or not (``cooperate``; ``swarm = false``: HTTP cooperation only),
all pinned the same way: one GET of a fresh blob to each edge at the same moment; the origin's
egress for that blob (from its JSON access log, checked against the edges' counters), its GETs,
and the time until every edge has served its client the whole blob (sha256 checked).

``--swarm`` does the same (the same machinery: ``fanout_sample``, ``round_robin``) for a blob
large enough for the swarm, with N edges through the swarm (BitTorrent among the edges, the
origin as web seed), cooperating over HTTP only, or plain, and one edge alone (plain: the
time aim's baseline; through the swarm): origin egress (its log, checked against its /metrics
and the edges' counters) against 1.25x the blob size, the time until every edge has served the
whole blob against 1.5x one edge alone's, and per edge the bytes it received from peers and
from the web seed and uploaded to the others.

``--push`` (its code is in bench/push.py) runs one Wharf origin (auth on, with a replicator
account and replication rules) and two edges, regions ``eu`` and ``us``, that accept pushes and
follow the origin's event feed, pinned the same way: the time until skopeo's push of a fresh
3-layer image is acknowledged by an edge against by the origin directly (alternating, paired);
for 100 small pushes to the edge back to back, the time from each 201 until the origin has the
tag (polled HEAD), beside the edge's own lag histogram; and for pushes to the origin, the time
until each region's edge has processed the push's event (its ``wharf_edge_prefetch_cursor``).

See bench/README.md for what each measurement means. Scratch data lives under
/tmp/bench-scratch/ and is removed at the end of a successful run (``--keep-scratch`` keeps
it; a failed run keeps it for its server logs).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import gzip
import hashlib
import importlib
import importlib.metadata
import io
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from gossip.ring import weight

ROOT = Path(__file__).resolve().parent.parent
SCRATCH_ROOT = Path("/tmp/bench-scratch")
SERVER_CPU = "0"
CLIENT_CPU = "1"
MiB = 1 << 20
BIG_BLOB_BYTES = 256 * MiB
PUSH_LAYER_BYTES = 10 * MiB
REPO = "bench/app"
TAG = "bench"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def client(*argv: str) -> list[str]:
    """A client command pinned to the client core."""
    return ["taskset", "-c", CLIENT_CPU, *argv]


def run(argv: list[str], timeout: float = 120) -> str:
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(argv)} exited {out.returncode}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}"
        )
    return out.stdout + out.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


# --------------------------------------------------------------------------- test data


def tar_layer(files: dict[str, bytes]) -> bytes:
    """An uncompressed, reproducible tar layer."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": sha256_bytes(data), "size": len(data)}


def image(layers: list[bytes], gzipped: bool = False) -> tuple[bytes, bytes, list[bytes]]:
    """(config, manifest, layer blobs) of an OCI image with these tar layers, gzipped or not."""
    blobs = (
        [gzip.compress(layer, compresslevel=1, mtime=0) for layer in layers] if gzipped else layers
    )
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256_bytes(layer) for layer in layers]},
        },
        sort_keys=True,
    ).encode()
    media_type = OCI_LAYER_GZIP if gzipped else OCI_LAYER_TAR
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [descriptor(media_type, blob) for blob in blobs],
        },
        sort_keys=True,
    ).encode()
    return config, manifest, blobs


def write_oci_layout(folder: Path, tag: str, layers: list[bytes]) -> None:
    """An OCI image layout (for skopeo's ``oci:`` transport) with one image tagged ``tag``.

    Its layers are gzipped: skopeo would otherwise gzip uncompressed layers itself on the way
    to a registry, and the push would measure skopeo's compressor, not the registry.
    """
    blobs_dir = folder / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True)
    config, manifest, blobs = image(layers, gzipped=True)
    for data in (*blobs, config, manifest):
        (blobs_dir / sha256_bytes(data).removeprefix("sha256:")).write_bytes(data)
    (folder / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                **descriptor(OCI_MANIFEST, manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (folder / "index.json").write_text(json.dumps(index))


@dataclass(frozen=True)
class Data:
    big: Path  # the 256 MiB random blob
    big_digest: str
    config: bytes  # the small image: config, one small layer, manifest tagged TAG
    layer: bytes
    manifest: bytes
    push_layout: Path  # OCI layout with 3 x ~10 MiB layers, tagged "v1"

    @property
    def small_blobs(self) -> list[bytes]:
        return [self.config, self.layer]

    @property
    def blob_path(self) -> str:
        return f"/v2/{REPO}/blobs/{self.big_digest}"

    @property
    def small_blob_path(self) -> str:
        """The small layer: what HEAD is measured on."""
        return f"/v2/{REPO}/blobs/{sha256_bytes(self.layer)}"

    @property
    def manifest_path(self) -> str:
        return f"/v2/{REPO}/manifests/{TAG}"


def small_image() -> tuple[bytes, bytes, bytes]:
    """(config, layer, manifest) of the small image: one ~10 KiB uncompressed tar layer."""
    layer = tar_layer(
        {"app/hello.txt": b"hello from the wharf benchmark\n", "app/data.bin": os.urandom(4096)}
    )
    config, manifest, _ = image([layer])
    return config, layer, manifest


def make_data(scratch: Path) -> Data:
    big = scratch / "big.bin"
    h = hashlib.sha256()
    with big.open("wb") as f:
        for _ in range(BIG_BLOB_BYTES // MiB):
            chunk = os.urandom(MiB)
            h.update(chunk)
            f.write(chunk)
    config, layer, manifest = small_image()
    layout = scratch / "push-layout"
    write_oci_layout(
        layout,
        "v1",
        [tar_layer({f"layer{i}/data.bin": os.urandom(PUSH_LAYER_BYTES)}) for i in range(3)],
    )
    return Data(big, "sha256:" + h.hexdigest(), config, layer, manifest, layout)


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    argv: list[str]
    version: str
    registry: bool = True
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Wharf requires a token on /v2/: a bearer header for curl/wrk/ab/aiohttp, creds for skopeo.
    headers: dict[str, str] = field(default_factory=dict)
    creds: str | None = None

    def header_flags(self) -> list[str]:
        return [arg for k, v in self.headers.items() for arg in ("-H", f"{k}: {v}")]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                ["taskset", "-c", SERVER_CPU, *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,  # its own process group, so killpg reaches every worker
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU of every process in the server's process group, so far."""
        assert self.proc is not None
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == self.proc.pid:  # pgrp
                    total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / CLK_TCK

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGTERM for 10 s; SIGKILL")
        # Whatever is left of the group (workers of a dead master, say) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wharf_edge(
    name: str,
    config: Path,
    listen: str,
    origin_url: str,
    data_dir: Path,
    version: str,
    port: int = 0,
    **extra: Any,
) -> Server:
    """``wharf edge serve`` with its settings file, every other setting default and a 20 GiB
    cache (``extra``: more fields of the Server, e.g. its environment)."""
    argv = [
        str(ROOT / ".venv" / "bin" / "wharf"),
        "edge",
        "serve",
        "--config",
        str(config),
        "--listen",
        listen,
        "--origin",
        origin_url,
        "--data-dir",
        str(data_dir),
        "--cache-size",
        "20GiB",
    ]
    return Server(name, argv, version, port=port, **extra)


def wharf_version() -> str:
    version = importlib.metadata.version("wharf")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            check=False,
            capture_output=True,
            text=True,
        ).stdout.strip()
        dirty = subprocess.run(
            # Changes to wharf's own code, that is; bench/ does not count.
            [
                "git",
                "-C",
                str(ROOT),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":!bench",
            ],
            check=False,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if rev:
            version += f" (git {rev}{', dirty tree' if dirty else ''})"
    return (
        f"wharf {version}; Python {platform.python_version()}, aiohttp {importlib.metadata.version('aiohttp')}, "
        f"uvloop {importlib.metadata.version('uvloop')}"
    )


def wharf_origin(name: str, data_dir: Path, version: str, **env: str) -> Server:
    """``wharf origin serve`` on a free loopback port, every default but ``env``."""
    return Server(
        name,
        [
            str(ROOT / ".venv" / "bin" / "wharf"),
            "origin",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(data_dir),
        ],
        version,
        # One token lasts the whole run; wharf verifies it once and caches the grant.
        env={"WHARF_ORIGIN_TOKEN_TTL_SECONDS": "86400", **env},
    )


def make_servers(scratch: Path) -> dict[str, Server]:
    wharf = wharf_origin("wharf", scratch / "wharf", wharf_version())
    dist_port = free_port()
    dist_dir = scratch / "distribution"
    dist_dir.mkdir()
    (dist_dir / "config.yml").write_text(
        f"""version: 0.1
log:
  level: warn
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: {dist_dir / "data"}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{dist_port}
"""
    )
    distribution = Server(
        "distribution",
        ["docker-registry", "serve", str(dist_dir / "config.yml")],
        "CNCF Distribution "
        + run(["docker-registry", "--version"]).split()[-1]
        + " (Debian docker-registry)",
        port=dist_port,
    )
    nginx_port = free_port()
    nginx_dir = scratch / "nginx"
    (nginx_dir / "logs").mkdir(parents=True)
    (nginx_dir / "html").mkdir()
    (nginx_dir / "nginx.conf").write_text(
        f"""# generated by bench/run.py
worker_processes 1;
daemon off;
master_process on;
user root root;
pid {nginx_dir}/nginx.pid;
error_log {nginx_dir}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path {nginx_dir}/tmp/body;
    proxy_temp_path {nginx_dir}/tmp/proxy;
    fastcgi_temp_path {nginx_dir}/tmp/fastcgi;
    uwsgi_temp_path {nginx_dir}/tmp/uwsgi;
    scgi_temp_path {nginx_dir}/tmp/scgi;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{nginx_port};
        root {nginx_dir}/html;
        location /v2/{REPO}/manifests/ {{ default_type {OCI_MANIFEST}; }}
    }}
}}
"""
    )
    (nginx_dir / "tmp").mkdir()
    nginx = Server(
        "nginx",
        ["nginx", "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf")],
        run(["nginx", "-v"]).strip().removeprefix("nginx version: "),
        registry=False,
        port=nginx_port,
    )
    return {"wharf": wharf, "distribution": distribution, "nginx": nginx}


def wait_listening(server: Server, timeout: float = 30) -> None:
    """Until the server answers HTTP; for wharf, learn its port from the "listening" log line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited at start:\n{server.log_tail()}")
        if server.port == 0:
            assert server.log_path is not None
            for line in server.log_path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("event") == "listening":
                        server.port = int(entry["url"].rsplit(":", 1)[1])
        if server.port:
            with contextlib.suppress(OSError):
                probe = "/v2/" if server.registry else "/"
                out = subprocess.run(
                    ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", server.url + probe],
                    check=False,
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout
                if out and out != "000":
                    return
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not come up in {timeout} s:\n{server.log_tail()}")


@contextlib.contextmanager
def running(servers: dict[str, Server], scratch: Path) -> Iterator[None]:
    try:
        for server in servers.values():
            server.start(scratch / f"{server.name}.log")
        for server in servers.values():
            wait_listening(server)
            log(f"{server.name} up at {server.url} (pid {server.proc.pid if server.proc else '?'})")
        yield
    finally:
        for server in servers.values():
            server.stop()
        log("servers stopped")


# --------------------------------------------------------------------------- seeding


async def push_blob(
    http: aiohttp.ClientSession, base: str, repo: str, digest: str, body: bytes | Path
) -> None:
    """POST /blobs/uploads/ then PUT <location>?digest= with the whole blob (Distribution 2.8's way)."""
    async with http.post(f"{base}/v2/{repo}/blobs/uploads/") as r:
        if r.status != 202:
            raise RuntimeError(
                f"POST {base}/v2/{repo}/blobs/uploads/ -> {r.status} {await r.text()}"
            )
        location = r.headers["Location"]
    if location.startswith("/"):
        location = base + location
    url = f"{location}{'&' if '?' in location else '?'}digest={digest}"
    if isinstance(body, Path):
        size = body.stat().st_size

        async def chunks(path: Path) -> AsyncIterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(4 * MiB):
                    yield chunk

        data: bytes | AsyncIterator[bytes] = chunks(body)
    else:
        size, data = len(body), body
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
    async with http.put(url, data=data, headers=headers) as r:
        if r.status != 201:
            raise RuntimeError(f"PUT {url} ({size} bytes) -> {r.status} {await r.text()}")


async def log_in(server: Server, data_dir: Path) -> None:
    """Wharf: the admin's token for the benchmark repository, and creds for skopeo."""
    password = (data_dir / "admin-password").read_text().strip()
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{server.url}/auth/token",
            params={"service": "wharf", "scope": f"repository:{REPO}:pull,push"},
            headers={"Authorization": aiohttp.encode_basic_auth("admin", password)},
        ) as r,
    ):
        if r.status != 200:
            raise RuntimeError(f"{server.name}: token -> {r.status} {await r.text()}")
        server.headers = {"Authorization": f"Bearer {(await r.json())['token']}"}
    server.creds = f"admin:{password}"


async def push_image(
    http: aiohttp.ClientSession, base: str, blobs: list[bytes], manifest: bytes
) -> None:
    """The small blobs, then the manifest tagged TAG, into REPO."""
    for blob in blobs:
        await push_blob(http, base, REPO, sha256_bytes(blob), blob)
    url = f"{base}/v2/{REPO}/manifests/{TAG}"
    async with http.put(url, data=manifest, headers={"Content-Type": OCI_MANIFEST}) as r:
        if r.status != 201:
            raise RuntimeError(f"PUT {url} -> {r.status} {await r.text()}")


async def seed_registry(server: Server, data: Data) -> None:
    timeout = aiohttp.ClientTimeout(total=600, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout, headers=server.headers) as http:
        await push_blob(http, server.url, REPO, data.big_digest, data.big)
        await push_image(http, server.url, data.small_blobs, data.manifest)


def seed_nginx(server: Server, scratch: Path, data: Data) -> None:
    docroot = scratch / "nginx" / "html"
    blobs = docroot / data.blob_path.lstrip("/")
    blobs.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data.big, blobs)  # its own copy, as each registry has its own
    for blob in data.small_blobs:
        (blobs.parent / sha256_bytes(blob)).write_bytes(blob)
    manifest = docroot / data.manifest_path.lstrip("/")
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_bytes(data.manifest)


async def verify(server: Server, data: Data) -> None:
    """Every server hands back identical bytes (this also warms each server's page cache)."""
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout, headers=server.headers) as http:
        async with http.get(server.url + data.manifest_path, headers={"Accept": OCI_MANIFEST}) as r:
            body = await r.read()
            if r.status != 200 or body != data.manifest:
                raise RuntimeError(
                    f"{server.name}: GET {data.manifest_path} -> {r.status} {body[:200]!r}"
                )
        async with http.head(server.url + data.small_blob_path) as r:
            if r.status != 200 or r.headers.get("Content-Length") != str(len(data.layer)):
                raise RuntimeError(
                    f"{server.name}: HEAD {data.small_blob_path} -> {r.status} {dict(r.headers)}"
                )
        h, size = hashlib.sha256(), 0
        async with http.get(server.url + data.blob_path) as r:
            if r.status != 200:
                raise RuntimeError(
                    f"{server.name}: GET {data.blob_path} -> {r.status} {await r.text()}"
                )
            async for chunk in r.content.iter_chunked(4 * MiB):
                h.update(chunk)
                size += len(chunk)
        if size != BIG_BLOB_BYTES or "sha256:" + h.hexdigest() != data.big_digest:
            raise RuntimeError(
                f"{server.name}: GET {data.blob_path} returned {size} bytes of other content"
            )


# --------------------------------------------------------------------------- measurements


def cpu_times() -> dict[str, tuple[int, int]]:
    """(busy, total) jiffies of each CPU, from /proc/stat."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            v = [int(x) for x in values]
            idle = v[3] + v[4]  # idle + iowait
            times[name] = (sum(v[:8]) - idle, sum(v[:8]))
    return times


def busy_between(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, float]:
    return {
        cpu: (after[cpu][0] - before[cpu][0]) / max(1, after[cpu][1] - before[cpu][1])
        for cpu in after
    }


def machine_busy(seconds: float = 2.0) -> dict[str, float]:
    before = cpu_times()
    time.sleep(seconds)
    return busy_between(before, cpu_times())


@dataclass(frozen=True)
class Run:
    """One sample of one measurement against one server."""

    value: float
    work: float  # units of work done (GB sent, requests answered, pushes), warm-up included
    note: str = ""
    transfers: tuple[float, ...] = ()  # per-transfer curl speeds (MB/s), blob GETs only


@dataclass
class Result:
    """The samples of one measurement against one server, and what they cost it."""

    samples: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    transfers: list[float] = field(default_factory=list)
    work: float = 0.0
    cpu_seconds: float = 0.0  # the server's user + system CPU during its samples
    wall_seconds: float = 0.0
    jiffies: dict[str, list[int]] = field(default_factory=dict)  # per CPU: [busy, total]

    def add(self, server: Server, fn: Callable[[], Run]) -> Run:
        cpu0, jiffies0, t0 = server.cpu_seconds(), cpu_times(), time.perf_counter()
        done = fn()
        cpu1, jiffies1, t1 = server.cpu_seconds(), cpu_times(), time.perf_counter()
        self.samples.append(done.value)
        if done.note and done.note not in self.notes:
            self.notes.append(done.note)
        self.transfers.extend(done.transfers)
        self.work += done.work
        self.cpu_seconds += cpu1 - cpu0
        self.wall_seconds += t1 - t0
        for cpu, (busy, total) in jiffies1.items():
            acc = self.jiffies.setdefault(cpu, [0, 0])
            acc[0] += busy - jiffies0[cpu][0]
            acc[1] += total - jiffies0[cpu][1]
        return done

    @property
    def value(self) -> float:
        return statistics.median(self.samples)

    @property
    def server_cpu(self) -> float:
        """Server CPU seconds per wall second (1.0: it kept CPU 0 busy by itself)."""
        return self.cpu_seconds / self.wall_seconds

    @property
    def cpu_per_unit(self) -> float:
        return self.cpu_seconds / self.work

    @property
    def cpu_busy(self) -> dict[str, float]:
        """Each CPU's non-idle share (softirq included) over the samples."""
        return {cpu: busy / max(1, total) for cpu, (busy, total) in self.jiffies.items()}

    @property
    def note(self) -> str:
        notes = list(self.notes)
        if self.transfers:
            notes.append(
                f"per-transfer curl speed_download median {statistics.median(self.transfers):.0f} MB/s"
            )
        return "; ".join(notes)


def blob_get(
    url: str,
    clients: int,
    downloads: int,
    warm_up: bool,
    headers: list[str],
    size: int = BIG_BLOB_BYTES,
) -> Run:
    """Aggregate MB/s (10^6 bytes/s) of ``clients`` concurrent curl processes.

    Each curl downloads the whole blob (``size`` bytes) ``downloads`` times in a row on one
    keep-alive connection, so that one sample lasts long enough to be stable (256 MiB at
    3 GB/s is 90 ms).
    """
    fmt = "%{http_code} %{size_download} %{speed_download}\n"
    if warm_up:
        subprocess.run(client("curl", "-sf", *headers, "-o", "/dev/null", url), check=True)
    argv = client("curl", "-s", *headers, "-w", fmt, *(["-o", "/dev/null", url] * downloads))
    start = time.perf_counter()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(clients)]
    try:
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    wall = time.perf_counter() - start
    speeds = []
    for out, p in zip(outs, procs, strict=True):
        transfers = [line.split() for line in out.splitlines()]
        if p.returncode != 0 or len(transfers) != downloads:
            raise RuntimeError(f"curl {url}: exit {p.returncode}, output {out!r}")
        for code, got, speed in transfers:
            if code != "200" or int(got) != size:
                raise RuntimeError(f"curl {url}: HTTP {code}, {got} bytes")
            speeds.append(float(speed) / 1e6)
    sent = clients * downloads * size
    return Run(
        sent / wall / 1e6,
        (sent + (size if warm_up else 0)) / 1e9,
        f"{clients} x {downloads} downloads per sample",
        tuple(speeds),
    )


def manifest_rps(url: str, seconds: int, warm_up: bool, headers: list[str]) -> Run:
    return wrk_rps(url, seconds, warm_up, ["-H", f"Accept: {OCI_MANIFEST}", *headers])


def wrk_rps(url: str, seconds: int, warm_up: bool, flags: list[str]) -> Run:
    """req/s of ``wrk -t1 -c64`` for ``seconds``; ``flags``: its -H headers, -s script."""
    warm_requests = 0
    if warm_up:  # 2 s, not in the sample: connections, caches, allocator
        warm = run(client("wrk", "-t1", "-c64", "-d2s", *flags, url))
        warm_count = re.search(r"(\d+) requests in", warm)
        warm_requests = int(warm_count[1]) if warm_count else 0
    out = run(
        client("wrk", "-t1", "-c64", f"-d{seconds}s", "--timeout", "10s", "--latency", *flags, url)
    )
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw non-2xx responses from {url}:\n{out}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    count = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if not (rps and p50 and p99 and count):
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    note = f"p50 {p50[1]} p99 {p99[1]}" + (f" (socket errors: {errors[1]})" if errors else "")
    return Run(float(rps[1]), int(count[1]) + warm_requests, note)


def head_rps(url: str, requests: int, warm_up: bool, headers: list[str]) -> Run:
    warm_requests = requests // 10 if warm_up else 0
    ab = ["ab", "-q", "-i", "-k", "-c", "64", *headers]
    if warm_up:  # not in the sample
        run(client(*ab, "-n", str(warm_requests), url))
    out = run(client(*ab, "-n", str(requests), url))
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    if (failed and int(failed[1])) or non2xx:
        raise RuntimeError(f"ab saw errors against {url}:\n{out}")
    rps = re.search(r"Requests per second:\s+([\d.]+)", out)
    keepalive = re.search(r"Keep-Alive requests:\s+(\d+)", out)
    if not rps:
        raise RuntimeError(f"unexpected ab output:\n{out}")
    reused = int(keepalive[1]) if keepalive else 0
    return Run(float(rps[1]), requests + warm_requests, f"keep-alive requests {reused}/{requests}")


SKOPEO_CACHE = Path("/var/lib/containers/cache")  # skopeo's blob info cache, as root


def isolated_skopeo(*argv: str) -> list[str]:
    """skopeo on the client core, with an empty blob info cache of its own.

    skopeo remembers in its blob info cache which repositories already hold a blob, and then
    mounts it from there (POST ?mount=&from=) instead of uploading it: every push after the
    first would measure a cross-repository mount, not an upload. So each push runs in a
    private mount namespace with a fresh tmpfs over the cache directory.
    """
    script = (
        f"mkdir -p {SKOPEO_CACHE} && mount -t tmpfs bench-skopeo-cache {SKOPEO_CACHE} && "
        f'exec taskset -c {CLIENT_CPU} skopeo "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "skopeo", *argv]


def skopeo_push(server: Server, layout: Path) -> Run:
    dest = f"docker://{server.hostport}/bench/push-{time.time_ns()}:v1"  # a fresh repository
    start = time.perf_counter()
    run(
        isolated_skopeo(
            "copy",
            "--quiet",
            "--insecure-policy",
            "--dest-tls-verify=false",
            *(["--dest-creds", server.creds] if server.creds else []),
            f"oci:{layout}:v1",
            dest,
        ),
        timeout=300,
    )
    return Run(time.perf_counter() - start, 1)


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    fmt: str
    cost: Callable[[float], str]  # server CPU seconds per unit of work, shown in its own unit


METRICS = [
    Metric(
        "blob1",
        "GET 256 MiB blob, 1 client",
        "MB/s",
        True,
        "{:.0f}",
        lambda v: f"{v * 1000:.0f} ms/GB",
    ),
    Metric(
        "blob8",
        "GET 256 MiB blob, 8 concurrent clients (aggregate)",
        "MB/s",
        True,
        "{:.0f}",
        lambda v: f"{v * 1000:.0f} ms/GB",
    ),
    Metric(
        "manifest",
        "GET manifest by tag (wrk -t1 -c64)",
        "req/s",
        True,
        "{:.0f}",
        lambda v: f"{v * 1e6:.0f} µs/req",
    ),
    Metric(
        "head",
        "HEAD small blob (ab -i -k -c64)",
        "req/s",
        True,
        "{:.0f}",
        lambda v: f"{v * 1e6:.0f} µs/req",
    ),
    Metric(
        "push",
        "skopeo copy push, 3 x 10 MiB layers",
        "s",
        False,
        "{:.2f}",
        lambda v: f"{v * 1000:.0f} ms/push",
    ),
]


def table(results: dict[str, dict[str, Result]]) -> str:
    w, d, n = results["wharf"], results["distribution"], results["nginx"]
    lines = [
        "| measurement | unit | wharf | distribution 2.8 | nginx (static) | wharf / distribution | wharf / nginx |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]

    def cell(row: dict[str, Result], m: Metric) -> str:
        return m.fmt.format(row[m.key].value) if m.key in row else "n/a"

    def ratio(row: dict[str, Result], m: Metric) -> str:
        if m.key not in row or m.key not in w:
            return "n/a"
        return f"{w[m.key].value / row[m.key].value:.2f}"

    for m in METRICS:
        better = "higher is better" if m.higher_is_better else "lower is better"
        lines.append(
            f"| {m.label} | {m.unit} ({better}) | {cell(w, m)} | {cell(d, m)} | {cell(n, m)} | "
            f"{ratio(d, m)} | {ratio(n, m)} |"
        )
    return "\n".join(lines)


def detail_table(results: dict[str, dict[str, Result]]) -> str:
    lines = [
        f"| measurement | server | samples | server CPU per unit | server process CPU | CPU {SERVER_CPU} busy | CPU {CLIENT_CPU} busy | notes |",
        "|---|---|---|--:|--:|--:|--:|---|",
    ]
    for m in METRICS:
        for name, row in results.items():
            if m.key in row:
                r = row[m.key]
                samples = ", ".join(m.fmt.format(s) for s in r.samples)
                server_busy = r.cpu_busy.get(f"cpu{SERVER_CPU}", 0)
                client_busy = r.cpu_busy.get(f"cpu{CLIENT_CPU}", 0)
                lines.append(
                    f"| {m.label} | {name} | {samples} | {m.cost(r.cpu_per_unit)} | "
                    f"{r.server_cpu:.0%} | {server_busy:.0%} | "
                    f"{client_busy:.0%} | {r.note} |"
                )
    return "\n".join(lines)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def tool_versions() -> dict[str, str]:
    def version(argv: list[str], pattern: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
            found = re.search(pattern, out.stdout + out.stderr)
            if found:
                return found[1]
        return "unknown"

    return {
        "curl": "curl " + version(["curl", "--version"], r"curl (\S+)"),
        "wrk": "wrk " + version(["wrk", "--version"], r"wrk (\S+)"),
        "ab": "ab " + version(["ab", "-V"], r"Version (\S+)"),
        "skopeo": "skopeo " + version(["skopeo", "--version"], r"version (\S+)"),
    }


def client_bound(results: dict[str, dict[str, Result]]) -> list[str]:
    """The (measurement, server) pairs whose client core was >= 90% busy."""
    found = []
    for m in METRICS:
        for name, row in results.items():
            if m.key in row and row[m.key].cpu_busy.get(f"cpu{CLIENT_CPU}", 0) >= 0.9:
                found.append(f"{m.label} / {name}")
    return found


def results_markdown(
    results: dict[str, dict[str, Result]],
    servers: dict[str, Server],
    args: argparse.Namespace,
    started: datetime.datetime,
    elapsed: float,
) -> str:
    command = ".venv/bin/python bench/run.py" + (
        " " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""
    )
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    tools = tool_versions()
    idle = ", ".join(f"{cpu} {frac:.0%}" for cpu, frac in args.idle_before.items())
    bound = client_bound(results)
    bound_text = (
        f"Client-bound here (CPU {CLIENT_CPU} >= 90% busy): {'; '.join(bound)}. For those, the "
        "server CPU per unit says more about the server than the throughput does."
        if bound
        else f"No measurement had its client core (CPU {CLIENT_CPU}) 90% busy or more."
    )
    quick = "\n**--quick run: single repetitions and short runs; not for the record.**\n"
    return f"""# Wharf benchmark results

Date: {started.strftime("%Y-%m-%d %H:%M:%S %Z")} (the run took {elapsed:.0f} s)

Command, from the repository root: `{command}`
{quick if args.quick else ""}
Machine: {os.cpu_count()} x {cpu_model()}, {mem_gib:.0f} GiB RAM, Linux {platform.release()}, loopback only.
CPU busy in the 2 s before the run: {idle}.

CPU pinning: every server runs under `taskset -c {SERVER_CPU}` (CPU {SERVER_CPU}); every client
(curl, wrk, ab, skopeo) under `taskset -c {CLIENT_CPU}` (CPU {CLIENT_CPU}). All three servers run for the
whole benchmark; one at a time is under load.

Servers:

- **wharf**: {servers["wharf"].version}.
  `wharf origin serve --listen 127.0.0.1:0 --data-dir DIR`, all defaults: SQLite metadata,
  filesystem blobs, log level info (one JSON line per request, to a file).
- **distribution**: {servers["distribution"].version}. Filesystem storage in a temp dir,
  `blobdescriptor: inmemory` cache, `log.level: warn` (its access log, one line per request to
  a file, stays on as by default), no auth.
- **nginx**: {servers["nginx"].version}. Generated nginx.conf: 1 worker, sendfile on, tcp_nopush on,
  keepalive, access_log off; the same bytes as static files under the same URL paths. It is the
  ceiling for this machine, not a registry.

Clients: {tools["curl"]}; {tools["wrk"]}; {tools["ab"]}; {tools["skopeo"]}.

## Results

{table(results)}

Medians of {args.blob_repeats} samples (blob GETs) or {args.repeats} repetitions (the rest), taken
round-robin across the servers. Ratios divide wharf's value by the peer's: for MB/s and req/s
above 1.00 means wharf is faster; for the push time (seconds) below 1.00 means wharf is faster.

## Details

- **server CPU per unit**: the server's user + system CPU time (all its processes) over the
  work done (GB sent, requests answered, pushes taken, warm-ups included): what each unit
  costs the server, bottleneck or not.
- **server process CPU**: that CPU time over the wall time of the samples; 100% means the
  server kept CPU {SERVER_CPU} busy by itself, i.e. the server was the bottleneck.
- **CPU N busy**: that core's non-idle share from /proc/stat over the same time, softirq
  (loopback TCP) included.

{bound_text}

{detail_table(results)}

## Method and notes

- Data: one 256 MiB blob of random bytes; a small OCI image (config blob, one ~10 KiB
  uncompressed tar layer, OCI image manifest tagged `{TAG}`) in repository `{REPO}`. Each registry
  is seeded through the HTTP API (POST /v2/{REPO}/blobs/uploads/, then PUT Location?digest=), then
  every server's manifest, small-blob HEAD and full 256 MiB blob (sha256) are checked.
- Repetitions are interleaved (wharf, distribution, nginx, wharf, ...), so slow drifts of this
  VM (a single curl over loopback varies by +-30% from minute to minute) fall on all alike.
  Each server gets one untimed warm-up per measurement (one download, 2 s of wrk, or
  {args.requests // 10} ab requests).
- Blob GET: `curl -s -w '%{{http_code}} %{{size_download}} %{{speed_download}}\\n' -o /dev/null URL ...`
  processes, each downloading the blob {args.downloads1} times (1 client) or {args.downloads8} times (8 clients)
  in a row over one keep-alive connection per sample; MB/s = 10^6 bytes/s; a sample's value is
  all its bytes over its wall time. Every transfer's status and size are checked.
- Manifest GET: `wrk -t1 -c64 -d{args.seconds}s --timeout 10s --latency -H 'Accept: {OCI_MANIFEST}'`
  on /v2/{REPO}/manifests/{TAG} (nginx: the static manifest file). Any non-2xx fails the run.
- HEAD: `ab -q -i -k -c 64 -n {args.requests}` on the small layer blob (nginx: the static file).
  ab speaks HTTP/1.0 with `Connection: Keep-Alive`; the notes column shows how many requests
  reused a connection. Any failed or non-2xx request fails the run.
- Push: `skopeo copy --quiet --insecure-policy --dest-tls-verify=false oci:LAYOUT:v1 docker://HOST/bench/push-T:v1`:
  three gzipped tar layers of 10 MiB random data (pre-compressed, else skopeo gzips them itself
  on the client core and the push measures its compressor), config and manifest, to a fresh
  repository each time; the wall time of the skopeo process. skopeo tries HTTPS first, then
  HTTP, against every registry alike. Each push runs in a private mount namespace with an
  empty tmpfs over skopeo's blob info cache (/var/lib/containers/cache): otherwise skopeo
  remembers where the layers went before and mounts them across repositories instead of
  uploading. nginx has no registry API: n/a.
- Durability differs: wharf fsyncs each upload and the blob directory before answering;
  Distribution's filesystem driver does not fsync.
- Auth differs: wharf requires a bearer token on every /v2/ request (curl, wrk and ab send the
  admin's token for bench/app; skopeo logs in with --dest-creds and fetches tokens itself);
  Distribution and nginx run without auth.
- Logging: wharf writes one JSON line per request (default level info), Distribution its access
  log line per request; nginx's access log is off.
- Why Distribution is slow on small requests (observed separately while building this
  benchmark, not measured by it): a CPU profile from its pprof endpoint during the manifest
  GET load put ~50% of its CPU under `handlers.(*App).context` -> `v2.NewURLBuilderFromRequest`
  -> `v2.Router` -> `regexp.Compile` (2.8 rebuilds its gorilla/mux router, regexps included, for
  every request) and most of the rest in the Go GC.
"""


# --------------------------------------------------------------------------- --auth mode

AUTH_SCOPE = f"repository:{REPO}:pull"
AUTH_AIM = 0.15  # the aim: auth costs less than 15% of small-request throughput
AUTH_METRICS = [
    *(m for m in METRICS if m.key in ("manifest", "head")),
    Metric(
        "token",
        "token issue on the auth-on origin (wrk -t1 -c64)",
        "req/s",
        True,
        "{:.0f}",
        lambda v: f"{v * 1e6:.0f} µs/req",
    ),
]


@dataclass(frozen=True)
class AuthSetup:
    """The two origins of --auth, seeded alike, and what the measurements send."""

    on: Server  # token auth on (the default); its headers carry a pull token for REPO
    off: Server  # WHARF_ORIGIN_AUTH_ENABLED=false
    password: str  # the admin's, on the auth-on origin
    manifest_path: str
    blob_path: str  # the small layer
    token_url: str  # GET /auth/token for AUTH_SCOPE, on the auth-on origin
    refresh_script: Path  # wrk Lua script: POST /auth/token grant_type=refresh_token

    @property
    def basic(self) -> str:
        return aiohttp.encode_basic_auth("admin", self.password)


@dataclass(frozen=True)
class AuthCase:
    """One line of the --auth results: a measurement against one origin, one way."""

    metric: str  # an AUTH_METRICS key
    key: str  # manifest, head: "on", "off"; token: "anonymous", "basic", "refresh"
    label: str
    how: str
    server: Server
    sample: Callable[[bool], Run]  # warm_up -> one sample
    before: Callable[[], float] | None = None  # untimed, before each sample; returns seconds


async def fetch_token(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> dict[str, object]:
    """A token response that grants exactly AUTH_SCOPE."""
    async with http.request(method, url, headers=headers, data=form) as r:
        if r.status != 200:
            raise RuntimeError(f"{method} {url} -> {r.status} {await r.text()}")
        body: dict[str, object] = await r.json()
    if body.get("scope") != AUTH_SCOPE:
        raise RuntimeError(f"{method} {url} granted {body.get('scope')!r}, not {AUTH_SCOPE}")
    return body


async def expect(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    status: int,
    headers: dict[str, str],
    body: bytes | None = None,
) -> None:
    async with http.request(method, url, headers=headers) as r:
        got = await r.read()
        if r.status != status or (body is not None and got != body):
            raise RuntimeError(f"{method} {url} -> {r.status} {got[:200]!r}, expected {status}")


async def auth_setup(
    on: Server, off: Server, scratch: Path, blobs: list[bytes], manifest: bytes
) -> AuthSetup:
    """Seed both origins alike; on the auth-on one, make REPO public and get a pull token and
    a refresh token; then check that every request measured later gets what it should."""
    await log_in(on, scratch / on.name)  # a pull,push token for seeding
    password = (scratch / on.name / "admin-password").read_text().strip()
    basic = {"Authorization": aiohttp.encode_basic_auth("admin", password)}
    timeout = aiohttp.ClientTimeout(total=120)
    for server in (on, off):
        async with aiohttp.ClientSession(timeout=timeout, headers=server.headers) as http:
            await push_image(http, server.url, blobs, manifest)
    manifest_path = f"/v2/{REPO}/manifests/{TAG}"
    blob_path = f"/v2/{REPO}/blobs/{sha256_bytes(blobs[-1])}"
    token_url = f"{on.url}/auth/token?service=wharf&scope={AUTH_SCOPE}"
    async with aiohttp.ClientSession(timeout=timeout) as http:
        visibility = f"{on.url}/api/v1/repositories/{REPO}/-/visibility"
        async with http.put(visibility, json={"public": True}, headers=basic) as r:
            if r.status != 200:
                raise RuntimeError(f"PUT {visibility} -> {r.status} {await r.text()}")
        pull = await fetch_token(http, "GET", token_url, headers=basic)
        on.headers = {"Authorization": f"Bearer {pull['token']}"}  # pull only, from now on
        signed_in = await fetch_token(
            http,
            "POST",
            f"{on.url}/auth/token",
            form={
                "grant_type": "password",
                "username": "admin",
                "password": password,
                "client_id": "bench",
                "access_type": "offline",
                "service": "wharf",
                "scope": AUTH_SCOPE,
            },
        )
        refresh_token = str(signed_in["refresh_token"])
        refresh_form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "service": "wharf",
            "client_id": "bench",
            "scope": AUTH_SCOPE,
        }
        await fetch_token(http, "POST", f"{on.url}/auth/token", form=refresh_form)
        anonymous = await fetch_token(http, "GET", token_url)
        accept = {"Accept": OCI_MANIFEST}
        anonymous_bearer = {"Authorization": f"Bearer {anonymous['token']}"}
        await expect(http, "GET", on.url + manifest_path, 200, accept | on.headers, manifest)
        await expect(http, "GET", on.url + manifest_path, 200, accept | anonymous_bearer, manifest)
        await expect(http, "GET", on.url + manifest_path, 401, accept)  # auth is on
        await expect(http, "GET", off.url + manifest_path, 200, accept, manifest)  # and off
        await expect(http, "HEAD", on.url + blob_path, 200, on.headers)
        await expect(http, "HEAD", off.url + blob_path, 200, {})
    body = urllib.parse.urlencode(refresh_form)
    if '"' in body or "\\" in body:  # it goes into a Lua string literal below
        raise RuntimeError(f"cannot quote the refresh form for Lua: {body!r}")
    script = scratch / "refresh.lua"
    script.write_text(
        "-- generated by bench/run.py: the OAuth2 refresh of a Docker client\n"
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'wrk.body = "{body}"\n'
    )
    return AuthSetup(on, off, password, manifest_path, blob_path, token_url, script)


def forget_logins(setup: AuthSetup) -> float:
    """Make the auth-on origin forget its remembered logins; time one Basic token request.

    Wharf remembers a successful argon2 check for 60 s, from the first request: left alone,
    that expiry would fall inside some sample, and all 64 of wrk's connections would miss at
    once. Revoking an app token drops every remembered login (none may outlive a revoked
    token), so: create and revoke one of the admin's, then send one Basic token request alone
    (it pays the argon2 check; its time is returned), and the sample that follows runs on a
    login remembered seconds ago.
    """
    api = f"{setup.on.url}/api/v1/me/tokens"
    auth = ["-H", f"Authorization: {setup.basic}"]
    label = json.dumps({"label": "bench-forget-logins"})
    made = json.loads(
        run(client("curl", "-sf", *auth, "-H", "Content-Type: application/json", "-d", label, api))
    )
    run(client("curl", "-sf", *auth, "-X", "DELETE", "-o", "/dev/null", f"{api}/{made['id']}"))
    out = run(
        client(
            "curl",
            "-s",
            *auth,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total}",
            setup.token_url,
        )
    )
    code, seconds = out.split()
    if code != "200":
        raise RuntimeError(f"GET {setup.token_url} with Basic credentials -> {code}")
    return float(seconds)


def auth_cases(setup: AuthSetup, args: argparse.Namespace) -> list[AuthCase]:
    on, off = setup.on, setup.off
    token = ["-H", f"Authorization: {setup.basic}"]
    return [
        AuthCase(
            "manifest",
            "on",
            "auth on",
            "`Authorization: Bearer <pull token>`",
            on,
            partial(
                manifest_rps, on.url + setup.manifest_path, args.seconds, headers=on.header_flags()
            ),
        ),
        AuthCase(
            "manifest",
            "off",
            "auth off",
            "no Authorization header",
            off,
            partial(manifest_rps, off.url + setup.manifest_path, args.seconds, headers=[]),
        ),
        AuthCase(
            "head",
            "on",
            "auth on",
            "`Authorization: Bearer <pull token>`",
            on,
            partial(head_rps, on.url + setup.blob_path, args.requests, headers=on.header_flags()),
        ),
        AuthCase(
            "head",
            "off",
            "auth off",
            "no Authorization header",
            off,
            partial(head_rps, off.url + setup.blob_path, args.requests, headers=[]),
        ),
        AuthCase(
            "token",
            "anonymous",
            "anonymous, public repository",
            f"`GET /auth/token?service=wharf&scope={AUTH_SCOPE}`, no Authorization header",
            on,
            partial(wrk_rps, setup.token_url, args.seconds, flags=[]),
        ),
        AuthCase(
            "token",
            "basic",
            "Basic, admin (remembered login)",
            "the same GET with `Authorization: Basic <admin:password>`",
            on,
            partial(wrk_rps, setup.token_url, args.seconds, flags=token),
            before=partial(forget_logins, setup),
        ),
        AuthCase(
            "token",
            "refresh",
            "refresh token",
            "`POST /auth/token`, form grant_type=refresh_token, refresh_token, service, "
            f"client_id=bench, scope={AUTH_SCOPE} (wrk Lua script)",
            on,
            partial(
                wrk_rps,
                on.url + "/auth/token",
                args.seconds,
                flags=["-s", str(setup.refresh_script)],
            ),
        ),
    ]


def measure_auth(
    cases: list[AuthCase],
    args: argparse.Namespace,
    results: dict[str, dict[str, Result]],
    cold: list[float],
) -> None:
    """Each measurement's repetitions, round-robin over its cases.

    For on and off the order alternates (on, off, off, on, ...), so that a drift of the
    machine favours neither; repetition i of on and of off ran back to back.
    """
    for metric in AUTH_METRICS:
        group = [case for case in cases if case.metric == metric.key]
        repeats = args.token_repeats if metric.key == "token" else args.repeats
        for i in range(repeats):
            for case in group[::-1] if metric.key != "token" and i % 2 else group:
                first = ""
                if case.before is not None:
                    took = case.before()
                    cold.append(took)
                    if took < 0.02:  # argon2 at Wharf's cost takes far longer than 20 ms
                        log(
                            f"WARNING: the Basic request before the sample took {took:.3f} s: "
                            "was the remembered login really forgotten?"
                        )
                    first = f" (one request before, argon2: {took * 1000:.0f} ms)"
                result = results.setdefault(metric.key, {}).setdefault(case.key, Result())
                done = result.add(case.server, partial(case.sample, i == 0))
                if not case.server.alive():
                    raise RuntimeError(
                        f"{case.server.name} died during {metric.key}:\n{case.server.log_tail()}"
                    )
                log(
                    f"{metric.key:8} {i + 1}/{repeats} {case.key:10} {done.value:10.2f}  "
                    f"{done.note}{first}"
                )
        for case in group:
            r = results[metric.key][case.key]
            log(
                f"{metric.key:8} {case.key:10} median {r.value:10.2f}  server CPU "
                f"{r.server_cpu:.0%}, {metric.cost(r.cpu_per_unit)}"
            )


def paired_ratios(results: dict[str, dict[str, Result]], metric: str) -> list[float]:
    """on / off of each repetition (the two ran back to back)."""
    on, off = results[metric]["on"].samples, results[metric]["off"].samples
    return [a / b for a, b in zip(on, off, strict=True)]


def auth_table(results: dict[str, dict[str, Result]]) -> str:
    lines = [
        "| measurement | unit | auth on | auth off | on / off | auth cost | "
        f"aim: cost < {AUTH_AIM:.0%} | server CPU per request, on / off | auth's server CPU per request |",
        "|---|---|--:|--:|--:|--:|---|--:|--:|",
    ]
    for m in AUTH_METRICS:
        if m.key == "token" or m.key not in results:
            continue
        on, off = results[m.key]["on"], results[m.key]["off"]
        ratio = statistics.median(paired_ratios(results, m.key))
        cost = 1 - ratio
        lines.append(
            f"| {m.label} | {m.unit} | {m.fmt.format(on.value)} | {m.fmt.format(off.value)} | "
            f"{ratio:.2f} | {cost:.0%} | {'met' if cost < AUTH_AIM else 'NOT met'} | "
            f"{m.cost(on.cpu_per_unit)} / {m.cost(off.cpu_per_unit)} | "
            f"{m.cost(on.cpu_per_unit - off.cpu_per_unit)} |"
        )
    return "\n".join(lines)


def token_table(results: dict[str, dict[str, Result]], cases: list[AuthCase]) -> str:
    m = AUTH_METRICS[-1]
    lines = [
        "| token request | how | req/s (higher is better) | server CPU per request |",
        "|---|---|--:|--:|",
    ]
    for case in cases:
        if case.metric == m.key and case.key in results.get(m.key, {}):
            r = results[m.key][case.key]
            lines.append(
                f"| {case.label} | {case.how} | {m.fmt.format(r.value)} | {m.cost(r.cpu_per_unit)} |"
            )
    return "\n".join(lines)


def auth_detail_table(results: dict[str, dict[str, Result]], cases: list[AuthCase]) -> str:
    lines = [
        f"| measurement | case | samples | server CPU per unit | server process CPU | CPU {SERVER_CPU} busy | CPU {CLIENT_CPU} busy | notes |",
        "|---|---|---|--:|--:|--:|--:|---|",
    ]
    for m in AUTH_METRICS:
        for case in cases:
            if case.metric == m.key and case.key in results.get(m.key, {}):
                r = results[m.key][case.key]
                samples = ", ".join(m.fmt.format(s) for s in r.samples)
                lines.append(
                    f"| {m.label} | {case.label} | {samples} | {m.cost(r.cpu_per_unit)} | "
                    f"{r.server_cpu:.0%} | {r.cpu_busy.get(f'cpu{SERVER_CPU}', 0):.0%} | "
                    f"{r.cpu_busy.get(f'cpu{CLIENT_CPU}', 0):.0%} | {r.note} |"
                )
    return "\n".join(lines)


def auth_markdown(
    results: dict[str, dict[str, Result]],
    cases: list[AuthCase],
    cold: list[float],
    version: str,
    args: argparse.Namespace,
    started: datetime.datetime,
    elapsed: float,
) -> str:
    command = ".venv/bin/python bench/run.py " + shlex.join(sys.argv[1:])
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    tools = tool_versions()
    idle = ", ".join(f"{cpu} {frac:.0%}" for cpu, frac in args.idle_before.items())
    quick = "\n**--quick run: single repetitions and short runs; not for the record.**\n"
    pairs = "; ".join(
        f"{m.label}: " + ", ".join(f"{r:.2f}" for r in paired_ratios(results, m.key))
        for m in AUTH_METRICS
        if m.key != "token" and m.key in results
    )
    cold_ms = ", ".join(f"{c * 1000:.0f}" for c in cold)
    cold_median = f"{statistics.median(cold) * 1000:.0f} ms" if cold else "n/a"
    return f"""# Wharf benchmark results: what token auth costs

Date: {started.strftime("%Y-%m-%d %H:%M:%S %Z")} (the run took {elapsed:.0f} s)

Command, from the repository root: `{command}`
{quick if args.quick else ""}
Machine: {os.cpu_count()} x {cpu_model()}, {mem_gib:.0f} GiB RAM, Linux {platform.release()}, loopback only.
CPU busy in the 2 s before the run: {idle}.

CPU pinning: both origins run under `taskset -c {SERVER_CPU}` (CPU {SERVER_CPU}); every client
(curl, wrk, ab) under `taskset -c {CLIENT_CPU}` (CPU {CLIENT_CPU}). Both origins run for the whole
benchmark; one at a time is under load.

Servers: two Wharf origins, {version}, each
`wharf origin serve --listen 127.0.0.1:0 --data-dir DIR` with every default (SQLite metadata,
filesystem blobs, log level info: one JSON line per request, to a file), seeded with the same
image, and `WHARF_ORIGIN_TOKEN_TTL_SECONDS=86400` (one token lasts the run):

- **auth on**: `WHARF_ORIGIN_AUTH_ENABLED=true`, the default: every /v2/ request needs a bearer token.
- **auth off**: `WHARF_ORIGIN_AUTH_ENABLED=false` (allowed on loopback only): no bearer
  middleware; /v2/ answers anonymous requests.

Clients: {tools["curl"]}; {tools["wrk"]}; {tools["ab"]}.

## Auth on vs off

{auth_table(results)}

Each of {args.repeats} repetitions measures both origins back to back (the order alternating:
on, off, off, on, ...). **on / off** is the median over the repetitions of the auth-on
origin's req/s over the auth-off origin's in the same repetition; **auth cost** is
1 - on / off, the share of small-request throughput that token auth takes (the aim: under
{AUTH_AIM:.0%}). **auth's server CPU per request** is the difference of the two origins' CPU time
per request: the same cost in µs, steadier than the throughput of a VM. The auth-on origin is
sent the same pull token for `{REPO}` throughout, so this is the cost of a token already seen
(its signature verified once, its grant then reused), the case the aim is about: a client keeps
its token for a whole pull or push. What a new token costs is in the next table.

## Token issue (auth-on origin)

{token_table(results, cases)}

Medians of {args.token_repeats} repetitions of `wrk -t1 -c64 -d{args.seconds}s`, round-robin over the three.

- **anonymous, public repository**: `{REPO}` was made public first
  (`PUT /api/v1/repositories/{REPO}/-/visibility` with `{{"public": true}}`, Basic admin);
  the anonymous token grants `{AUTH_SCOPE}`.
- **Basic, admin**: the origin remembers a successful argon2 check for 60 s under a keyed hash
  of the credentials, so the steady state, and what this row measures, is the remembered path:
  no argon2 in the sample. Before each sample the benchmark makes the origin forget its
  remembered logins (it creates and revokes one of the admin's app tokens through
  `/api/v1/me/tokens`; a revocation drops them all) and sends one Basic token request on its own,
  which pays the argon2 check: {cold_median} (curl's time_total; samples {cold_ms} ms). The sample
  then runs well inside the 60 s; otherwise the expiry could fall inside a sample, and all 64
  connections would miss and pay argon2 at once.
- **refresh token**: one refresh token, obtained first (`POST /auth/token` with
  grant_type=password, username, password, client_id=bench, access_type=offline,
  service=wharf), is sent with every request.

Every token request asks for `{AUTH_SCOPE}`, and before measuring each kind is checked to grant
exactly that (and the anonymous token to fetch the manifest).

## Details

- **server CPU per unit**: the origin's user + system CPU time over the requests answered
  (warm-ups included).
- **server process CPU**: that CPU time over the wall time of the samples; 100% means the
  origin kept CPU {SERVER_CPU} busy by itself, i.e. it was the bottleneck.
- **CPU N busy**: that core's non-idle share from /proc/stat over the same time.

On / off per repetition: {pairs}.

{auth_detail_table(results, cases)}

## Method and notes

- Data: a small OCI image (config blob, one ~10 KiB uncompressed tar layer, OCI image manifest
  tagged `{TAG}`) in repository `{REPO}`, pushed to both origins through the OCI API (POST
  /v2/{REPO}/blobs/uploads/, then PUT Location?digest=). Before measuring: the manifest and the
  layer's HEAD answer 200 on both origins (with the pull token on the auth-on one), and the
  auth-on origin answers 401 without a token.
- Manifest GET: `wrk -t1 -c64 -d{args.seconds}s --timeout 10s --latency -H 'Accept: {OCI_MANIFEST}'`
  on /v2/{REPO}/manifests/{TAG}, plus `-H 'Authorization: Bearer <token>'` on the auth-on origin.
- HEAD: `ab -q -i -k -c 64 -n {args.requests}` on the layer blob (ab speaks HTTP/1.0 with
  `Connection: Keep-Alive`), plus `-H 'Authorization: Bearer <token>'` on the auth-on origin.
- Token issue: `wrk -t1 -c64 -d{args.seconds}s --timeout 10s --latency` on the URLs above; the
  refresh-token POST through a wrk Lua script setting the method, the form body and its
  Content-Type.
- Each case gets one untimed warm-up on its first repetition (2 s of wrk, or {args.requests // 10}
  ab requests). Any failed or non-2xx request fails the run.
- Both origins log one JSON line per request, token requests included, and the auth-on
  origin also records sign-ins and token grants in its audit log.
"""


def auth_main(args: argparse.Namespace) -> int:
    """--auth: two wharf origins, auth on and off, same data; see bench/README.md."""
    started, t0 = datetime.datetime.now(datetime.UTC), time.perf_counter()
    scratch = start_run(args, ("taskset", "curl", "wrk", "ab"))
    version = wharf_version()
    servers = {
        name: wharf_origin(
            f"wharf-auth-{name}",
            scratch / f"wharf-auth-{name}",
            version,
            WHARF_ORIGIN_AUTH_ENABLED="true" if name == "on" else "false",
        )
        for name in ("on", "off")
    }
    results: dict[str, dict[str, Result]] = {}
    cold: list[float] = []
    try:
        config, layer, manifest = small_image()
        with running(servers, scratch):
            setup = asyncio.run(
                auth_setup(servers["on"], servers["off"], scratch, [config, layer], manifest)
            )
            log("both origins seeded and checked; the repository is public on the auth-on one")
            cases = auth_cases(setup, args)
            measure_auth(cases, args, results, cold)
    except BaseException:
        log(f"FAILED; scratch kept at {scratch} (server logs *.log)")
        raise
    else:
        if not args.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            log(f"scratch kept at {scratch}")
    elapsed = time.perf_counter() - t0
    print(auth_table(results))
    print()
    print(token_table(results, cases))
    print()
    print(auth_detail_table(results, cases))
    if args.output is not None:
        args.output.write_text(auth_markdown(results, cases, cold, version, args, started, elapsed))
        log(f"wrote {args.output}")
    log(f"done in {elapsed:.0f} s")
    return 0


# --------------------------------------------------------------------------- --edge mode

EDGE_NAMESPACE = "up"  # the edge's mirror of the upstream: up/bench/app is bench/app there
EDGE_TTFB_AIM = 0.005  # cold-miss time to first byte within 5 ms of pulling directly
EDGE_RPS_AIM = 3.0  # hits: at least 3x the Distribution proxy's small-request rate
EDGE_SETTLE = 1.0  # s without a new upstream access-log line before counting
EDGE_VIAS = ("edge", "proxy")  # what is measured on hits, in round-robin order
COLD_VIAS = ("edge", "proxy", "direct")


@dataclass(frozen=True)
class Blob:
    path: Path
    digest: str
    size: int


def random_blob(path: Path, size: int) -> Blob:
    h = hashlib.sha256()
    with path.open("wb") as f:
        for offset in range(0, size, MiB):
            chunk = os.urandom(min(MiB, size - offset))
            h.update(chunk)
            f.write(chunk)
    return Blob(path, "sha256:" + h.hexdigest(), size)


@dataclass(frozen=True)
class EdgeData:
    big: Blob  # the hit throughput blob (256 MiB)
    config: bytes  # the small image, as in the main run
    layer: bytes
    manifest: bytes
    cold: list[Blob]  # one per cold-miss round, never asked for before it
    herd: list[Blob]  # one per 50-client repetition

    @property
    def all_blobs(self) -> list[Blob]:
        return [self.big, *self.cold, *self.herd]


def make_edge_data(scratch: Path, args: argparse.Namespace) -> EdgeData:
    blobs = scratch / "blobs"
    blobs.mkdir()
    config, layer, manifest = small_image()
    return EdgeData(
        random_blob(blobs / "big", args.big_bytes),
        config,
        layer,
        manifest,
        [random_blob(blobs / f"cold-{i}", args.cold_bytes) for i in range(args.cold_rounds)],
        [random_blob(blobs / f"herd-{i}", args.herd_bytes) for i in range(args.herd_repeats)],
    )


@dataclass(frozen=True)
class Via:
    """A way to pull REPO: through the edge, through the Distribution proxy, or directly."""

    key: str
    label: str
    server: Server
    repo: str  # the repository's name as the client asks this server for it

    def blob_url(self, digest: str) -> str:
        return f"{self.server.url}/v2/{self.repo}/blobs/{digest}"

    @property
    def manifest_url(self) -> str:
        return f"{self.server.url}/v2/{self.repo}/manifests/{TAG}"


def distribution_config(folder: Path, port: int, proxy_of: str | None = None) -> Path:
    """A Distribution config: as the main run's (filesystem, inmemory descriptor cache,
    log level warn, the access log on), and a pull-through proxy of ``proxy_of`` if given."""
    folder.mkdir()
    proxy = f"proxy:\n  remoteurl: {proxy_of}\n" if proxy_of else ""
    path = folder / "config.yml"
    path.write_text(
        f"""version: 0.1
log:
  level: warn
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: {folder / "data"}
http:
  addr: 127.0.0.1:{port}
{proxy}"""
    )
    return path


def make_edge_servers(scratch: Path) -> tuple[dict[str, Server], dict[str, Server]]:
    """(the upstream and the idle origin; the edge and the Distribution proxy): the second
    pair is started once the first is up and seeded (the edge needs the origin's port)."""
    dist_version = (
        "CNCF Distribution "
        + run(["docker-registry", "--version"]).split()[-1]
        + " (Debian docker-registry)"
    )
    up_port, proxy_port = free_port(), free_port()
    upstream = Server(
        "upstream",
        ["docker-registry", "serve", str(distribution_config(scratch / "upstream", up_port))],
        dist_version,
        port=up_port,
    )
    origin = wharf_origin("origin", scratch / "origin", wharf_version())
    proxy_config = distribution_config(scratch / "proxy", proxy_port, upstream.url)
    proxy = Server(
        "proxy", ["docker-registry", "serve", str(proxy_config)], dist_version, port=proxy_port
    )
    edge_config = scratch / "edge.toml"
    edge_config.write_text(
        "# generated by bench/run.py: the upstream Distribution, mirrored as up/...\n"
        "[[edge.mirrors]]\n"
        f'namespace = "{EDGE_NAMESPACE}"\n'
        f'url = "{upstream.url}"\n'
        "public = true\n"
    )
    edge = wharf_edge(
        "edge",
        edge_config,
        "127.0.0.1:0",
        "http://127.0.0.1:0",  # set once the origin's port is known
        scratch / "edge",
        origin.version,
    )
    return {"upstream": upstream, "origin": origin}, {"edge": edge, "proxy": proxy}


class AccessLog:
    """The upstream Distribution's access log: one Apache combined line per request, on its
    stdout (on at every log level), written when the response is complete. Read from where
    the last read stopped."""

    LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3}) (\d+|-)')

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[tuple[str, str, int, int]]:
        """(method, path, status, bytes sent) of each request logged since the last read."""
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        found = []
        for line in complete.decode(errors="replace").splitlines():
            entry = self.parse(line)
            if entry is not None:
                found.append(entry)
        return found

    def parse(self, line: str) -> tuple[str, str, int, int] | None:
        """(method, path, status, bytes sent) of one request's line; None for other lines."""
        m = self.LINE.search(line)
        if m is None:
            return None
        return m[1], m[2], int(m[3]), 0 if m[4] == "-" else int(m[4])

    def settle(
        self, quiet: float = EDGE_SETTLE, timeout: float = 60
    ) -> list[tuple[str, str, int, int]]:
        """Everything logged until no new line came for ``quiet`` seconds."""
        entries: list[tuple[str, str, int, int]] = []
        deadline, last = time.monotonic() + timeout, time.monotonic()
        while time.monotonic() < deadline:
            new = self.read()
            if new:
                entries.extend(new)
                last = time.monotonic()
            elif time.monotonic() - last >= quiet:
                break
            time.sleep(0.05)
        return entries


@dataclass(frozen=True)
class Fetches:
    """What the upstream logged for one blob (or for everything) over some time."""

    gets: int = 0
    heads: int = 0
    sent: int = 0  # body bytes the upstream sent
    other: int = 0  # requests for other paths

    @classmethod
    def of(cls, entries: list[tuple[str, str, int, int]], path: str | None) -> Fetches:
        gets = heads = sent = other = 0
        for method, uri, _status, nbytes in entries:
            if path is not None and uri.split("?")[0] != path:
                other += 1
            elif method == "GET":
                gets, sent = gets + 1, sent + nbytes
            elif method == "HEAD":
                heads += 1
            else:
                other += 1
        return cls(gets, heads, sent, other)

    @property
    def requests(self) -> int:
        return self.gets + self.heads + self.other


def request_kinds(entries: list[tuple[str, str, int, int]]) -> collections.Counter[str]:
    """Access-log entries by method and path, digests and query strings elided."""
    return collections.Counter(
        f"{method} {re.sub(r'sha256:[0-9a-f]{64}', '<digest>', uri.split('?')[0])}"
        for method, uri, _status, _sent in entries
    )


@dataclass
class EdgeResult(Result):
    """A hit measurement against the edge or the proxy, and what the upstream did meanwhile."""

    upstream_cpu_seconds: float = 0.0
    upstream_requests: int = 0
    client_requests: float = 0.0  # requests the samples made (from the work done)
    upstream_kinds: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def upstream_note(self) -> str:
        if not self.upstream_kinds:
            return "no upstream request"
        return "upstream: " + ", ".join(
            f"{kind} x{n}" for kind, n in self.upstream_kinds.most_common()
        )


@dataclass(frozen=True)
class ColdSample:
    via: str
    round: int
    ttfb: float  # curl's time_starttransfer, s
    total: float  # curl's time_total, s
    fetches: Fetches  # the upstream's log for this blob during this pull (and until quiet)


@dataclass(frozen=True)
class HerdRun:
    via: str
    repetition: int
    fetches: Fetches
    wall: float  # until the last of the clients had the whole blob
    first_bytes: list[float]  # each client's time to its response's first line
    counters: dict[str, float]  # the edge's /metrics counters that moved (edge only)


async def edge_metrics_now(server: Server) -> dict[str, float]:
    """The edge's own counters from /metrics (wharf_edge_* samples, by name and labels)."""
    return await prometheus_samples(server, "wharf_edge_")


async def prometheus_samples(server: Server, prefix: str) -> dict[str, float]:
    """A Wharf server's /metrics samples whose names start with ``prefix``, by name and labels."""
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as r:
        if r.status != 200:
            raise RuntimeError(f"{server.name}: GET /metrics -> {r.status}")
        text = await r.text()
    found = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                found[name] = float(value)
    return found


def counters_moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """How the edge's cache and fill counters moved (hits, misses, joins, bytes filled)."""
    kept = ("wharf_edge_cache_hits", "wharf_edge_cache_misses", "wharf_edge_fill")
    return {
        k.removeprefix("wharf_edge_"): v - before.get(k, 0.0)
        for k, v in after.items()
        if k.startswith(kept) and k.split("{")[0].endswith("_total") and v != before.get(k, 0.0)
    }


async def get_checked(
    http: aiohttp.ClientSession, url: str, blob: Blob | None = None, body: bytes | None = None
) -> None:
    """GET ``url``; its bytes must be ``blob``'s (by sha256, streamed) or ``body``."""
    headers = {"Accept": OCI_MANIFEST} if "/manifests/" in url else {}
    async with http.get(url, headers=headers) as r:
        if r.status != 200:
            raise RuntimeError(f"GET {url} -> {r.status} {(await r.read())[:200]!r}")
        if body is not None:
            got = await r.read()
            if got != body:
                raise RuntimeError(f"GET {url}: {len(got)} bytes, not the {len(body)} expected")
            return
        assert blob is not None
        h, size = hashlib.sha256(), 0
        async for chunk in r.content.iter_chunked(4 * MiB):
            h.update(chunk)
            size += len(chunk)
    if size != blob.size or "sha256:" + h.hexdigest() != blob.digest:
        raise RuntimeError(f"GET {url}: {size} bytes of other content (expected {blob.digest})")


async def seed_upstream(upstream: Server, data: EdgeData) -> None:
    """Push everything to the upstream, then read every blob back from it (checked): this also
    leaves the upstream's caches equally warm for every blob, before any is timed."""
    timeout = aiohttp.ClientTimeout(total=900, sock_read=120)
    direct = Via("direct", "direct", upstream, REPO)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for blob in data.all_blobs:
            await push_blob(http, upstream.url, REPO, blob.digest, blob.path)
        await push_image(http, upstream.url, [data.config, data.layer], data.manifest)
        await get_checked(http, direct.manifest_url, body=data.manifest)
        for blob in data.all_blobs:
            await get_checked(http, direct.blob_url(blob.digest), blob)


async def warm_via(via: Via, data: EdgeData) -> None:
    """Pull the image and the big blob through ``via`` (filling its cache), checking bytes."""
    timeout = aiohttp.ClientTimeout(total=600, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await get_checked(http, via.manifest_url, body=data.manifest)
        for small in (data.config, data.layer):
            await get_checked(http, via.blob_url(sha256_bytes(small)), body=small)
        async with http.head(via.blob_url(sha256_bytes(data.layer))) as r:
            if r.status != 200 or r.headers.get("Content-Length") != str(len(data.layer)):
                raise RuntimeError(f"HEAD {via.blob_url(sha256_bytes(data.layer))} -> {r.status}")
        await get_checked(http, via.blob_url(data.big.digest), data.big)


def warm_caches(vias: dict[str, Via], data: EdgeData, upstream_log: AccessLog) -> dict[str, int]:
    """Fill the edge's and the proxy's caches with the image and the big blob, and wait until
    a GET of the big blob through each is a hit (no upstream GET). Returns how many upstream
    GETs of the big blob each needed."""
    path = f"/v2/{REPO}/blobs/{data.big.digest}"
    fills = {}
    for key in EDGE_VIAS:
        upstream_log.settle()
        asyncio.run(warm_via(vias[key], data))
        fills[key] = Fetches.of(upstream_log.settle(), path).gets
        for attempt in range(20):  # the proxy stores what it fetched in the background
            asyncio.run(warm_via(vias[key], data))
            again = Fetches.of(upstream_log.settle(), path)
            if again.gets == 0:
                break
            fills[key] += again.gets
            log(f"{key}: GET of the big blob went upstream again ({attempt + 1}); waiting")
            time.sleep(1)
        else:
            raise RuntimeError(f"{key} never served the big blob from its cache")
        log(f"{key}: cache warm; the big blob took {fills[key]} upstream GET(s)")
    return fills


def cold_fetch(url: str, size: int) -> tuple[float, float]:
    """(time_starttransfer, time_total) of one curl, new connection, body discarded."""
    fmt = "%{http_code} %{size_download} %{time_starttransfer} %{time_total}"
    out = run(client("curl", "-s", "-o", "/dev/null", "-w", fmt, url))
    code, got, ttfb, total = out.split()
    if code != "200" or int(got) != size:
        raise RuntimeError(f"curl {url}: HTTP {code}, {got} bytes (expected {size})")
    return float(ttfb), float(total)


async def herd_get(
    server: Server, path: str, clients: int, blob: Blob
) -> tuple[float, list[float]]:
    """``clients`` GETs of ``path`` sent at once, on connections opened beforehand, every
    body checked by sha256. Returns (wall time to the last byte, each one's first line)."""
    conns = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(clients)]
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {server.hostport}\r\nUser-Agent: bench-herd\r\n"
        "Connection: close\r\n\r\n"
    ).encode()

    start = time.perf_counter()
    for _, writer in conns:
        writer.write(request)  # all leave within a millisecond or so
    what = f"herd GET {server.url}{path}"
    async with asyncio.timeout(600):
        times = await asyncio.gather(
            *(read_blob_response(r, w, start, blob, what) for r, w in conns)
        )
    return time.perf_counter() - start, [first for first, _ in times]


async def read_blob_response(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    start: float,
    blob: Blob,
    what: str,
) -> tuple[float, float]:
    """Read one raw HTTP/1.1 response whole and check it is ``blob`` (status 200, size,
    sha256); then close the connection. Returns (its first line, its last byte), in seconds
    since ``start``."""
    try:
        status = await reader.readline()
        first = time.perf_counter() - start
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        length = re.search(r"(?im)^content-length:\s*(\d+)", head)
        if not status.startswith(b"HTTP/1.1 200") or length is None:
            raise RuntimeError(f"{what}: {status!r} {head[:300]!r}")
        h, size = hashlib.sha256(), 0
        while size < int(length[1]):
            chunk = await reader.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            size += len(chunk)
        last = time.perf_counter() - start
        if size != blob.size or "sha256:" + h.hexdigest() != blob.digest:
            raise RuntimeError(f"{what}: {size} bytes of other content (expected {blob.digest})")
        return first, last
    finally:
        writer.close()


def edge_metric_list(args: argparse.Namespace) -> list[Metric]:
    size = f"{args.big_bytes // MiB} MiB"
    return [
        Metric(
            "blob1",
            f"hit: GET {size} blob, 1 client",
            "MB/s",
            True,
            "{:.0f}",
            lambda v: f"{v * 1000:.0f} ms/GB",
        ),
        Metric(
            "blob8",
            f"hit: GET {size} blob, 8 concurrent clients (aggregate)",
            "MB/s",
            True,
            "{:.0f}",
            lambda v: f"{v * 1000:.0f} ms/GB",
        ),
        Metric(
            "manifest",
            "hit: GET manifest by tag (wrk -t1 -c64)",
            "req/s",
            True,
            "{:.0f}",
            lambda v: f"{v * 1e6:.0f} µs/req",
        ),
    ]


def measure_edge_hits(
    vias: dict[str, Via],
    upstream: Server,
    upstream_log: AccessLog,
    args: argparse.Namespace,
    results: dict[str, dict[str, EdgeResult]],
) -> None:
    """Hits on the edge and the proxy, round-robin (the order alternating each repetition)."""
    for metric in edge_metric_list(args):
        repeats = args.blob_repeats if metric.key.startswith("blob") else args.repeats
        for i in range(repeats):
            for key in EDGE_VIAS[::-1] if i % 2 else EDGE_VIAS:
                via, first = vias[key], i == 0
                sample: Callable[[], Run]
                if metric.key.startswith("blob"):
                    clients = 1 if metric.key == "blob1" else 8
                    downloads = args.downloads1 if clients == 1 else args.downloads8
                    url = via.blob_url(args.big_digest)
                    sample = partial(blob_get, url, clients, downloads, first, [], args.big_bytes)
                else:
                    sample = partial(manifest_rps, via.manifest_url, args.seconds, first, [])
                result = results.setdefault(key, {}).setdefault(metric.key, EdgeResult())
                upstream_log.read()
                up0 = upstream.cpu_seconds()
                done = result.add(via.server, sample)
                result.upstream_cpu_seconds += upstream.cpu_seconds() - up0
                meanwhile = upstream_log.settle(quiet=0.3)
                asked = len(meanwhile)
                result.upstream_requests += asked
                result.upstream_kinds.update(request_kinds(meanwhile))
                if metric.key == "manifest":
                    result.client_requests += done.work
                else:
                    result.client_requests += clients * downloads + (1 if first else 0)
                if not via.server.alive():
                    raise RuntimeError(f"{key} died during {metric.key}:\n{via.server.log_tail()}")
                log(
                    f"{metric.key:8} {i + 1}/{repeats} {key:6} {done.value:10.2f}  {done.note}; "
                    f"upstream requests meanwhile: {asked}"
                )
        for key in EDGE_VIAS:
            r = results[key][metric.key]
            log(
                f"{metric.key:8} {key:6} median {r.value:10.2f}  server CPU {r.server_cpu:.0%}, "
                f"{metric.cost(r.cpu_per_unit)}"
            )


def measure_cold(
    vias: dict[str, Via], data: EdgeData, upstream_log: AccessLog, args: argparse.Namespace
) -> list[ColdSample]:
    """Round i pulls cold blob i through the edge, the proxy and directly, the order rotating;
    the edge and the proxy have never been asked for it."""
    samples = []
    upstream_log.settle()
    for i, blob in enumerate(data.cold):
        order = COLD_VIAS[i % 3 :] + COLD_VIAS[: i % 3]
        for key in order:
            ttfb, total = cold_fetch(vias[key].blob_url(blob.digest), blob.size)
            # Until quiet: nothing of this pull still running when the next one starts.
            fetches = Fetches.of(upstream_log.settle(), f"/v2/{REPO}/blobs/{blob.digest}")
            samples.append(ColdSample(key, i, ttfb, total, fetches))
            log(
                f"cold     {i + 1}/{len(data.cold)} {key:6} first byte {ttfb * 1000:7.2f} ms, "
                f"total {total * 1000:7.1f} ms; upstream GET {fetches.gets} HEAD {fetches.heads}"
            )
    return samples


def measure_herd(
    vias: dict[str, Via], data: EdgeData, upstream_log: AccessLog, args: argparse.Namespace
) -> list[HerdRun]:
    """``args.herd_clients`` concurrent GETs of a blob neither cache holds, through the edge
    and through the proxy (the order alternating); what the upstream saw of it."""
    runs = []
    for i, blob in enumerate(data.herd):
        for key in EDGE_VIAS[::-1] if i % 2 else EDGE_VIAS:
            via = vias[key]
            path = f"/v2/{via.repo}/blobs/{blob.digest}"
            upstream_log.settle()
            before = asyncio.run(edge_metrics_now(via.server)) if key == "edge" else {}
            wall, firsts = asyncio.run(herd_get(via.server, path, args.herd_clients, blob))
            fetches = Fetches.of(upstream_log.settle(), f"/v2/{REPO}/blobs/{blob.digest}")
            moved = (
                counters_moved(before, asyncio.run(edge_metrics_now(via.server)))
                if key == "edge"
                else {}
            )
            runs.append(HerdRun(key, i, fetches, wall, firsts, moved))
            log(
                f"herd     {i + 1}/{len(data.herd)} {key:6} {args.herd_clients} clients, all "
                f"checked, in {wall:.2f} s; upstream GET {fetches.gets} HEAD {fetches.heads} "
                f"({fetches.sent / MiB:.0f} MiB sent)"
                + (f"; edge counters {moved}" if moved else "")
            )
    return runs


async def check_cached(vias: dict[str, Via], blobs: list[Blob]) -> None:
    """After the cold pulls: what the edge and the proxy kept is the right bytes."""
    timeout = aiohttp.ClientTimeout(total=600, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for key in EDGE_VIAS:
            for blob in blobs:
                await get_checked(http, vias[key].blob_url(blob.digest), blob)


# -- the --edge report


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def signed_ms(seconds: float) -> str:
    return f"{seconds * 1000:+.1f} ms"


def paired(samples: list[ColdSample], key: str, attr: str) -> list[float]:
    """Per round: ``key``'s value minus the direct pull's (same blob, same round)."""
    by = {(s.via, s.round): float(getattr(s, attr)) for s in samples}
    rounds = sorted({s.round for s in samples})
    return [by[(key, r)] - by[("direct", r)] for r in rounds if (key, r) in by]


def edge_hits_table(results: dict[str, dict[str, EdgeResult]], args: argparse.Namespace) -> str:
    lines = [
        "| measurement | unit | wharf edge | Distribution proxy | edge / proxy | aim | met |",
        "|---|---|--:|--:|--:|---|---|",
    ]
    for m in edge_metric_list(args):
        if m.key not in results.get("edge", {}) or m.key not in results.get("proxy", {}):
            continue
        e, p = results["edge"][m.key].value, results["proxy"][m.key].value
        aim = EDGE_RPS_AIM if m.key == "manifest" else 1.0
        lines.append(
            f"| {m.label} | {m.unit} (higher is better) | {m.fmt.format(e)} | {m.fmt.format(p)} | "
            f"{e / p:.2f} | edge / proxy >= {aim:.2f} | {'met' if e / p >= aim else 'NOT met'} |"
        )
    return "\n".join(lines)


def cold_table(samples: list[ColdSample]) -> str:
    labels = {
        "edge": "through the wharf edge",
        "proxy": "through the Distribution proxy",
        "direct": "directly from the upstream",
    }
    lines = [
        "| cold pull | first byte, median | first byte, min - max | total, median | "
        "total, min - max | first byte minus direct's (median of rounds) | "
        "total minus direct's (median of rounds) | upstream GETs per blob | upstream HEADs per blob |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for key in COLD_VIAS:
        mine = [s for s in samples if s.via == key]
        if not mine:
            continue
        ttfb = [s.ttfb for s in mine]
        total = [s.total for s in mine]
        gets = sorted({s.fetches.gets for s in mine})
        heads = sorted({s.fetches.heads for s in mine})
        if key == "direct":
            d_ttfb = d_total = "-"
        else:
            d_ttfb = signed_ms(statistics.median(paired(samples, key, "ttfb")))
            d_total = signed_ms(statistics.median(paired(samples, key, "total")))
        lines.append(
            f"| {labels[key]} | {ms(statistics.median(ttfb))} | {ms(min(ttfb))} - {ms(max(ttfb))} | "
            f"{ms(statistics.median(total))} | {ms(min(total))} - {ms(max(total))} | "
            f"{d_ttfb} | {d_total} | {', '.join(map(str, gets))} | {', '.join(map(str, heads))} |"
        )
    return "\n".join(lines)


def herd_table(runs: list[HerdRun], args: argparse.Namespace) -> str:
    lines = [
        f"| {args.herd_clients} concurrent cold GETs | upstream GETs of the blob, per repetition | "
        "upstream HEADs | upstream bytes sent | all responses complete | first response line, "
        "median / max | the edge's own counters (last repetition) |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for key, label in (("edge", "wharf edge"), ("proxy", "Distribution proxy")):
        mine = [r for r in runs if r.via == key]
        if not mine:
            continue
        firsts = [f for r in mine for f in r.first_bytes]
        counters = (
            ", ".join(
                f"{k} +{v / MiB:.0f} MiB" if "bytes" in k else f"{k} +{v:.0f}"
                for k, v in sorted(mine[-1].counters.items())
            )
            if key == "edge"
            else "n/a"
        )
        lines.append(
            f"| {label} | {', '.join(str(r.fetches.gets) for r in mine)} | "
            f"{', '.join(str(r.fetches.heads) for r in mine)} | "
            f"{', '.join(f'{r.fetches.sent / MiB:.0f} MiB' for r in mine)} | "
            f"{', '.join(f'{r.wall:.2f} s' for r in mine)} | "
            f"{ms(statistics.median(firsts))} / {ms(max(firsts))} | {counters} |"
        )
    return "\n".join(lines)


def edge_aims_table(
    results: dict[str, dict[str, EdgeResult]],
    cold: list[ColdSample],
    herd: list[HerdRun],
    warm_fills: dict[str, int],
    args: argparse.Namespace,
) -> str:
    lines = ["| aim | measured | met |", "|---|---|---|"]
    e, p = results.get("edge", {}), results.get("proxy", {})
    if "manifest" in e and "manifest" in p:
        ratio = e["manifest"].value / p["manifest"].value
        lines.append(
            f"| hits: at least {EDGE_RPS_AIM:.0f}x the Distribution proxy's small-request rate "
            f"(manifest by tag) | {ratio:.2f}x | {'met' if ratio >= EDGE_RPS_AIM else 'NOT met'} |"
        )
    for key, clients in (("blob1", "1 client"), ("blob8", "8 clients")):
        if key in e and key in p:
            ratio = e[key].value / p[key].value
            lines.append(
                f"| hits: at least the Distribution proxy's blob throughput, {clients} | "
                f"{ratio:.2f}x | {'met' if ratio >= 1 else 'NOT met'} |"
            )
    if cold:
        diffs = paired(cold, "edge", "ttfb")
        worst = max(diffs)
        median = statistics.median(diffs)
        lines.append(
            f"| cold miss: time to first byte within {EDGE_TTFB_AIM * 1000:.0f} ms of direct | "
            f"median {signed_ms(median)} over {len(diffs)} blobs (worst {signed_ms(worst)}) | "
            f"{'met' if median <= EDGE_TTFB_AIM else 'NOT met'} |"
        )
    edge_cold = [s.fetches.gets for s in cold if s.via == "edge"]
    edge_herd = [r.fetches.gets for r in herd if r.via == "edge"]
    hit_gets = sum(e[k].upstream_requests for k in ("blob1", "blob8") if k in e)
    counted = [*edge_cold, *edge_herd, warm_fills.get("edge", 1)]
    one = all(g == 1 for g in counted) and hit_gets == 0
    lines.append(
        "| exactly one upstream fetch per blob (edge) | upstream GETs per blob: "
        f"{len(edge_cold)} cold pulls {', '.join(map(str, edge_cold)) or 'n/a'}; "
        f"{len(edge_herd)} x {args.herd_clients} concurrent "
        f"{', '.join(map(str, edge_herd)) or 'n/a'}; the {args.big_bytes // MiB} MiB blob "
        f"{warm_fills.get('edge', 'n/a')}; upstream requests during blob hits: {hit_gets} | "
        f"{'met' if one else 'NOT met'} |"
    )
    return "\n".join(lines)


def edge_detail_table(results: dict[str, dict[str, EdgeResult]], args: argparse.Namespace) -> str:
    lines = [
        "| measurement | server | samples | server CPU per unit | server process CPU | "
        f"upstream CPU per unit | upstream requests per client request | CPU {SERVER_CPU} busy | "
        f"CPU {CLIENT_CPU} busy | notes |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    names = {"edge": "wharf edge", "proxy": "Distribution proxy"}
    for m in edge_metric_list(args):
        for key in EDGE_VIAS:
            r = results.get(key, {}).get(m.key)
            if r is None:
                continue
            samples = ", ".join(m.fmt.format(s) for s in r.samples)
            per_request = r.upstream_requests / r.client_requests if r.client_requests else 0.0
            lines.append(
                f"| {m.label} | {names[key]} | {samples} | {m.cost(r.cpu_per_unit)} | "
                f"{r.server_cpu:.0%} | {m.cost(r.upstream_cpu_seconds / r.work)} | "
                f"{per_request:.3f} ({r.upstream_requests}) | "
                f"{r.cpu_busy.get(f'cpu{SERVER_CPU}', 0):.0%} | "
                f"{r.cpu_busy.get(f'cpu{CLIENT_CPU}', 0):.0%} | {r.note}; {r.upstream_note} |"
            )
    return "\n".join(lines)


def cold_detail(samples: list[ColdSample]) -> str:
    lines = [
        "| round | order | "
        + " | ".join(f"{k}: first byte / total (upstream GET, HEAD)" for k in COLD_VIAS)
        + " |",
        "|--:|---|" + "---|" * len(COLD_VIAS),
    ]
    for r in sorted({s.round for s in samples}):
        mine = [s for s in samples if s.round == r]
        by = {s.via: s for s in mine}
        cells = [
            f"{ms(by[k].ttfb)} / {ms(by[k].total)} ({by[k].fetches.gets}, {by[k].fetches.heads})"
            if k in by
            else "n/a"
            for k in COLD_VIAS
        ]
        lines.append(f"| {r + 1} | {', '.join(s.via for s in mine)} | {' | '.join(cells)} |")
    return "\n".join(lines)


def edge_markdown(
    results: dict[str, dict[str, EdgeResult]],
    cold: list[ColdSample],
    herd: list[HerdRun],
    warm_fills: dict[str, int],
    servers: dict[str, Server],
    args: argparse.Namespace,
    started: datetime.datetime,
    elapsed: float,
) -> str:
    command = ".venv/bin/python bench/run.py " + shlex.join(sys.argv[1:])
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    tools = tool_versions()
    idle = ", ".join(f"{cpu} {frac:.0%}" for cpu, frac in args.idle_before.items())
    quick = "\n**--quick run: single repetitions, short runs, small blobs; not for the record.**\n"
    big = f"{args.big_bytes // MiB} MiB"
    cold_size = f"{args.cold_bytes // MiB} MiB"
    herd_size = f"{args.herd_bytes // MiB} MiB"
    return f"""# Wharf benchmark results: the edge beside Distribution's pull-through proxy

Date: {started.strftime("%Y-%m-%d %H:%M:%S %Z")} (the run took {elapsed:.0f} s)

Command, from the repository root: `{command}`
{quick if args.quick else ""}
Machine: {os.cpu_count()} x {cpu_model()}, {mem_gib:.0f} GiB RAM, Linux {platform.release()}, loopback only.
CPU busy in the 2 s before the run: {idle}.

CPU pinning: every server (the upstream, the proxy, the edge, the idle origin) runs under
`taskset -c {SERVER_CPU}` (CPU {SERVER_CPU}); every client (curl, wrk) and the benchmark's own
process (seeding, checks, the {args.herd_clients}-client herd) under CPU {CLIENT_CPU}. All servers run for the
whole benchmark; one of the edge and the proxy at a time is under load. A miss costs the
upstream's CPU too, on the same core: that is in every miss measured here, alike for both.

Servers:

- **upstream**: {servers["upstream"].version}, plain (no proxy, no auth),
  configured as in the main run (filesystem storage, `blobdescriptor: inmemory`, `log.level: warn`,
  its access log on). It holds the image; both caches below pull the same bytes from it.
- **Distribution proxy**: the same Distribution, in proxy mode (`proxy: remoteurl:` the
  upstream), otherwise configured alike; clients pull `{REPO}` from it.
- **wharf edge**: {servers["edge"].version}. `wharf edge serve --config edge.toml --listen
  127.0.0.1:0 --origin ORIGIN --data-dir DIR --cache-size 20GiB`, every other setting default
  (log level info: one JSON line per request, to a file); `edge.toml` has one mirror,
  `[[edge.mirrors]] namespace = "{EDGE_NAMESPACE}"`, `url =` the upstream, `public = true`: clients
  pull `{EDGE_NAMESPACE}/{REPO}` from it, anonymously, and it fetches `{REPO}` from the upstream.
- **origin**: a Wharf origin (`wharf origin serve`, defaults) that the edge needs for its
  signing keys (JWKS); idle throughout, since the mirror is public.

Clients: {tools["curl"]}; {tools["wrk"]}.

## Aims

{edge_aims_table(results, cold, herd, warm_fills, args)}

## Hits

{edge_hits_table(results, args)}

Both caches were filled first (the image, and the {big} blob pulled once through each and checked
by sha256; then pulled again until that made no upstream GET: the proxy stores in the
background). Blob: medians of {args.blob_repeats} samples; manifest: medians of {args.repeats}
repetitions; edge and proxy alternate (edge, proxy, proxy, edge, ...). The Distribution proxy
asks the upstream about the tag on every manifest-by-tag request (a `GET /v2/`, its check for an
auth challenge, and a HEAD of the manifest; the manifest itself then comes from its storage), on
the same core as the proxy; the edge serves a tag from its cache for `tag_ttl_seconds` (30 s)
and then revalidates it with one HEAD. The upstream requests each caused, and the upstream's CPU
time, are in the details.

## Cold misses: time to first byte and total time

{cold_table(cold)}

{len(cold) // len(COLD_VIAS) if cold else 0} rounds; round i pulls a {cold_size} blob of random bytes that neither cache has seen
(blob i, pushed to the upstream up front) once through each of the three, the order rotating
each round (edge, proxy, direct; proxy, direct, edge; ...). Each pull is one
`curl -s -o /dev/null -w '%{{time_starttransfer}} %{{time_total}}'` on a new connection: first
byte is curl's time_starttransfer, when the response's first byte (its status line) arrived,
connect and request included, as for a real client; total is its time_total. The edge sends
its headers as soon as the upstream has answered, body bytes as its fill writes them (about
1 MiB at a time). Before any pull, every blob was read back once from the upstream (checked), so
its caches are equally warm for all three. Between pulls the benchmark waits until the
upstream's access log has been quiet for {EDGE_SETTLE:.0f} s (the proxy keeps fetching after the client
has its bytes), then counts that log's lines for the blob: the upstream GETs and HEADs each pull
caused. The differences to direct are per round (same blob), median over rounds. After the
rounds every cold blob was fetched again through the edge and the proxy and checked by sha256.

## {args.herd_clients} concurrent cold requests: upstream fetches

{herd_table(herd, args)}

Per repetition one fresh {herd_size} blob; the edge and the proxy each take {args.herd_clients} GETs of it at
once (the order alternating): {args.herd_clients} connections are opened first, then the
{args.herd_clients} requests written back to back, so all arrive within about a millisecond,
well before a fill can finish. Every response is read whole and checked (status 200, size,
sha256). The upstream's GETs, HEADs and bytes sent are counted from its access log
once it has been quiet for {EDGE_SETTLE:.0f} s. The edge's counters (from its /metrics) say how its
requests went: misses, joins of a fill already running (`coalesced`), bytes filled.

## Details

- **server CPU per unit**: the edge's or the proxy's user + system CPU time over the work
  done (GB sent, requests answered, warm-ups included); **upstream CPU per unit**: the
  upstream's CPU time over the same work (what each hit still costs the upstream).
- **server process CPU**: the edge's or proxy's CPU time over the wall time of the samples.
- **upstream requests per client request**: lines in the upstream's access log during the
  samples (and until quiet) over the client requests the samples made (in brackets: the count).
- **CPU N busy**: that core's non-idle share from /proc/stat over the same time.

{edge_detail_table(results, args)}

Cold pulls, each round (first byte / total; the upstream's GETs and HEADs of the blob):

{cold_detail(cold)}

## Method and notes

- Data: the small image of the main run (config blob, one ~10 KiB uncompressed tar layer, OCI
  image manifest tagged `{TAG}`), a {big} blob, {len(cold) // len(COLD_VIAS) if cold else 0} cold blobs of {cold_size} and
  {len(herd) // len(EDGE_VIAS) if herd else 0} herd blobs of {herd_size}, all random bytes, all pushed to the upstream's
  `{REPO}` through the OCI API (POST, then PUT ?digest=) and read back from it (checked).
  Neither cache is seeded: each fills from the upstream, as in production.
- Blob hits: `curl -s -w '%{{http_code}} %{{size_download}} %{{speed_download}}\\n' -o /dev/null URL ...`
  processes, each downloading the blob {args.downloads1} times (1 client) or {args.downloads8} times (8 clients)
  on one keep-alive connection per sample; MB/s = 10^6 bytes/s, all the sample's bytes over its
  wall time; every transfer's status and size checked; one untimed download first.
- Manifest by tag: `wrk -t1 -c64 -d{args.seconds}s --timeout 10s --latency -H 'Accept: {OCI_MANIFEST}'`
  on /v2/{EDGE_NAMESPACE}/{REPO}/manifests/{TAG} (edge) and /v2/{REPO}/manifests/{TAG} (proxy),
  no Authorization header (the mirror is public; the proxy has no auth); 2 s of untimed wrk
  first. Any non-2xx fails the run.
- Upstream fetches are counted from the upstream Distribution's access log (an Apache combined
  line per request on its stdout, on at every log level, written when the response is done;
  the benchmark reads it from where it stopped and matches method and path). No proxy sits
  between the caches and the upstream, so counting adds no latency.
- Distribution's proxy, as of 2.8, on a blob it does not hold: it HEADs the blob upstream,
  starts one background fetch into its storage, and streams each client's bytes from a GET of
  its own (so the upstream sends the whole blob once per client, and once more); requests that
  arrive after the background fetch is stored are served from storage.
- The edge holds a fill's last byte back until the whole blob has been hashed and matches its
  digest (it syncs and commits the file after the client has its last byte); its first byte
  leaves as soon as the upstream has answered.
- The edge with a public mirror checks no token; with the origin as upstream it would verify
  the client's token offline (no origin request on hits) and send it along on misses.
"""


def edge_main(args: argparse.Namespace) -> int:
    """--edge: the edge and Distribution's proxy in front of one upstream; see bench/README.md."""
    started, t0 = datetime.datetime.now(datetime.UTC), time.perf_counter()
    scratch = start_run(args, ("taskset", "curl", "wrk", "docker-registry"))
    # The benchmark's own work (seeding, checks, the herd's clients) is client work too.
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    results: dict[str, dict[str, EdgeResult]] = {}
    cold: list[ColdSample] = []
    herd: list[HerdRun] = []
    warm_fills: dict[str, int] = {}
    back, front = make_edge_servers(scratch)
    servers = {**back, **front}
    try:
        data = make_edge_data(scratch, args)
        args.big_digest = data.big.digest
        log(
            f"data ready: {args.big_bytes // MiB} MiB blob, {len(data.cold)} x "
            f"{args.cold_bytes // MiB} MiB cold blobs, {len(data.herd)} x "
            f"{args.herd_bytes // MiB} MiB herd blobs"
        )
        with running(back, scratch):
            upstream = back["upstream"]
            asyncio.run(seed_upstream(upstream, data))
            log("upstream seeded; every blob read back and checked")
            edge = front["edge"]
            edge.argv[edge.argv.index("http://127.0.0.1:0")] = back["origin"].url
            with running(front, scratch):
                assert upstream.log_path is not None
                upstream_log = AccessLog(upstream.log_path)
                vias = {
                    "edge": Via("edge", "wharf edge", edge, f"{EDGE_NAMESPACE}/{REPO}"),
                    "proxy": Via("proxy", "Distribution proxy", front["proxy"], REPO),
                    "direct": Via("direct", "direct", upstream, REPO),
                }
                warm_fills = warm_caches(vias, data, upstream_log)
                measure_edge_hits(vias, upstream, upstream_log, args, results)
                cold = measure_cold(vias, data, upstream_log, args)
                herd = measure_herd(vias, data, upstream_log, args)
                asyncio.run(check_cached(vias, [*data.cold, *data.herd]))
                log("every cold and herd blob, fetched again through both caches, checked")
                for name, server in servers.items():
                    if not server.alive():
                        raise RuntimeError(f"{name} died:\n{server.log_tail()}")
    except BaseException:
        log(f"FAILED; scratch kept at {scratch} (server logs *.log)")
        raise
    else:
        if not args.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            log(f"scratch kept at {scratch}")
    elapsed = time.perf_counter() - t0
    for text in (
        edge_aims_table(results, cold, herd, warm_fills, args),
        edge_hits_table(results, args),
        cold_table(cold),
        herd_table(herd, args),
        edge_detail_table(results, args),
    ):
        print(text)
        print()
    if args.output is not None:
        args.output.write_text(
            edge_markdown(results, cold, herd, warm_fills, servers, args, started, elapsed)
        )
        log(f"wrote {args.output}")
    log(f"done in {elapsed:.0f} s")
    return 0


# --------------------------------------------------------------------------- --gossip mode

GOSSIP_REGION = "bench"  # every edge's region (and zone)
GOSSIP_AIM = 1.0  # cooperating: the origin sends each blob once, whatever N asks at once
ORIGIN_BLOB_ROUTE = "/v2/{name}/blobs/{digest}"  # the origin's route label of blob GET and HEAD
# --swarm's modes: (cooperate, swarm) of the edges
SWARM_MODES = {"swarm": (True, True), "cooperation": (True, False), "plain": (False, False)}


@dataclass(frozen=True)
class Scenario:
    """N edges of one region, cooperating or not, fetching large blobs through the swarm or
    not (``--gossip``: never; its edges run with ``swarm = false``)."""

    edges: int
    cooperate: bool
    swarm: bool = False

    @classmethod
    def of_mode(cls, edges: int, mode: str) -> Scenario:
        """--swarm's scenarios by name: swarm (and cooperation), cooperation (over HTTP, no
        swarm), plain (neither: every edge a plain pull-through cache)."""
        cooperate, swarm = SWARM_MODES[mode]
        return cls(edges, cooperate, swarm)

    @property
    def key(self) -> str:
        return f"n{self.edges}-{'swarm' if self.swarm else self.cooperation}"

    @property
    def cooperation(self) -> str:
        return "on" if self.cooperate else "off"

    @property
    def mode(self) -> str:
        return "swarm" if self.swarm else "cooperation" if self.cooperate else "plain"


class WharfAccessLog(AccessLog):
    """A Wharf server's log file: one JSON ``request`` line per request, written once its last
    byte is sent, among the other lines; ``bytes_out`` is the response's Content-Length."""

    def parse(self, line: str) -> tuple[str, str, int, int] | None:
        try:
            entry = json.loads(line)
        except ValueError:
            return None
        if not isinstance(entry, dict) or entry.get("event") != "request":
            return None
        return (
            str(entry["method"]),
            str(entry["path"]),
            int(entry["status"]),
            int(entry.get("bytes_out") or 0),
        )


@dataclass(frozen=True)
class GossipSample:
    """One scenario once: a fresh blob asked of each of N fresh edges at the same moment."""

    scenario: Scenario
    repetition: int
    position: int  # its place in the repetition's order (0: first)
    size: int  # the blob's
    origin: Fetches  # the origin's access-log lines for the blob (sent: its GETs' bytes_out)
    get_statuses: tuple[int, ...]  # of those GETs
    other_requests: collections.Counter[str]  # the origin's lines for anything else, by kind
    metric_sent: float  # delta of wharf_origin_http_sent_bytes_total{route=ORIGIN_BLOB_ROUTE}
    metric_gets: float  # delta of wharf_origin_http_requests_total{that route, GET, 200}
    filled: dict[str, dict[str, float]]  # per edge: wharf_edge_filled_bytes_total by source
    failures: dict[str, float]  # wharf_edge_fill_failures_total by reason, over the edges
    coalesced: float  # wharf_edge_fill_coalesced_waiters_total, over the edges
    firsts: tuple[float, ...]  # per edge (edge-1 first): its response's first line, s
    dones: tuple[float, ...]  # per edge: its response's last byte, s after the requests left
    origin_cpu: float  # the origin's user + system CPU seconds during the requests
    edges_cpu: float  # all the edges' together
    busy: dict[str, float]  # each CPU's non-idle share during the requests

    @property
    def egress(self) -> int:
        return self.origin.sent

    @property
    def ratio(self) -> float:
        return self.origin.sent / self.size

    @property
    def wall(self) -> float:
        """Until every edge had served its client the whole blob."""
        return max(self.dones)

    def by_source(self, source: str) -> list[str]:
        """The edges that filled bytes of the blob from ``source`` (upstream: the origin)."""
        return [edge for edge, got in self.filled.items() if got.get(source, 0) > 0]

    def received(self, source: str) -> float:
        return sum(got.get(source, 0.0) for got in self.filled.values())

    def problems(self) -> list[str]:
        """What does not add up: the sources of egress disagree, or something failed."""
        found = []
        if any(status != 200 for status in self.get_statuses):
            found.append(f"origin GET statuses {list(self.get_statuses)}")
        if self.received("upstream") != self.egress:
            found.append(
                f"the origin's log says {self.egress} bytes sent, the edges verified "
                f"{self.received('upstream'):.0f} bytes from it"
            )
        if self.metric_gets != self.origin.gets:
            found.append(
                f"the origin's /metrics counted {self.metric_gets:.0f} GETs, its log {self.origin.gets}"
            )
        if self.failures:
            found.append(f"fill failures {self.failures}")
        return found


def sample_labels(key: str) -> tuple[str, dict[str, str]]:
    """A Prometheus sample's name and labels, from its key (``name{a="x",b="y"}``)."""
    name, _, rest = key.partition("{")
    return name, dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))


def sample_value(samples: dict[str, float], name: str, **labels: str) -> float:
    """The value of the sample ``name{labels}`` among ``samples`` (0 when absent), whatever
    the order of its labels."""
    for key, value in samples.items():
        sample_name, found = sample_labels(key)
        if sample_name == name and all(found.get(k) == v for k, v in labels.items()):
            return value
    return 0.0


def sample_total(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of every sample ``name{...}`` among ``samples`` that has ``labels``."""
    total = 0.0
    for key, value in samples.items():
        sample_name, found = sample_labels(key)
        if sample_name == name and all(found.get(k) == v for k, v in labels.items()):
            total += value
    return total


def summed(samples: list[dict[str, float]], name: str, label: str) -> dict[str, float]:
    """``name``'s samples over several servers, summed by the value of ``label``."""
    total: dict[str, float] = collections.defaultdict(float)
    for found in samples:
        for key, value in found.items():
            sample_name, labels = sample_labels(key)
            if sample_name == name and value:
                total[labels.get(label, "")] += value
    return dict(total)


def region_edges(scenario: Scenario, tag: str, origin: Server, scratch: Path) -> dict[str, Server]:
    """N edges (by node id, edge-1 ...) of region GOSSIP_REGION in front of ``origin``, each
    with its own fresh data dir, a port picked up front, and every edge as a static peer;
    ``swarm = true`` or ``false`` as the scenario says. With the swarm, each edge's swarm port
    is picked up front too (``swarm_listen``) and is every static peer's ``torrent_port``, as
    Consul would advertise it: an edge then knows every other edge's swarm address."""
    ports: list[int] = []
    while len(ports) < scenario.edges * (2 if scenario.swarm else 1):
        port = free_port()
        if port not in ports:
            ports.append(port)
    nodes = {f"edge-{i + 1}": port for i, port in enumerate(ports[: scenario.edges])}
    torrent_ports = dict(zip(nodes, ports[scenario.edges :], strict=False))
    peers = "".join(
        f"\n[[edge.peers]]\n"
        f'id = "{node}"\n'
        f'role = "edge"\n'
        f'api_url = "http://127.0.0.1:{port}"\n'
        f'region = "{GOSSIP_REGION}"\n'
        f'zone = "{GOSSIP_REGION}"\n'
        + (f"torrent_port = {torrent_ports[node]}\n" if scenario.swarm else "")
        for node, port in nodes.items()
    )
    edges = {}
    for node, port in nodes.items():
        name = f"{tag}-{node}"
        config = scratch / f"{name}.toml"
        swarm = (
            f'swarm = true\nswarm_listen = "127.0.0.1:{torrent_ports[node]}"\n'
            if scenario.swarm
            else "swarm = false\n"
        )
        config.write_text(
            f"# generated by bench/run.py: {node} of {scenario.edges} in region {GOSSIP_REGION}\n"
            "[edge]\n"
            f'node_id = "{node}"\n'
            f'region = "{GOSSIP_REGION}"\n'
            f'zone = "{GOSSIP_REGION}"\n'
            f'advertise_url = "http://127.0.0.1:{port}"\n'
            f"cooperate = {'true' if scenario.cooperate else 'false'}\n" + swarm + peers
        )
        edges[node] = wharf_edge(
            name, config, f"127.0.0.1:{port}", origin.url, scratch / name, origin.version, port
        )
    return edges


def wait_ready(server: Server, timeout: float = 60) -> None:
    """Until the server's /readyz answers 200 (an edge: it holds the origin's keys)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited at start:\n{server.log_tail()}")
        out = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", server.url + "/readyz"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        if out == "200":
            return
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} was not ready in {timeout} s:\n{server.log_tail()}")


@contextlib.contextmanager
def edges_running(edges: list[Server], scratch: Path) -> Iterator[None]:
    """Start the edges together, wait until each is ready; stop them together."""
    try:
        for edge in edges:
            edge.start(scratch / f"{edge.name}.log")
        for edge in edges:
            wait_listening(edge)
            wait_ready(edge)
        yield
    finally:
        for edge in edges:  # SIGTERM to all first: they drain at once, not one after another
            if edge.proc is not None and edge.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(edge.proc.pid, signal.SIGTERM)
        for edge in edges:
            edge.stop()


async def push_checked(origin: Server, blob: Blob) -> None:
    """Push ``blob`` to the origin through the OCI API and read it back (checked): this also
    leaves it in the origin's page cache, the same for every scenario."""
    timeout = aiohttp.ClientTimeout(total=900, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout, headers=origin.headers) as http:
        await push_blob(http, origin.url, REPO, blob.digest, blob.path)
        await get_checked(http, f"{origin.url}/v2/{REPO}/blobs/{blob.digest}", blob)


async def fanout_get(
    edges: list[Server], path: str, blob: Blob, headers: dict[str, str]
) -> tuple[list[float], list[float]]:
    """One GET of ``path`` to each edge, all sent at once on connections opened beforehand,
    every body read whole and checked by sha256. Returns, per edge, the seconds from sending
    until its response's first line, and until its last byte."""
    conns = [await asyncio.open_connection("127.0.0.1", e.port, limit=4 * MiB) for e in edges]
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    start = time.perf_counter()
    for edge, (_, writer) in zip(edges, conns, strict=True):
        writer.write(  # all leave within a millisecond or so
            f"GET {path} HTTP/1.1\r\nHost: {edge.hostport}\r\n{extra}"
            "User-Agent: bench-gossip\r\nConnection: close\r\n\r\n".encode()
        )
    async with asyncio.timeout(900):
        times = await asyncio.gather(
            *(
                read_blob_response(reader, writer, start, blob, f"GET {edge.url}{path}")
                for edge, (reader, writer) in zip(edges, conns, strict=True)
            )
        )
    return [first for first, _ in times], [last for _, last in times]


Entry = tuple[str, str, int, int]  # an access-log line: method, path, status, bytes sent


@dataclass(frozen=True)
class Fanout:
    """One fresh blob asked of N fresh edges at once, as the origin's log and /metrics, the
    edges' /metrics and the clients saw it: what --gossip's and --swarm's samples are read from."""

    blob: Blob
    mine: list[Entry]  # the origin's log lines for the blob's path (any query string dropped)
    others: list[Entry]  # its lines for anything else
    before: dict[str, float]  # the origin's wharf_origin_http_* samples before the requests
    after: dict[str, float]  # and once its log was quiet after them
    counters: dict[str, dict[str, float]]  # per edge (edge-1 first): its wharf_edge_* samples
    firsts: tuple[float, ...]  # per edge: its response's first line, s after the requests left
    dones: tuple[float, ...]  # per edge: its response's last byte, s
    origin_cpu: float  # the origin's user + system CPU seconds during the requests
    edges_cpu: float  # all the edges' together
    busy: dict[str, float]  # each CPU's non-idle share during the requests

    @property
    def path(self) -> str:
        return f"/v2/{REPO}/blobs/{self.blob.digest}"

    def delta(self, name: str, **labels: str) -> float:
        """How the origin's sample ``name{labels}`` moved (the first sample matching)."""
        return sample_value(self.after, name, **labels) - sample_value(self.before, name, **labels)

    def delta_all(self, name: str, **labels: str) -> float:
        """How the origin's samples ``name{labels, any other labels}`` moved, all together."""
        return sample_total(self.after, name, **labels) - sample_total(self.before, name, **labels)


def fanout_sample(
    scenario: Scenario,
    tag: str,
    origin: Server,
    origin_log: WharfAccessLog,
    scratch: Path,
    blob_bytes: int,
    counters_after: float = 0.0,
) -> Fanout:
    """A fresh blob pushed to the origin; N fresh edges started (``region_edges``); one GET of
    the blob to each edge at once; then the origin's log until quiet, its /metrics, and each
    edge's /metrics no sooner than ``counters_after`` seconds after the last response ended
    (counters refreshed in the background need that long); the edges stopped, caches removed."""
    blob = random_blob(scratch / f"{tag}.blob", blob_bytes)
    asyncio.run(push_checked(origin, blob))
    blob.path.unlink()  # the digest and the size are all the checks need from here on
    path = f"/v2/{REPO}/blobs/{blob.digest}"
    edges = region_edges(scenario, tag, origin, scratch)
    servers = [origin, *edges.values()]
    try:
        with edges_running(list(edges.values()), scratch):
            origin_log.settle()  # what the edges asked at start (the origin's keys) is not counted
            before = asyncio.run(prometheus_samples(origin, "wharf_origin_http_"))
            cpu0, jiffies0 = [s.cpu_seconds() for s in servers], cpu_times()
            firsts, dones = asyncio.run(
                fanout_get(list(edges.values()), path, blob, origin.headers)
            )
            cpu1, jiffies1 = [s.cpu_seconds() for s in servers], cpu_times()
            ended = time.monotonic()
            entries = origin_log.settle()
            after = asyncio.run(prometheus_samples(origin, "wharf_origin_http_"))
            time.sleep(max(0.0, counters_after - (time.monotonic() - ended)))
            counters = {node: asyncio.run(edge_metrics_now(edge)) for node, edge in edges.items()}
            for server in servers:
                if not server.alive():
                    raise RuntimeError(f"{server.name} died:\n{server.log_tail()}")
    finally:
        for edge in edges.values():
            shutil.rmtree(scratch / edge.name, ignore_errors=True)  # its cache
    spent = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
    return Fanout(
        blob,
        [e for e in entries if e[1].split("?")[0] == path],
        [e for e in entries if e[1].split("?")[0] != path],
        before,
        after,
        counters,
        tuple(firsts),
        tuple(dones),
        spent[0],
        sum(spent[1:]),
        busy_between(jiffies0, jiffies1),
    )


def gossip_sample(
    scenario: Scenario,
    repetition: int,
    position: int,
    origin: Server,
    origin_log: WharfAccessLog,
    scratch: Path,
    args: argparse.Namespace,
) -> GossipSample:
    """A fresh blob pushed to the origin; N fresh edges started; one GET of the blob to each
    edge at once; what the origin sent, what the edges filled from where, how long it took."""
    tag = f"{scenario.key}-r{repetition + 1}"
    f = fanout_sample(scenario, tag, origin, origin_log, scratch, args.blob_bytes)
    return GossipSample(
        scenario,
        repetition,
        position,
        f.blob.size,
        Fetches.of(f.mine, f.path),
        tuple(status for method, _, status, _ in f.mine if method == "GET"),
        request_kinds(f.others),
        f.delta("wharf_origin_http_sent_bytes_total", route=ORIGIN_BLOB_ROUTE),
        f.delta(
            "wharf_origin_http_requests_total", route=ORIGIN_BLOB_ROUTE, method="GET", status="200"
        ),
        {
            node: summed([found], "wharf_edge_filled_bytes_total", "source")
            for node, found in f.counters.items()
        },
        summed(list(f.counters.values()), "wharf_edge_fill_failures_total", "reason"),
        sum(
            sample_value(found, "wharf_edge_fill_coalesced_waiters_total")
            for found in f.counters.values()
        ),
        f.firsts,
        f.dones,
        f.origin_cpu,
        f.edges_cpu,
        f.busy,
    )


def gossip_scenarios(args: argparse.Namespace) -> list[Scenario]:
    return [Scenario(n, cooperate) for n in args.edge_counts for cooperate in (True, False)]


S = TypeVar("S")
T = TypeVar("T")


def round_robin(scenarios: list[S], repeats: int, sample: Callable[[S, int, int], T]) -> list[T]:
    """``sample(scenario, repetition, position)`` for every scenario ``repeats`` times,
    round-robin, the order reversed every other repetition (so that drifts of the VM fall on
    every scenario alike, and no scenario always follows the same one)."""
    samples = []
    for i in range(repeats):
        for position, scenario in enumerate(scenarios[::-1] if i % 2 else scenarios):
            samples.append(sample(scenario, i, position))
    return samples


def measure_gossip(
    origin: Server, origin_log: WharfAccessLog, scratch: Path, args: argparse.Namespace
) -> list[GossipSample]:
    """Every scenario ``args.repeats`` times, round-robin (the order reversed every other
    repetition), each on a fresh blob and fresh edges."""

    def one(scenario: Scenario, i: int, position: int) -> GossipSample:
        s = gossip_sample(scenario, i, position, origin, origin_log, scratch, args)
        n = scenario.edges
        log(
            f"{scenario.key:7} {i + 1}/{args.repeats}: origin GET {s.origin.gets} HEAD "
            f"{s.origin.heads}, egress {s.egress / MiB:.1f} MiB ({s.ratio:.2f}x); all {n} "
            f"edges served the whole blob (checked) in {s.wall:.2f} s (first {min(s.dones):.2f} "
            f"s); filled from the origin: {', '.join(s.by_source('upstream')) or 'none'}; "
            f"from a peer: {len(s.by_source('peer'))} edge(s)"
        )
        for problem in s.problems():
            log(f"WARNING: {scenario.key} {i + 1}: {problem}")
        return s

    return round_robin(gossip_scenarios(args), args.repeats, one)


# -- the --gossip report


def mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB"


def seconds(s: float) -> str:
    return f"{s:.2f} s"


def gossip_table(samples: list[GossipSample], args: argparse.Namespace) -> str:
    lines = [
        "| edges asked at once | cooperation | origin GETs of the blob, per repetition | "
        "origin egress, median | egress / blob size, median | per repetition | "
        "all edges served the whole blob, median | min - max | first edge done, median | "
        "edges that filled from the origin / from a peer, per repetition |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for scenario in gossip_scenarios(args):
        mine = [s for s in samples if s.scenario == scenario]
        if not mine:
            continue
        walls = [s.wall for s in mine]
        lines.append(
            f"| {scenario.edges} | {scenario.cooperation} | "
            f"{', '.join(str(s.origin.gets) for s in mine)} | "
            f"{mib(statistics.median(s.egress for s in mine))} | "
            f"{statistics.median(s.ratio for s in mine):.2f}x | "
            f"{', '.join(f'{s.ratio:.2f}' for s in mine)} | "
            f"{seconds(statistics.median(walls))} | {seconds(min(walls))} - {seconds(max(walls))} | "
            f"{seconds(statistics.median(min(s.dones) for s in mine))} | "
            + ", ".join(
                f"{len(s.by_source('upstream'))} / {len(s.by_source('peer'))}" for s in mine
            )
            + " |"
        )
    return "\n".join(lines)


def gossip_aims_table(samples: list[GossipSample], args: argparse.Namespace) -> str:
    lines = ["| aim | measured | met |", "|---|---|---|"]
    for n in args.edge_counts:
        on = [s for s in samples if s.scenario == Scenario(n, True)]
        off = [s for s in samples if s.scenario == Scenario(n, False)]
        if not on:
            continue
        ratios = [s.ratio for s in on]
        met = all(s.egress == GOSSIP_AIM * s.size for s in on)
        versus = (
            f"; without cooperation {statistics.median(s.ratio for s in off):.2f}x" if off else ""
        )
        lines.append(
            f"| origin egress {GOSSIP_AIM:.1f}x the blob size, {n} edges of a region asked at "
            f"once, cooperating | median {statistics.median(ratios):.2f}x (per repetition "
            f"{', '.join(f'{r:.2f}' for r in ratios)}; origin GETs "
            f"{', '.join(str(s.origin.gets) for s in on)}){versus} | {'met' if met else 'NOT met'} |"
        )
    problems = [f"{s.scenario.key} {s.repetition + 1}: {p}" for s in samples for p in s.problems()]
    lines.append(
        "| every client got the whole blob, sha256 checked; the origin's log, its /metrics and "
        "the edges' counters agree; no fill failed | "
        + ("; ".join(problems) if problems else f"yes, in all {len(samples)} samples")
        + f" | {'NOT met' if problems else 'met'} |"
    )
    return "\n".join(lines)


def spread(values: tuple[float, ...] | list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def gossip_detail_table(samples: list[GossipSample]) -> str:
    lines = [
        "| scenario | repetition (place) | origin GET / HEAD / other requests | egress: origin's log "
        "/ its /metrics delta / edges' verified bytes from the origin / from peers | filled from "
        "the origin | each edge's last byte, s: min / median / max | first line, s: min / "
        f"median / max | origin CPU s | edges' CPU s | CPU {SERVER_CPU} / {CLIENT_CPU} busy | "
        "edges' coalesced waiters | other origin requests |",
        "|---|---|---|---|---|---|---|--:|--:|---|--:|---|",
    ]
    for s in sorted(samples, key=lambda s: (s.scenario.edges, not s.scenario.cooperate)):
        other = ", ".join(f"{k} x{v}" for k, v in s.other_requests.most_common()) or "none"
        lines.append(
            f"| {s.scenario.edges} edges, cooperation {s.scenario.cooperation} | "
            f"{s.repetition + 1} ({s.position + 1}) | "
            f"{s.origin.gets} / {s.origin.heads} / {s.origin.other + s.other_requests.total()} | "
            f"{mib(s.egress)} / {mib(s.metric_sent)} / {mib(s.received('upstream'))} / "
            f"{mib(s.received('peer'))} | {', '.join(s.by_source('upstream')) or 'none'} | "
            f"{spread(s.dones)} | {spread(s.firsts)} | {s.origin_cpu:.2f} | {s.edges_cpu:.2f} | "
            f"{s.busy.get(f'cpu{SERVER_CPU}', 0):.0%} / {s.busy.get(f'cpu{CLIENT_CPU}', 0):.0%} | "
            f"{s.coalesced:.0f} | {other} |"
        )
    return "\n".join(lines)


def run_header(
    args: argparse.Namespace, started: datetime.datetime, elapsed: float, quick: str
) -> str:
    """A results file's first lines: date, command, machine, how busy it was before the run
    (and ``quick``, a warning, when this was a --quick run)."""
    command = ".venv/bin/python bench/run.py " + shlex.join(sys.argv[1:])
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    idle = ", ".join(f"{cpu} {frac:.0%}" for cpu, frac in args.idle_before.items())
    warning = f"\n{quick}\n" if args.quick else ""
    return f"""Date: {started.strftime("%Y-%m-%d %H:%M:%S %Z")} (the run took {elapsed:.0f} s)

Command, from the repository root: `{command}`
{warning}
Machine: {os.cpu_count()} x {cpu_model()}, {mem_gib:.0f} GiB RAM, Linux {platform.release()}, loopback only.
CPU busy in the 2 s before the run: {idle}."""


def gossip_markdown(
    samples: list[GossipSample],
    origin: Server,
    args: argparse.Namespace,
    started: datetime.datetime,
    elapsed: float,
) -> str:
    quick = "**--quick run: one repetition, a small blob, N = 4 only; not for the record.**"
    size = f"{args.blob_bytes // MiB} MiB"
    counts = " and ".join(str(n) for n in args.edge_counts)
    most = max(args.edge_counts)
    return f"""# Wharf benchmark results: cooperating edges, origin egress

{run_header(args, started, elapsed, quick)}

The measurement, from the issue: origin egress for one {size} blob asked of N = {counts} edges
of a region at once, with and without cooperation, and the time until every edge has it. Aim:
origin egress {GOSSIP_AIM:.1f}x the blob size.

CPU pinning: the origin and all N edges run under `taskset -c {SERVER_CPU}` (CPU {SERVER_CPU}): up to
{most} edges and the origin share one core, so the times are those of a region squeezed onto one
core (every edge's hashing, disk writes and serving take turns), not of N machines; what is
measured for the aim, bytes and requests, does not depend on it. The client side (the
benchmark's own process: one connection per edge, every body hashed) runs on CPU {CLIENT_CPU}.

Servers: {origin.version}.

- **origin**: `wharf origin serve --listen 127.0.0.1:0 --data-dir DIR`, every default (token
  auth on, SQLite, filesystem blobs, log level info: one JSON line per request), plus
  `WHARF_ORIGIN_TOKEN_TTL_SECONDS=86400`. The admin's password from `DIR/admin-password` gets
  one token for `repository:{REPO}:pull,push` from `/auth/token` (Basic credentials); it pushes
  each blob and is every client's `Authorization: Bearer` header at the edges.
- **edges**: for each scenario N fresh processes, `wharf edge serve --config edge-K.toml --listen
  127.0.0.1:PORT --origin ORIGIN --data-dir NEW_DIR --cache-size 20GiB`, every other setting
  default, with an empty cache (a new data dir, removed afterwards), ports picked up front.
  `edge-K.toml` (static membership, all in region `{GOSSIP_REGION}`):

  ```toml
  [edge]
  node_id = "edge-K"
  region = "{GOSSIP_REGION}"
  zone = "{GOSSIP_REGION}"
  advertise_url = "http://127.0.0.1:PORT"
  cooperate = true          # false for "cooperation off"
  swarm = false             # on by default; off here: cooperation over HTTP only

  [[edge.peers]]            # one per edge of the scenario, itself included
  id = "edge-1"
  role = "edge"
  api_url = "http://127.0.0.1:PORT1"
  region = "{GOSSIP_REGION}"
  zone = "{GOSSIP_REGION}"
  ```

## Aims

{gossip_aims_table(samples, args)}

## Results

{gossip_table(samples, args)}

Medians of {args.repeats} repetition(s) of each scenario, round-robin over the scenarios (the
order reversed every other repetition); each sample on a new blob and new edges.

- **origin GETs of the blob**: lines `GET /v2/{REPO}/blobs/<digest>` in the origin's access log
  during the sample.
- **origin egress**: the sum of those lines' `bytes_out`, i.e. the body bytes the origin sent
  for that blob. Why this is exact: each line is written once the response's last byte has been
  sent, and its `bytes_out` is the response's Content-Length (what aiohttp's access logger
  sees: exact for a transfer that completed); that every transfer completed is checked against
  the edges' side, the sum over the edges of `wharf_edge_filled_bytes_total{{source="upstream"}}`
  (bytes fetched from the origin, counted only once their digest verified), which must be equal, with no fill failure (the aims' last row). The origin's
  Prometheus counter `wharf_origin_http_sent_bytes_total{{route="{ORIGIN_BLOB_ROUTE}"}}` is
  shown beside it in the details (its delta over the sample) but is not the measure: it is per
  route, not per blob, and it adds every response's Content-Length.
- **egress / blob size**: the egress ratio; {GOSSIP_AIM:.2f} means the origin sent the blob once.
- **all edges served the whole blob**: from the moment the N requests left (all within a
  millisecond or so, on connections opened beforehand) until the last byte of the last
  response, every response read whole and checked (status 200, size, sha256). An edge holds
  a fill's last byte back until the blob is verified (a peer's bytes: until the edge has
  committed them). **first edge done**: the same for the first one.
- **edges that filled from the origin / from a peer**: edges whose
  `wharf_edge_filled_bytes_total` moved for source `upstream` (the origin) or `peer`.

## Details

- **egress**: the origin's access log; the delta of its `/metrics` counter for the blob route
  (see above); the bytes the edges verified from the origin, and from peers (their
  `wharf_edge_filled_bytes_total` by source).
- **each edge's last byte** and **first line**: seconds from sending the requests, over the N
  clients. With cooperation, an edge filling from a peer holds every byte back until it has
  verified the whole blob, so its client's first body byte comes late by design.
- **origin CPU s**, **edges' CPU s**: user + system CPU time of the origin, and of all N edges
  together, from sending the requests until the last response was complete; **CPU N busy**:
  that core's non-idle share over the same time (from /proc/stat).
- **other origin requests**: anything else the origin logged during the sample (nothing is
  expected).

{gossip_detail_table(samples)}

## Method and notes

- Per sample: a new {size} blob of random bytes is pushed to the origin's `{REPO}` through the
  OCI API (POST /v2/{REPO}/blobs/uploads/, then PUT Location?digest=) and read back from it
  once (checked; this also leaves it in the origin's page cache alike for every sample); then N
  edges start with empty caches and the run waits until each answers `/readyz` 200 (it holds
  the origin's signing keys) and the origin's log has been quiet for {EDGE_SETTLE:.0f} s. Then one
  `GET /v2/{REPO}/blobs/<digest>` with the token goes to each edge at the same moment, from
  the benchmark's own process (asyncio, raw HTTP/1.1, `Connection: close`). Once every
  response is complete the origin's log is read until quiet for {EDGE_SETTLE:.0f} s, its `/metrics`
  and every edge's `/metrics` are read, and the edges are stopped (SIGTERM) and their caches
  removed.
- Cooperation, as the edges implement it: each digest has a home edge (rendezvous hashing over
  the region's healthy edges); on a miss an edge asks the home edge first, with the client's
  token and `X-Wharf-Hop: 1`, and the home edge fills from the origin (once, however many ask);
  without it (`cooperate = false`) every edge fills from the origin itself.
- Any non-200 response, short body or wrong sha256 fails the run; a disagreement between the
  origin's log, its /metrics GET count and the edges' counters, or a failed fill, is logged as
  a warning and shown in the aims' last row.
"""


def origin_run(
    args: argparse.Namespace,
    what: str,
    measure: Callable[[Server, WharfAccessLog, Path], list[T]],
) -> tuple[list[T], Server, datetime.datetime, float]:
    """The frame of --gossip and --swarm: one Wharf origin (token auth on) for the whole run
    and the admin's token for REPO, the benchmark's own process on the client core, then
    ``measure(origin, its access log, scratch)``. The scratch directory goes after a success
    (unless --keep-scratch) and stays after a failure. Returns the samples, the origin, when
    the run started and how long it took."""
    started, t0 = datetime.datetime.now(datetime.UTC), time.perf_counter()
    scratch = start_run(args, ("taskset", "curl"))
    # The benchmark's own work (pushing, the clients, checking bytes) is client work.
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    origin = wharf_origin("origin", scratch / "origin", wharf_version())
    try:
        with running({"origin": origin}, scratch):
            asyncio.run(log_in(origin, scratch / "origin"))
            assert origin.log_path is not None
            origin_log = WharfAccessLog(origin.log_path)
            log(f"origin up, token for {REPO}; {what}")
            samples = measure(origin, origin_log, scratch)
    except BaseException:
        log(f"FAILED; scratch kept at {scratch} (server logs *.log)")
        raise
    else:
        if not args.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            log(f"scratch kept at {scratch}")
    return samples, origin, started, time.perf_counter() - t0


def report(
    args: argparse.Namespace, tables: list[str], markdown: Callable[[], str], elapsed: float
) -> None:
    """Print the tables; write the results file (``args.output``: none in a --quick run)."""
    for text in tables:
        print(text)
        print()
    if args.output is not None:
        args.output.write_text(markdown())
        log(f"wrote {args.output}")
    log(f"done in {elapsed:.0f} s")


def gossip_main(args: argparse.Namespace) -> int:
    """--gossip: origin egress for one blob asked of N edges at once; see bench/README.md."""
    samples, origin, started, elapsed = origin_run(
        args,
        f"{args.repeats} repetition(s) of N = {', '.join(map(str, args.edge_counts))} edges, "
        f"cooperation on and off, {args.blob_bytes // MiB} MiB blobs",
        partial(measure_gossip, args=args),
    )
    report(
        args,
        [
            gossip_aims_table(samples, args),
            gossip_table(samples, args),
            gossip_detail_table(samples),
        ],
        lambda: gossip_markdown(samples, origin, args, started, elapsed),
        elapsed,
    )
    return 0


# --------------------------------------------------------------------------- --swarm mode

SWARM_EGRESS_AIM = 1.25  # through the swarm: origin egress at most 1.25x the blob size
SWARM_TIME_AIM = 1.5  # and every edge done within 1.5x the time of one edge alone
SWARM_THRESHOLD = 64 * MiB  # the edges' default swarm_threshold_bytes: smaller blobs skip it
SWARM_BASELINE = Scenario(1, cooperate=False, swarm=False)  # one edge alone, plain pull-through
SWARM_ALONE = Scenario(1, cooperate=True, swarm=True)  # one edge alone, through the swarm
# wharf_edge_swarm_sent_bytes_total follows libtorrent's counters about once a second: the
# edges' /metrics are read no sooner than this after the last response ended.
SWARM_COUNTERS_AFTER = 2.5
SWARM_TOLERANCE = 0.03  # two counts of the same bytes may differ this much before it is flagged


@dataclass(frozen=True)
class SwarmEdge:
    """One edge's side of a --swarm sample, from its /metrics (swarm counters stay 0 with
    ``swarm = false``) and its client."""

    node: str
    home: bool  # the digest's home edge in the region (cooperating scenarios only)
    from_peers: float  # wharf_edge_swarm_received_bytes_total{source="peers"}
    from_web_seed: float  # {source="web_seed"}: from the origin, as BEP 19 web seed
    uploaded: float  # wharf_edge_swarm_sent_bytes_total: to other edges
    complete: float  # wharf_edge_swarm_fills_total{result="complete"}
    fallback: float  # {result="fallback"}: the swarm stalled, the rest came over HTTP
    web_seeds_added: float  # wharf_edge_swarm_web_seeds_added_total
    filled: dict[str, float]  # wharf_edge_filled_bytes_total by source (upstream, peer, swarm)
    failures: dict[str, float]  # wharf_edge_fill_failures_total by reason
    first: float  # its client's first response line, s after the requests left
    done: float  # its client's last byte


@dataclass(frozen=True)
class SwarmSample:
    """One --swarm scenario once: a fresh blob asked of each of N fresh edges at once."""

    scenario: Scenario
    repetition: int
    position: int  # its place in the repetition's order (0: first)
    size: int  # the blob's
    origin: Fetches  # the origin's log lines for the blob: plain GETs, web seed ranges, HEADs
    statuses: collections.Counter[int]  # of those lines and the metainfo's
    metainfo: Fetches  # the origin's lines for the blob's metainfo (_wharf/torrents)
    other_requests: collections.Counter[str]  # its lines for anything else, by kind
    metric_sent: float  # delta of wharf_origin_http_sent_bytes_total{route=ORIGIN_BLOB_ROUTE}
    metric_gets: float  # delta of wharf_origin_http_requests_total{that route, GET, any status}
    edges: tuple[SwarmEdge, ...]  # edge-1 first
    origin_cpu: float  # the origin's user + system CPU seconds during the requests
    edges_cpu: float  # all the edges' together
    busy: dict[str, float]  # each CPU's non-idle share during the requests

    @property
    def egress(self) -> int:
        return self.origin.sent

    @property
    def ratio(self) -> float:
        return self.origin.sent / self.size

    @property
    def wall(self) -> float:
        """Until every edge had served its client the whole blob."""
        return max(e.done for e in self.edges)

    @property
    def first_done(self) -> float:
        return min(e.done for e in self.edges)

    @property
    def from_peers(self) -> float:
        return sum(e.from_peers for e in self.edges)

    @property
    def from_web_seed(self) -> float:
        return sum(e.from_web_seed for e in self.edges)

    @property
    def uploaded(self) -> float:
        return sum(e.uploaded for e in self.edges)

    def filled(self, source: str) -> float:
        return sum(e.filled.get(source, 0.0) for e in self.edges)

    def filled_by(self, source: str) -> list[str]:
        return [e.node for e in self.edges if e.filled.get(source, 0.0) > 0]

    @property
    def fallbacks(self) -> list[str]:
        return [e.node for e in self.edges if e.fallback]

    @property
    def web_seeded(self) -> list[str]:
        """The edges that got bytes from the web seed or added it, the home marked."""
        return [
            f"{e.node}{' (home)' if e.home else ''}"
            for e in self.edges
            if e.from_web_seed or e.web_seeds_added
        ]

    @property
    def stray_web_seeds(self) -> list[str]:
        """Edges other than the home that took bytes from the web seed (after a stall)."""
        if self.scenario.edges == 1:
            return []
        return [e.node for e in self.edges if e.from_web_seed and not e.home]

    def share(self, edge: SwarmEdge) -> float:
        """``edge``'s share of all the bytes the edges uploaded to each other."""
        return edge.uploaded / self.uploaded if self.uploaded else 0.0

    def problems(self) -> list[str]:
        """What does not add up or went wrong: non-2xx at the origin, the origin's log and its
        /metrics apart, failed fills, swarm fills that fell back to HTTP, edges that did not
        go through the swarm, the edges' counts of bytes from the origin off its log."""
        found = []
        bad = {status: n for status, n in sorted(self.statuses.items()) if status // 100 != 2}
        if bad:
            found.append(f"origin non-2xx statuses {bad}")
        if apart(self.metric_sent, self.egress):
            found.append(
                f"the origin's log says {mib(self.egress)} sent for the blob, its /metrics "
                f"{mib(self.metric_sent)}"
            )
        if self.metric_gets != self.origin.gets:
            found.append(
                f"the origin's /metrics counted {self.metric_gets:.0f} GETs, its log {self.origin.gets}"
            )
        failures = collections.Counter[str]()
        for e in self.edges:
            failures.update(e.failures)
        if failures:
            found.append(f"fill failures {dict(failures)}")
        if self.scenario.swarm:
            if self.fallbacks:
                found.append(f"swarm fills fell back to HTTP at {', '.join(self.fallbacks)}")
            skipped = [e.node for e in self.edges if e.complete + e.fallback != 1]
            if skipped:
                found.append(f"not one swarm fill at {', '.join(skipped)}")
            # After a fallback filled{upstream} counts the whole blob: no such check then.
            if not self.fallbacks and not skipped and apart(self.from_web_seed, self.egress):
                found.append(
                    f"the edges counted {mib(self.from_web_seed)} from the web seed, the "
                    f"origin's log {mib(self.egress)}"
                )
        elif self.filled("upstream") != self.egress:
            found.append(
                f"the origin's log says {self.egress} bytes sent, the edges verified "
                f"{self.filled('upstream'):.0f} bytes from it"
            )
        return found


def apart(a: float, b: float) -> bool:
    """Whether two counts of the same bytes differ by more than SWARM_TOLERANCE."""
    return abs(a - b) > SWARM_TOLERANCE * max(abs(a), abs(b))


def home_of(nodes: list[str], digest: str) -> str:
    """The digest's home edge among ``nodes``, as the edges pick it (rendezvous hashing over
    the node ids of the region's healthy edges: with static peers, all of them)."""
    return max(nodes, key=lambda node: weight(node, digest))


def swarm_sample(
    scenario: Scenario,
    repetition: int,
    position: int,
    origin: Server,
    origin_log: WharfAccessLog,
    scratch: Path,
    args: argparse.Namespace,
) -> SwarmSample:
    """``fanout_sample`` (the edges' counters read SWARM_COUNTERS_AFTER s after the last
    response), read for the swarm: the origin's side of the blob and its metainfo, and each
    edge's swarm counters."""
    tag = f"{scenario.key}-r{repetition + 1}"
    f = fanout_sample(
        scenario, tag, origin, origin_log, scratch, args.blob_bytes, SWARM_COUNTERS_AFTER
    )
    home = home_of(list(f.counters), f.blob.digest) if scenario.cooperate else None
    metainfo_path = f"/v2/{REPO}/_wharf/torrents/{f.blob.digest}"
    metainfo = [e for e in f.others if e[1].split("?")[0] == metainfo_path]
    others = [e for e in f.others if e[1].split("?")[0] != metainfo_path]
    edges = tuple(
        SwarmEdge(
            node,
            node == home,
            sample_value(found, "wharf_edge_swarm_received_bytes_total", source="peers"),
            sample_value(found, "wharf_edge_swarm_received_bytes_total", source="web_seed"),
            sample_value(found, "wharf_edge_swarm_sent_bytes_total"),
            sample_value(found, "wharf_edge_swarm_fills_total", result="complete"),
            sample_value(found, "wharf_edge_swarm_fills_total", result="fallback"),
            sample_value(found, "wharf_edge_swarm_web_seeds_added_total"),
            summed([found], "wharf_edge_filled_bytes_total", "source"),
            summed([found], "wharf_edge_fill_failures_total", "reason"),
            first,
            done,
        )
        for (node, found), first, done in zip(f.counters.items(), f.firsts, f.dones, strict=True)
    )
    return SwarmSample(
        scenario,
        repetition,
        position,
        f.blob.size,
        Fetches.of(f.mine, f.path),
        collections.Counter(status for _, _, status, _ in [*f.mine, *metainfo]),
        Fetches.of(metainfo, metainfo_path),
        request_kinds(others),
        f.delta("wharf_origin_http_sent_bytes_total", route=ORIGIN_BLOB_ROUTE),
        f.delta_all("wharf_origin_http_requests_total", route=ORIGIN_BLOB_ROUTE, method="GET"),
        edges,
        f.origin_cpu,
        f.edges_cpu,
        f.busy,
    )


def swarm_scenarios(args: argparse.Namespace) -> list[Scenario]:
    """One edge alone (plain: the time aim's baseline; through the swarm), then for each N
    the swarm, cooperation over HTTP and plain edges."""
    return [
        SWARM_BASELINE,
        SWARM_ALONE,
        *(Scenario.of_mode(n, mode) for n in args.edge_counts for mode in SWARM_MODES),
    ]


def swarm_label(scenario: Scenario) -> str:
    if scenario == SWARM_BASELINE:
        return "plain, one edge alone (baseline)"
    if scenario == SWARM_ALONE:
        return "swarm, one edge alone"
    return scenario.mode


def describe_swarm_sample(s: SwarmSample) -> str:
    """One log line's worth of a sample."""
    n = s.scenario.edges
    statuses = ", ".join(f"{status} x{k}" for status, k in sorted(s.statuses.items()))
    text = (
        f"origin GET {s.origin.gets} HEAD {s.origin.heads} metainfo {s.metainfo.gets} "
        f"({statuses}), egress {mib(s.egress)} ({s.ratio:.2f}x; its /metrics "
        f"{mib(s.metric_sent)}); all {n} edge(s) served the whole blob (checked) in "
        f"{s.wall:.2f} s (first {s.first_done:.2f} s)"
    )
    if not s.scenario.swarm:
        return (
            text + f"; filled from the origin: {', '.join(s.filled_by('upstream')) or 'none'}; "
            f"from a peer: {len(s.filled_by('peer'))} edge(s)"
        )
    complete = sum(e.complete for e in s.edges)
    shares = ", ".join(f"{e.node}{'*' if e.home else ''} {s.share(e):.0%}" for e in s.edges)
    return (
        text + f"; swarm fills complete {complete:.0f} fallback {len(s.fallbacks)}; received "
        f"from peers {mib(s.from_peers)}, from the web seed {mib(s.from_web_seed)} (at "
        f"{', '.join(s.web_seeded) or 'none'}); uploaded {mib(s.uploaded)}"
        + (f" (share, * home: {shares})" if n > 1 else "")
    )


def measure_swarm(
    origin: Server, origin_log: WharfAccessLog, scratch: Path, args: argparse.Namespace
) -> list[SwarmSample]:
    """Every scenario ``args.repeats`` times, round-robin (the order reversed every other
    repetition), each on a fresh blob and fresh edges."""

    def one(scenario: Scenario, i: int, position: int) -> SwarmSample:
        s = swarm_sample(scenario, i, position, origin, origin_log, scratch, args)
        log(
            f"{scenario.mode:11} N={scenario.edges} {i + 1}/{args.repeats}: {describe_swarm_sample(s)}"
        )
        for problem in s.problems():
            log(f"WARNING: {scenario.key} {i + 1}: {problem}")
        if s.stray_web_seeds:
            log(
                f"NOTE: {scenario.key} {i + 1}: web seed bytes at edges other than the home "
                f"(after a stall): {', '.join(s.stray_web_seeds)}"
            )
        return s

    return round_robin(swarm_scenarios(args), args.repeats, one)


# -- the --swarm report


def of(samples: list[SwarmSample], scenario: Scenario) -> list[SwarmSample]:
    return [s for s in samples if s.scenario == scenario]


def time_ratios(samples: list[SwarmSample], scenario: Scenario) -> list[float]:
    """Per repetition: ``scenario``'s all-done time over the baseline's (one edge alone, plain
    pull-through) in the same repetition, so that a drift of the VM cancels out."""
    base = {s.repetition: s.wall for s in of(samples, SWARM_BASELINE)}
    return [s.wall / base[s.repetition] for s in of(samples, scenario) if s.repetition in base]


def median_of(values: list[float], fmt: str = "{:.2f}") -> str:
    return fmt.format(statistics.median(values)) if values else "-"


def swarm_aims_table(samples: list[SwarmSample], args: argparse.Namespace) -> str:
    base = [s.wall for s in of(samples, SWARM_BASELINE)]
    alone = [s.wall for s in of(samples, SWARM_ALONE)]
    lines = ["| aim | edges | measured | met |", "|---|--:|---|---|"]
    for n in args.edge_counts:
        mine = of(samples, Scenario.of_mode(n, "swarm"))
        if not mine:
            continue
        ratios = [s.ratio for s in mine]
        within = sum(r <= SWARM_EGRESS_AIM for r in ratios)
        coop = [s.ratio for s in of(samples, Scenario.of_mode(n, "cooperation"))]
        plain = [s.ratio for s in of(samples, Scenario.of_mode(n, "plain"))]
        met = statistics.median(ratios) <= SWARM_EGRESS_AIM
        lines.append(
            f"| origin egress <= {SWARM_EGRESS_AIM:.2f}x the blob size, through the swarm | {n} | "
            f"median {statistics.median(ratios):.2f}x (min / median / max {spread(ratios)}; "
            f"{within} of {len(ratios)} repetitions within); cooperation over HTTP "
            f"{median_of(coop)}x, plain {median_of(plain)}x | {'met' if met else 'MISSED'} |"
        )
    for n in args.edge_counts:
        mine = of(samples, Scenario.of_mode(n, "swarm"))
        paired = time_ratios(samples, Scenario.of_mode(n, "swarm"))
        if not mine or not paired:
            continue
        within = sum(r <= SWARM_TIME_AIM for r in paired)
        coop = time_ratios(samples, Scenario.of_mode(n, "cooperation"))
        met = statistics.median(paired) <= SWARM_TIME_AIM
        lines.append(
            f"| all edges done within {SWARM_TIME_AIM:.1f}x the time of one edge alone (plain "
            f"pull-through, N = 1), through the swarm | {n} | median "
            f"{statistics.median(paired):.2f}x (per-repetition ratios, min / median / max "
            f"{spread(paired)}; {within} of {len(paired)} within): {n} edges "
            f"{median_of([s.wall for s in mine], '{:.2f} s')}, one edge alone "
            f"{median_of(base, '{:.2f} s')} (one edge alone through the swarm: "
            f"{median_of(alone, '{:.2f} s')}); cooperation over HTTP {median_of(coop)}x | "
            f"{'met' if met else 'MISSED'} |"
        )
    problems = [f"{s.scenario.key} {s.repetition + 1}: {p}" for s in samples for p in s.problems()]
    lines.append(
        "| every client got the whole blob, sha256 checked; no non-2xx at the origin; its log "
        "and /metrics agree (and the edges' counts of what came from it); no fill failed or "
        "fell back to HTTP | - | "
        + ("; ".join(problems) if problems else f"yes, in all {len(samples)} samples")
        + f" | {'NOT met' if problems else 'met'} |"
    )
    return "\n".join(lines)


def swarm_table(samples: list[SwarmSample], args: argparse.Namespace) -> str:
    lines = [
        "| edges | mode | origin GETs / HEADs of the blob, per repetition | origin egress, "
        "median | egress / blob size, median | min / median / max | all edges done, median "
        "| min - max | / one edge alone (plain), median of repetitions | first edge done, "
        "median | edges' CPU s, median |",
        "|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for scenario in swarm_scenarios(args):
        mine = of(samples, scenario)
        if not mine:
            continue
        walls = [s.wall for s in mine]
        ratios = [s.ratio for s in mine]
        lines.append(
            f"| {scenario.edges} | {swarm_label(scenario)} | "
            f"{', '.join(f'{s.origin.gets} / {s.origin.heads}' for s in mine)} | "
            f"{mib(statistics.median(s.egress for s in mine))} | "
            f"{statistics.median(ratios):.2f}x | {spread(ratios)} | "
            f"{seconds(statistics.median(walls))} | {seconds(min(walls))} - {seconds(max(walls))} | "
            f"{median_of(time_ratios(samples, scenario), '{:.2f}x')} | "
            f"{seconds(statistics.median(s.first_done for s in mine))} | "
            f"{statistics.median(s.edges_cpu for s in mine):.1f} |"
        )
    return "\n".join(lines)


def swarm_share_table(samples: list[SwarmSample]) -> str:
    """Per swarm sample and edge: what it received from where, what it uploaded."""
    lines = [
        "| edges | repetition | edge | home | received from peers | from the web seed | "
        "uploaded to other edges | share of all uploads | uploaded / blob size | swarm fills "
        "complete / fallback | web seed added | its client's last byte |",
        "|--:|--:|---|---|--:|--:|--:|--:|--:|---|--:|--:|",
    ]
    swarm = [s for s in samples if s.scenario.swarm]
    for s in sorted(swarm, key=lambda s: (s.scenario.edges, s.repetition)):
        for e in s.edges:
            lines.append(
                f"| {s.scenario.edges} | {s.repetition + 1} | {e.node} | "
                f"{'home' if e.home else ''} | {mib(e.from_peers)} | {mib(e.from_web_seed)} | "
                f"{mib(e.uploaded)} | {s.share(e):.0%} | {e.uploaded / s.size:.2f} | "
                f"{e.complete:.0f} / {e.fallback:.0f} | {e.web_seeds_added:.0f} | "
                f"{seconds(e.done)} |"
            )
    return "\n".join(lines)


def swarm_share_summary(samples: list[SwarmSample], args: argparse.Namespace) -> str:
    """Per N: how the uploads were spread over the edges (medians over the repetitions)."""
    lines = [
        "| edges | home's share of uploads | largest share of another edge | smallest share | "
        "edges that uploaded >= 1 MiB, per repetition | uploaded in all / blob size |",
        "|--:|--:|--:|--:|--:|--:|",
    ]
    for n in args.edge_counts:
        mine = of(samples, Scenario.of_mode(n, "swarm"))
        if not mine:
            continue
        home = [s.share(e) for s in mine for e in s.edges if e.home]
        largest = [max((s.share(e) for e in s.edges if not e.home), default=0.0) for s in mine]
        smallest = [min(s.share(e) for e in s.edges) for s in mine]
        active = [sum(e.uploaded >= MiB for e in s.edges) for s in mine]
        lines.append(
            f"| {n} | {median_of(home, '{:.0%}')} | {median_of(largest, '{:.0%}')} | "
            f"{median_of(smallest, '{:.0%}')} | {', '.join(map(str, active))} (of {n}) | "
            f"{median_of([s.uploaded / s.size for s in mine])} |"
        )
    return "\n".join(lines)


def swarm_detail_table(samples: list[SwarmSample], args: argparse.Namespace) -> str:
    lines = [
        "| scenario | repetition (place) | origin: blob GET / HEAD, metainfo GET, other | "
        "statuses | egress: origin's log / its /metrics delta / edges' web seed bytes / "
        "edges' HTTP fills from the origin | received from peers / uploaded, all edges | "
        "each edge's last byte, s: min / median / max | first line, s: min / median / max | "
        f"origin CPU s | edges' CPU s | CPU {SERVER_CPU} / {CLIENT_CPU} busy | problems |",
        "|---|---|---|---|---|---|---|---|--:|--:|---|---|",
    ]
    order = {scenario: i for i, scenario in enumerate(swarm_scenarios(args))}
    for s in sorted(samples, key=lambda s: (order.get(s.scenario, 99), s.repetition)):
        statuses = ", ".join(f"{status} x{k}" for status, k in sorted(s.statuses.items()))
        other = s.origin.other + s.metainfo.other + s.other_requests.total()
        lines.append(
            f"| {s.scenario.edges} edge{'s' if s.scenario.edges > 1 else ''}, "
            f"{swarm_label(s.scenario)} | {s.repetition + 1} "
            f"({s.position + 1}) | {s.origin.gets} / {s.origin.heads}, {s.metainfo.gets}, "
            f"{other} | {statuses} | {mib(s.egress)} / {mib(s.metric_sent)} / "
            f"{mib(s.from_web_seed)} / {mib(s.filled('upstream'))} | {mib(s.from_peers)} / "
            f"{mib(s.uploaded)} | {spread([e.done for e in s.edges])} | "
            f"{spread([e.first for e in s.edges])} | {s.origin_cpu:.2f} | {s.edges_cpu:.2f} | "
            f"{s.busy.get(f'cpu{SERVER_CPU}', 0):.0%} / {s.busy.get(f'cpu{CLIENT_CPU}', 0):.0%} | "
            f"{'; '.join(s.problems()) or 'none'} |"
        )
    return "\n".join(lines)


def swarm_observations(samples: list[SwarmSample]) -> str:
    """What the run saw worth a note, as bullets: fallbacks, web seeds at other edges than
    the home, problems; or that there were none."""
    swarm = [s for s in samples if s.scenario.swarm]
    found = []
    fallbacks = [
        f"{s.scenario.key} {s.repetition + 1}: {', '.join(s.fallbacks)}"
        for s in swarm
        if s.fallbacks
    ]
    found.append(
        "- Swarm fills that fell back to plain HTTP: "
        + ("; ".join(fallbacks) if fallbacks else f"none, in {len(swarm)} swarm samples")
        + "."
    )
    stray = [
        f"{s.scenario.key} {s.repetition + 1}: {', '.join(s.stray_web_seeds)}"
        for s in swarm
        if s.stray_web_seeds
    ]
    found.append(
        "- Web seed bytes at edges other than the digest's home (they add the web seed only "
        "after no new piece came for `swarm_stall_seconds`, 5 s by default): "
        + ("; ".join(stray) if stray else "none")
        + "."
    )
    problems = [f"{s.scenario.key} {s.repetition + 1}" for s in samples if s.problems()]
    found.append(
        "- Samples with a problem (see the aims' last row and the details): "
        + (", ".join(problems) if problems else "none")
        + "."
    )
    return "\n".join(found)


def swarm_markdown(
    samples: list[SwarmSample],
    origin: Server,
    args: argparse.Namespace,
    started: datetime.datetime,
    elapsed: float,
) -> str:
    quick = (
        f"**--quick run: one repetition, a {args.blob_bytes // MiB} MiB blob, N = "
        f"{', '.join(map(str, args.edge_counts))} and 1 only; not for the record.**"
    )
    size = f"{args.blob_bytes // MiB} MiB"
    counts = " and ".join(str(n) for n in args.edge_counts)
    most = max(args.edge_counts)
    return f"""# Wharf benchmark results: the swarm (BitTorrent among edges), origin egress and time

{run_header(args, started, elapsed, quick)}

The measurement, from the issue: one {size} blob (at least `swarm_threshold_bytes`, 64 MiB by
default, so it goes through the swarm) asked of N = {counts} edges of a region at once; the
origin's egress for it and the time until every edge has served it whole, through the swarm,
with cooperation over HTTP only, and with neither; and one edge alone. The aims: through the
swarm, origin egress at most {SWARM_EGRESS_AIM:.2f}x the blob size, and every edge done within
{SWARM_TIME_AIM:.1f}x the time one edge alone takes. The baseline for the time is **one edge
alone doing a plain pull-through** (`swarm = false`, `cooperate = false`, N = 1: one HTTP GET
to the origin), in the same repetition; one edge alone through the swarm (the origin as its
only web seed) is shown beside it.

CPU pinning: the machine has {os.cpu_count()} cores. The origin and all N edges run under
`taskset -c {SERVER_CPU}` (CPU {SERVER_CPU}): up to {most} edges (each with libtorrent's threads) and the origin share
one core, so the times are those of a region squeezed onto one core (every edge's piece
hashing, disk writes, uploads to the others and serving its client take turns), not of N
machines. That weighs on the time aim: the baseline's one edge has that core to itself with the
origin, while N swarm edges split it N ways and also upload to each other. Bytes (the egress
aim) do not depend on it. The client side (the benchmark's own process: one connection per
edge, every body hashed) runs on CPU {CLIENT_CPU} (`os.sched_setaffinity`).

Servers: {origin.version}.

- **origin**: `wharf origin serve --listen 127.0.0.1:0 --data-dir DIR`, every default (token
  auth on, SQLite, filesystem blobs, log level info: one JSON line per request), plus
  `WHARF_ORIGIN_TOKEN_TTL_SECONDS=86400`. The admin's password from `DIR/admin-password` gets
  one token for `repository:{REPO}:pull,push` from `/auth/token` (Basic credentials); it pushes
  each blob and is every client's `Authorization: Bearer` header at the edges.
- **edges**: for each sample N fresh processes, `wharf edge serve --config edge-K.toml --listen
  127.0.0.1:PORT --origin ORIGIN --data-dir NEW_DIR --cache-size 20GiB`, every other setting
  default (`swarm_threshold_bytes` 64 MiB, `swarm_stall_seconds` 5 s, no rate limits), with an
  empty cache (a new data dir, removed afterwards), ports picked up front. `edge-K.toml`
  (static membership, all in region `{GOSSIP_REGION}`):

  ```toml
  [edge]
  node_id = "edge-K"
  region = "{GOSSIP_REGION}"
  zone = "{GOSSIP_REGION}"
  advertise_url = "http://127.0.0.1:PORT"
  cooperate = true                     # swarm, cooperation; false for plain
  swarm = true                         # swarm; false for cooperation and plain
  swarm_listen = "127.0.0.1:TPORT"     # swarm only

  [[edge.peers]]                       # one per edge of the sample, itself included
  id = "edge-1"
  role = "edge"
  api_url = "http://127.0.0.1:PORT1"
  region = "{GOSSIP_REGION}"
  zone = "{GOSSIP_REGION}"
  torrent_port = TPORT1                # swarm only
  ```

  With static peers an edge knows the others' swarm ports only from `torrent_port` (Consul
  would advertise them); without it an edge would find other edges only through the home edge
  it asks to join.
- **modes**: **swarm** (`swarm = true`, `cooperate = true`): the edges fetch the blob piece by
  piece from each other, the digest's home edge (rendezvous hashing over the region's edges)
  with the origin as BEP 19 web seed from the start, the others only after no new piece came
  for `swarm_stall_seconds`, and plain HTTP from the verified prefix if it stalls again (a
  "fallback"). **cooperation** (`swarm = false`, `cooperate = true`): an edge asks the home
  edge over HTTP, which fills from the origin once (what `--gossip` measures). **plain**
  (`swarm = false`, `cooperate = false`): every edge fills from the origin itself.

## Aims

{swarm_aims_table(samples, args)}

## Results

{swarm_table(samples, args)}

Medians of {args.repeats} repetition(s) of each scenario, round-robin over the scenarios (the
order reversed every other repetition); each sample on a new blob and new edges.

- **origin GETs / HEADs of the blob**: lines `GET` / `HEAD /v2/{REPO}/blobs/<digest>` in the
  origin's access log during the sample. The web seed's requests are such GETs (with
  `?wharf_seed=<token>`, which the log leaves out, and a `Range` header: 206), one per range
  libtorrent asks for; an edge's HEAD asks the blob's size (whether it is large enough for the
  swarm). The blob's metainfo (`GET /v2/{REPO}/_wharf/torrents/<digest>`, one per swarm edge)
  is counted apart, in the details; its bytes are not in the egress.
- **origin egress**: the sum of those lines' `bytes_out` (each response's Content-Length, the
  range's length for a 206), i.e. the blob's body bytes the origin sent; checked against the
  delta of the origin's `wharf_origin_http_sent_bytes_total{{route="{ORIGIN_BLOB_ROUTE}"}}` (which
  nothing else moves during a sample) and against what the edges counted (see the details).
- **egress / blob size**: 1.00 means the origin sent the blob once.
- **all edges done**: from the moment the N requests left (all within a millisecond or so,
  on connections opened beforehand) until the last byte of the last response, every response
  read whole and checked (status 200, size, sha256). An edge holds a fill's last byte back
  until the blob is verified. **/ one edge alone (plain)**: that time over the baseline's in
  the same repetition, the median over the repetitions (what the time aim is judged on).
  **first edge done**: the same for the first edge to finish.
- **edges' CPU s**: user + system CPU time of all N edges together while the requests ran.

## Upload share, through the swarm

How the edges shared the work of spreading the blob: `wharf_edge_swarm_sent_bytes_total` (bytes
uploaded to other edges; libtorrent's counter, which the edge copies about once a second, so
every edge's /metrics is read at least {SWARM_COUNTERS_AFTER} s after the last response ended).

{swarm_share_summary(samples, args)}

Per edge and sample: **received from peers** and **from the web seed** are
`wharf_edge_swarm_received_bytes_total` by source (counted when the swarm fill ends; libtorrent
counts payload per connection, and bytes that arrived since the edge last looked are split in
proportion, so the split is close, not exact); **swarm fills complete / fallback**:
`wharf_edge_swarm_fills_total` by result; **web seed added**:
`wharf_edge_swarm_web_seeds_added_total`.

{swarm_share_table(samples)}

## Details

- **origin**: its access-log lines during the sample: blob GETs / HEADs, metainfo GETs, any
  other request; the statuses of the blob's and the metainfo's lines.
- **egress**: the origin's log; the delta of its `/metrics` counter for the blob route; what
  the edges counted from the web seed (`wharf_edge_swarm_received_bytes_total{{source="web_seed"}}`,
  all edges); what the edges verified from the origin over plain HTTP
  (`wharf_edge_filled_bytes_total{{source="upstream"}}`: the whole blob per plain fill, and after a
  swarm fill's fallback the whole blob too, prefix included). Without a fallback the first and
  third must agree within {SWARM_TOLERANCE:.0%}, as must the first two always; for cooperation and plain
  the first and fourth must be equal.
- **received from peers / uploaded**: over all edges.
- **each edge's last byte** and **first line**: seconds from sending the requests, over the N
  clients.
- **origin CPU s**, **edges' CPU s**: user + system CPU time of the origin, and of all N edges
  together, from sending the requests until the last response was complete; **CPU N busy**:
  that core's non-idle share over the same time (from /proc/stat).

{swarm_detail_table(samples, args)}

## Method and notes

- Per sample: a new {size} blob of random bytes is pushed to the origin's `{REPO}` through the
  OCI API (POST /v2/{REPO}/blobs/uploads/, then PUT Location?digest=) and read back from it
  once (checked; this also leaves it in the origin's page cache alike for every sample); then N
  edges start with empty caches and the run waits until each answers `/readyz` 200 (it holds
  the origin's signing keys) and the origin's log has been quiet for {EDGE_SETTLE:.0f} s. Then one
  `GET /v2/{REPO}/blobs/<digest>` with the token goes to each edge at the same moment, from the
  benchmark's own process (asyncio, raw HTTP/1.1, `Connection: close`). Once every response is
  complete the origin's log is read until quiet for {EDGE_SETTLE:.0f} s and its `/metrics` read; every
  edge's `/metrics` is read no sooner than {SWARM_COUNTERS_AFTER} s after the last response ended; then the
  edges are stopped (SIGTERM) and their caches removed. The same machinery as `--gossip`.
- The home edge is the digest's rendezvous-hashing winner over the node ids, as the edges
  compute it (`gossip.ring.weight`); with static peers every edge is healthy, so the bench
  names the same one.
- The whole region shares one core (see CPU pinning), and loopback has no bandwidth limit: on
  real machines each edge would have its own CPU and disk, and the network would be the limit,
  so the times here say how the modes compare on this machine, not what a region of N machines
  would take.
- Any non-200 response to a client, short body or wrong sha256 fails the run; the other
  problems (non-2xx at the origin, the origin's log and /metrics more than {SWARM_TOLERANCE:.0%} apart, the
  edges' web seed bytes more than {SWARM_TOLERANCE:.0%} off the origin's log, a failed fill, a swarm fill
  that fell back to HTTP, an edge without a swarm fill) are logged as warnings and shown in the
  aims' last row and the details.

What this run saw:

{swarm_observations(samples)}
"""


def swarm_main(args: argparse.Namespace) -> int:
    """--swarm: origin egress and time for one large blob asked of N edges at once, through
    the swarm, with cooperation over HTTP, plain; see bench/README.md."""
    samples, origin, started, elapsed = origin_run(
        args,
        f"{args.repeats} repetition(s) of N = {', '.join(map(str, args.edge_counts))} edges "
        f"({', '.join(SWARM_MODES)}) and one edge alone (plain, swarm), "
        f"{args.blob_bytes // MiB} MiB blobs",
        partial(measure_swarm, args=args),
    )
    report(
        args,
        [
            swarm_aims_table(samples, args),
            swarm_table(samples, args),
            swarm_share_summary(samples, args),
            swarm_share_table(samples),
            swarm_detail_table(samples, args),
            "What this run saw:\n\n" + swarm_observations(samples),
        ],
        lambda: swarm_markdown(samples, origin, args, started, elapsed),
        elapsed,
    )
    return 0


# --------------------------------------------------------------------------- --push, --replicas


def module_mode(module: str, function: str, args: argparse.Namespace) -> int:
    """A mode whose code is in ``bench/<module>.py`` (``--push``, ``--replicas``), which imports
    this module's helpers as ``bench.run``; run as a script, this module is ``__main__``, so it
    is registered under that name too (one copy of it, not two)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if __name__ == "__main__":
        sys.modules.setdefault("bench.run", sys.modules[__name__])
    entry: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(f"bench.{module}"), function
    )
    return entry(args)


# --------------------------------------------------------------------------- main


def start_run(args: argparse.Namespace, tools: tuple[str, ...]) -> Path:
    """Check the tools, make the scratch directory, and sample how busy the machine is."""
    for tool in tools:
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} not found on PATH")
    SCRATCH_ROOT.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=SCRATCH_ROOT))
    log(f"scratch {scratch}; servers on CPU {SERVER_CPU}, clients on CPU {CLIENT_CPU}")
    args.idle_before = machine_busy()
    busy = ", ".join(f"{cpu} {frac:.0%}" for cpu, frac in args.idle_before.items())
    log(f"CPU busy before starting: {busy}")
    if max(args.idle_before.values()) > 0.10:
        top = run(["ps", "-eo", "pid,pcpu,comm", "--sort=-pcpu"]).splitlines()[:6]
        log(
            "WARNING: the machine is not idle; results will be noisy. Busiest processes:\n"
            + "\n".join(top)
        )
    return scratch


def measure(
    servers: dict[str, Server],
    data: Data,
    args: argparse.Namespace,
    results: dict[str, dict[str, Result]],
) -> None:
    """Every measurement, its repetitions interleaved across the servers.

    Round-robin (wharf, distribution, nginx, wharf, ...) rather than all of one server's
    repetitions in a row, so that slow drifts of the machine (this is a VM; throughput over
    loopback moves by +-30% from one minute to the next) fall on every server alike.
    """
    chosen = {name: s for name, s in servers.items() if not args.only or name in args.only}

    def steps(server: Server, first: bool) -> dict[str, Callable[[], Run]]:
        blob = server.url + data.blob_path
        h = server.header_flags()
        found: dict[str, Callable[[], Run]] = {
            "blob1": partial(blob_get, blob, 1, args.downloads1, first, h),
            "blob8": partial(blob_get, blob, 8, args.downloads8, first, h),
            "manifest": partial(
                manifest_rps, server.url + data.manifest_path, args.seconds, first, h
            ),
            "head": partial(head_rps, server.url + data.small_blob_path, args.requests, first, h),
        }
        if server.registry:
            found["push"] = partial(skopeo_push, server, data.push_layout)
        return found

    for metric in METRICS:
        repeats = args.blob_repeats if metric.key.startswith("blob") else args.repeats
        for i in range(repeats):
            for name, server in chosen.items():
                fn = steps(server, first=i == 0).get(metric.key)
                if fn is None:
                    continue
                result = results.setdefault(name, {}).setdefault(metric.key, Result())
                done = result.add(server, fn)
                if not server.alive():
                    raise RuntimeError(f"{name} died during {metric.key}:\n{server.log_tail()}")
                log(f"{metric.key:8} {i + 1}/{repeats} {name:12} {done.value:10.2f}  {done.note}")
        for name in chosen:
            if metric.key in results.get(name, {}):
                r = results[name][metric.key]
                log(
                    f"{metric.key:8} {name:12} median {r.value:10.2f}  server CPU {r.server_cpu:.0%}, "
                    f"{metric.cost(r.cpu_per_unit)}"
                )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1 repetition, short runs; writes no results file unless --output",
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help="instead: two wharf origins, token auth on and off (writes bench/RESULTS-auth.md)",
    )
    parser.add_argument(
        "--edge",
        action="store_true",
        help="instead: wharf's edge beside Distribution's pull-through proxy, one upstream "
        "(writes bench/RESULTS-edge.md)",
    )
    parser.add_argument(
        "--gossip",
        action="store_true",
        help="instead: origin egress for one blob asked of N = 4 and 8 edges of a region at "
        "once, cooperating or not (writes bench/RESULTS-gossip.md)",
    )
    parser.add_argument(
        "--swarm",
        action="store_true",
        help="instead: origin egress and time for one 256 MiB blob asked of N = 4 and 8 edges "
        "at once, through the swarm, cooperating over HTTP or plain, and of one edge alone "
        "(writes bench/RESULTS-swarm.md)",
    )
    parser.add_argument(
        "--push",
        action="store_true",
        help="instead: a push's acknowledgement at an edge vs at the origin, the edge's "
        "replication lag, each region's prefetch lag (writes bench/RESULTS-push.md)",
    )
    parser.add_argument(
        "--replicas",
        action="store_true",
        help="instead: one origin replica on PostgreSQL vs on SQLite, two replicas vs one: "
        "push, pull and manifest throughput (writes bench/RESULTS-replicas.md)",
    )
    parser.add_argument(
        "--gc",
        action="store_true",
        help="instead: push and pull throughput with continuous garbage collection on vs off, "
        "and seconds per pass over 10,000 manifests (writes bench/RESULTS-gc.md)",
    )
    parser.add_argument(
        "--keep-scratch", action="store_true", help="keep the scratch directory (data, logs)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="results file (default bench/RESULTS.md; --auth: RESULTS-auth.md, --edge: "
        "RESULTS-edge.md, --gossip: RESULTS-gossip.md, --swarm: RESULTS-swarm.md, --push: "
        "RESULTS-push.md)",
    )
    parser.add_argument(
        "--only",
        choices=["wharf", "distribution", "nginx"],
        action="append",
        help="measure only these servers (repeatable; the table needs all three)",
    )
    args = parser.parse_args()
    if args.auth + args.edge + args.gossip + args.swarm + args.push + args.replicas + args.gc > 1:
        parser.error(
            "--auth, --edge, --gossip, --swarm, --push, --replicas and --gc are separate runs"
        )
    if (
        args.auth or args.edge or args.gossip or args.swarm or args.push or args.replicas or args.gc
    ) and args.only:
        parser.error(
            "--only does not apply to --auth, --edge, --gossip, --swarm, --push, --replicas or --gc"
        )
    if args.output is None and not args.quick:
        name = (
            "RESULTS-auth.md"
            if args.auth
            else "RESULTS-edge.md"
            if args.edge
            else "RESULTS-gossip.md"
            if args.gossip
            else "RESULTS-swarm.md"
            if args.swarm
            else "RESULTS-push.md"
            if args.push
            else "RESULTS-replicas.md"
            if args.replicas
            else "RESULTS-gc.md"
            if args.gc
            else "RESULTS.md"
        )
        args.output = ROOT / "bench" / name
    if args.push:
        # ack_repeats: skopeo pushes to each (origin, edge); lag_pushes: back-to-back pushes
        # to the edge; prefetch_pushes: pushes to the origin per region.
        if args.quick:
            args.ack_repeats, args.lag_pushes, args.prefetch_pushes = 3, 30, 5
        else:
            args.ack_repeats, args.lag_pushes, args.prefetch_pushes = 20, 100, 30
    elif args.gossip:
        # One fresh blob per sample; each scenario (N edges, cooperating or not) args.repeats
        # times, round-robin.
        if args.quick:
            args.blob_bytes, args.edge_counts, args.repeats = 16 * MiB, (4,), 1
        else:
            args.blob_bytes, args.edge_counts, args.repeats = BIG_BLOB_BYTES, (4, 8), 3
    elif args.swarm:
        # As --gossip, plus one edge alone (plain, swarm) per repetition. The quick blob is
        # still large enough for the swarm.
        if args.quick:
            args.blob_bytes, args.edge_counts, args.repeats = 72 * MiB, (2,), 1
        else:
            args.blob_bytes, args.edge_counts, args.repeats = BIG_BLOB_BYTES, (4, 8), 3
        assert args.blob_bytes >= SWARM_THRESHOLD
    elif args.edge:
        # big_bytes: the hit blob; cold_*: one fresh blob per cold round; herd_*: one fresh
        # blob per repetition of the concurrent-miss test, each with herd_clients clients.
        args.herd_clients = 50
        if args.quick:
            args.repeats, args.seconds = 1, 3
            args.blob_repeats, args.downloads1, args.downloads8 = 1, 1, 1
            args.big_bytes, args.cold_bytes, args.cold_rounds = 32 * MiB, 4 * MiB, 3
            args.herd_bytes, args.herd_repeats = 8 * MiB, 1
        else:
            args.repeats, args.seconds = 3, 10
            args.blob_repeats, args.downloads1, args.downloads8 = 5, 4, 1
            args.big_bytes, args.cold_bytes, args.cold_rounds = BIG_BLOB_BYTES, 32 * MiB, 15
            args.herd_bytes, args.herd_repeats = 64 * MiB, 3
    elif args.auth:
        if args.quick:
            args.repeats, args.token_repeats, args.seconds, args.requests = 1, 1, 3, 5000
        else:
            args.repeats, args.token_repeats, args.seconds, args.requests = 5, 3, 10, 40000
    elif args.quick:
        args.repeats, args.seconds, args.requests = 1, 3, 5000
        args.blob_repeats, args.downloads1, args.downloads8 = 1, 1, 1
    else:
        args.repeats, args.seconds, args.requests = 3, 10, 20000
        args.blob_repeats, args.downloads1, args.downloads8 = 5, 4, 1

    # SIGTERM/SIGHUP become exceptions, so the finally blocks below always stop the servers.
    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)

    if args.auth:
        return auth_main(args)
    if args.edge:
        return edge_main(args)
    if args.gossip:
        return gossip_main(args)
    if args.swarm:
        return swarm_main(args)
    if args.push:
        return module_mode("push", "push_main", args)
    if args.replicas:
        return module_mode("replicas", "replicas_main", args)
    if args.gc:
        return module_mode("gc", "gc_main", args)
    started, t0 = datetime.datetime.now(datetime.UTC), time.perf_counter()
    scratch = start_run(
        args, ("taskset", "curl", "wrk", "ab", "skopeo", "nginx", "docker-registry")
    )
    results: dict[str, dict[str, Result]] = {}
    try:
        data = make_data(scratch)
        log(
            f"data ready: 256 MiB blob {data.big_digest[:19]}..., push layout with 3 x 10 MiB layers"
        )
        servers = make_servers(scratch)
        with running(servers, scratch):
            asyncio.run(log_in(servers["wharf"], scratch / "wharf"))
            for server in servers.values():
                if server.registry:
                    asyncio.run(seed_registry(server, data))
                else:
                    seed_nginx(server, scratch, data)
                asyncio.run(verify(server, data))
                log(f"{server.name} seeded and verified")
            measure(servers, data, args, results)
    except BaseException:
        log(f"FAILED; scratch kept at {scratch} (server logs *.log)")
        raise
    else:
        if not args.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            log(f"scratch kept at {scratch}")
    elapsed = time.perf_counter() - t0
    if set(results) != {"wharf", "distribution", "nginx"}:
        print(detail_table(results))
        return 0
    print(table(results))
    print()
    print(detail_table(results))
    if args.output is not None:
        args.output.write_text(results_markdown(results, servers, args, started, elapsed))
        log(f"wrote {args.output}")
    log(f"done in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
