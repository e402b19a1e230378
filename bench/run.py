"""Wharf's origin beside CNCF Distribution 2.8 and nginx: same machine, same data, one run.

Run from the repository root:  .venv/bin/python bench/run.py [--quick]

Every server is pinned to CPU 0 and every client (curl, wrk, ab, skopeo) to CPU 1 with
``taskset``, so that load generators and servers never compete for a core. All three servers
run for the whole benchmark; only one is under load at a time. nginx serves the same files
statically, as the ceiling for this machine; it has no registry API, so it takes no push.
Results are printed as Markdown; ``bench/RESULTS.md`` records them with their date.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import write_oci_layout  # noqa: E402 - the same image builder the tests use

SERVER_CPU = "0"
CLIENT_CPU = "1"
MiB = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client(*argv: str) -> list[str]:
    return ["taskset", "-c", CLIENT_CPU, *argv]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


@dataclass
class Server:
    name: str
    url: str
    argv: list[str]
    registry: bool = True
    version: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, log: Path) -> None:
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *self.argv],
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass(frozen=True)
class Seeded:
    blob_path: str  # URL path of the 256 MiB blob
    small_blob_path: str  # URL path of a small blob (HEAD)
    manifest_path: str  # URL path of the manifest, by tag


async def wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(400):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as r:
                    if r.status < 500:
                        return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} never came up")


async def push_file(http: aiohttp.ClientSession, base: str, name: str, path: Path) -> str:
    """POST then a streamed PUT ?digest= (what Distribution 2.8 accepts)."""
    digest = sha256_file(path)

    async def body() -> AsyncIterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(4 * MiB):
                yield chunk

    async with http.post(f"{base}/v2/{name}/blobs/uploads/") as r:
        assert r.status == 202, await r.text()
        location = r.headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    async with http.put(f"{location}{sep}digest={digest}", data=body()) as r:
        assert r.status == 201, await r.text()
    return digest


async def seed_registry(base: str, big: Path, small: Path, manifest: bytes) -> Seeded:
    config, layer = json.loads(manifest)["config"], json.loads(manifest)["layers"][0]
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        big_digest = await push_file(http, base, "bench/app", big)
        small_digest = await push_file(http, base, "bench/app", small)
        assert small_digest == config["digest"] == layer["digest"]
        async with http.put(
            f"{base}/v2/bench/app/manifests/bench",
            data=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        ) as r:
            assert r.status == 201, await r.text()
    return Seeded(
        f"/v2/bench/app/blobs/{big_digest}",
        f"/v2/bench/app/blobs/{small_digest}",
        "/v2/bench/app/manifests/bench",
    )


def seed_nginx(docroot: Path, big: Path, small: Path, manifest: bytes) -> Seeded:
    blobs = docroot / "v2" / "bench" / "app" / "blobs"
    manifests = docroot / "v2" / "bench" / "app" / "manifests"
    blobs.mkdir(parents=True)
    manifests.mkdir(parents=True)
    big_digest, small_digest = sha256_file(big), sha256_file(small)
    os.link(big, blobs / big_digest)
    shutil.copy(small, blobs / small_digest)
    (manifests / "bench").write_bytes(manifest)
    return Seeded(
        f"/v2/bench/app/blobs/{big_digest}",
        f"/v2/bench/app/blobs/{small_digest}",
        "/v2/bench/app/manifests/bench",
    )


def run(argv: list[str]) -> str:
    out = subprocess.run(argv, check=True, capture_output=True, text=True)
    return out.stdout


def blob_throughput(url: str, clients: int, size: int, repeats: int) -> float:
    """MB/s over ``clients`` concurrent curl downloads of the whole blob (median of repeats)."""
    results = []
    for _ in range(repeats):
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                client("curl", "-sf", "-o", "/dev/null", url), stdout=subprocess.DEVNULL
            )
            for _ in range(clients)
        ]
        for p in procs:
            assert p.wait() == 0, f"curl {url} failed"
        results.append(clients * size / (time.perf_counter() - start) / 1e6)
    return statistics.median(results)


def wrk_rps(url: str, seconds: int) -> float:
    out = run(client("wrk", "-t1", "-c64", f"-d{seconds}s", "-H", f"Accept: {OCI_MANIFEST}", url))
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors against {url}:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match[1])


def ab_head_rps(url: str, requests: int) -> float:
    out = run(client("ab", "-q", "-i", "-k", "-c", "64", "-n", str(requests), url))
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    if (failed and int(failed[1])) or non2xx:
        raise RuntimeError(f"ab saw errors against {url}:\n{out}")
    match = re.search(r"Requests per second:\s+([\d.]+)", out)
    assert match, out
    return float(match[1])


def skopeo_push_seconds(layout: Path, host: str, repeats: int) -> float:
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        run(
            client(
                "skopeo",
                "copy",
                "--insecure-policy",
                "--dest-tls-verify=false",
                f"oci:{layout}:v1",
                f"docker://{host}/bench/push{i}-{time.monotonic_ns()}:v1",
            )
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def servers(scratch: Path) -> Iterator[dict[str, Server]]:
    wharf_port, dist_port, nginx_port = free_port(), free_port(), free_port()
    dist_config = scratch / "distribution.yml"
    dist_config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {scratch / 'distribution'}\n"
        f"http:\n  addr: 127.0.0.1:{dist_port}\n"
    )
    nginx_dir = scratch / "nginx"
    (nginx_dir / "logs").mkdir(parents=True)
    (nginx_dir / "nginx.conf").write_text(
        f"""
worker_processes 1;
daemon off;
pid {nginx_dir}/nginx.pid;
error_log {nginx_dir}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {nginx_dir}/body;
    proxy_temp_path {nginx_dir}/proxy;
    fastcgi_temp_path {nginx_dir}/fastcgi;
    uwsgi_temp_path {nginx_dir}/uwsgi;
    scgi_temp_path {nginx_dir}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{nginx_port};
        root {nginx_dir}/html;
        location /v2/bench/app/manifests/ {{ default_type {OCI_MANIFEST}; }}
    }}
}}
"""
    )
    found = {
        "wharf": Server(
            "wharf",
            f"http://127.0.0.1:{wharf_port}",
            [
                str(ROOT / ".venv" / "bin" / "wharf"),
                "origin",
                "serve",
                "--listen",
                f"127.0.0.1:{wharf_port}",
                "--data-dir",
                str(scratch / "wharf"),
            ],
        ),
        "distribution": Server(
            "distribution",
            f"http://127.0.0.1:{dist_port}",
            ["docker-registry", "serve", str(dist_config)],
        ),
        "nginx": Server(
            "nginx",
            f"http://127.0.0.1:{nginx_port}",
            ["nginx", "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf")],
            registry=False,
        ),
    }
    found["wharf"].version = (
        "wharf "
        + run([str(ROOT / ".venv" / "bin" / "pip"), "show", "wharf"])
        .split("Version: ")[1]
        .split()[0]
    )
    found["distribution"].version = run(["docker-registry", "--version"]).split()[-1]
    found["nginx"].version = subprocess.run(
        ["nginx", "-v"], capture_output=True, text=True, check=True
    ).stderr.strip()
    try:
        for server in found.values():
            server.start(scratch / f"{server.name}.log")
        yield found
    finally:
        for server in found.values():
            server.stop()


def ratio(a: float, b: float, higher_is_better: bool = True) -> str:
    return f"{(a / b if higher_is_better else b / a):.2f}x"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs (smoke test)")
    args = parser.parse_args()
    repeats, seconds, requests = (1, 3, 5000) if args.quick else (3, 10, 20000)
    scratch = Path(tempfile.mkdtemp(prefix="wharf-bench-"))
    scratch.chmod(0o755)  # nginx's workers run as nobody
    big, small = scratch / "big.bin", scratch / "small.json"
    with big.open("wb") as f:
        for _ in range(256):
            f.write(os.urandom(MiB))
    small.write_bytes(b"{}")
    small_desc = {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": sha256_file(small),
        "size": 2,
    }
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": small_desc,
            "layers": [small_desc],
        }
    ).encode()
    layout = scratch / "layout"
    write_oci_layout(layout, "v1", [{f"layer{i}/data.bin": os.urandom(10 * MiB)} for i in range(3)])
    rows: dict[str, dict[str, float]] = {}
    try:
        with servers(scratch) as found:
            for server in found.values():
                await wait_up(server.url + ("/v2/" if server.registry else "/"))
            seeded = {
                name: (
                    await seed_registry(s.url, big, small, manifest)
                    if s.registry
                    else seed_nginx(scratch / "nginx" / "html", big, small, manifest)
                )
                for name, s in found.items()
            }
            for name, server in found.items():
                paths = seeded[name]
                print(f"measuring {name} ...", file=sys.stderr)
                row = rows.setdefault(name, {})
                row["blob_1"] = blob_throughput(server.url + paths.blob_path, 1, 256 * MiB, repeats)
                row["blob_8"] = blob_throughput(server.url + paths.blob_path, 8, 256 * MiB, repeats)
                row["manifest_rps"] = wrk_rps(server.url + paths.manifest_path, seconds)
                row["head_rps"] = ab_head_rps(server.url + paths.small_blob_path, requests)
                if server.registry:
                    host = server.url.removeprefix("http://")
                    row["push_s"] = skopeo_push_seconds(layout, host, repeats)
            versions = {name: s.version for name, s in found.items()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(report(rows, versions, args.quick))


def report(rows: dict[str, dict[str, float]], versions: dict[str, str], quick: bool) -> str:
    w, d, n = rows["wharf"], rows["distribution"], rows["nginx"]
    lines = [
        "| measure | wharf | distribution | nginx | wharf/distribution | wharf/nginx |",
        "|---|---|---|---|---|---|",
    ]
    spec: list[tuple[str, str, str, Callable[[float], str], bool]] = [
        ("blob_1", "GET 256 MiB blob, 1 client (MB/s)", "", lambda v: f"{v:.0f}", True),
        ("blob_8", "GET 256 MiB blob, 8 clients (MB/s, total)", "", lambda v: f"{v:.0f}", True),
        ("manifest_rps", "manifest GET by tag (req/s, wrk -c64)", "", lambda v: f"{v:.0f}", True),
        ("head_rps", "HEAD small blob (req/s, ab -k -c64)", "", lambda v: f"{v:.0f}", True),
        ("push_s", "skopeo copy push, 3 x 10 MiB layers (s)", "", lambda v: f"{v:.2f}", False),
    ]
    for key, label, _, fmt, higher in spec:
        nginx_value = fmt(n[key]) if key in n else "n/a"
        vs_nginx = ratio(w[key], n[key], higher) if key in n else "n/a"
        lines.append(
            f"| {label} | {fmt(w[key])} | {fmt(d[key])} | {nginx_value} | "
            f"{ratio(w[key], d[key], higher)} | {vs_nginx} |"
        )
    lines.append("")
    lines.append(
        "Ratios are wharf's advantage: above 1.00x wharf is faster (for the push, quicker)."
    )
    lines.append("Versions: " + "; ".join(f"{k}: {v}" for k, v in versions.items()))
    if quick:
        lines.append("(--quick: single repetitions and short runs; not for the record)")
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main())
