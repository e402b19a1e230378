"""Running the servers: ``wharf origin serve``, ``wharf edge serve`` and ``wharf up`` (an
origin and two edges in one process, on embedded defaults: the README's main job)."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop

from ocicore.web.accesslog import write_line
from ocicore.web.logs import configure_logging
from ocicore.web.serve import serve_all

if TYPE_CHECKING:
    from aiohttp import web

    from edge.config import EdgeConfig
    from origin.config import OriginConfig


REPLICATOR = "edge-sync"  # the edges' account at the origin, in `wharf up`


def _bind(component: str, host: str, port: int) -> tuple[socket.socket, str]:
    # Bind before the loop starts so a port that is taken fails at once, loudly.
    sock = socket.create_server((host, port), backlog=1024)
    bound_host, bound_port = sock.getsockname()[:2]
    url = f"http://{bound_host}:{bound_port}"
    # Written whatever the log level: tools (and tests) learn the port picked for ":0" here.
    write_line({"event": "listening", "component": component, "url": url})
    return sock, url


def run(
    origin: OriginConfig | None, edges: list[EdgeConfig], log_level: str, shutdown: float
) -> None:
    from edge.app import create_app as create_edge  # noqa: PLC0415 - heavy, only to serve
    from origin.app import create_app as create_origin  # noqa: PLC0415

    configure_logging(log_level)
    apps: list[tuple[web.Application, socket.socket]] = []
    if origin is not None:
        sock, url = _bind("origin", origin.host, origin.port)
        origin = dataclasses.replace(origin, advertise_url=origin.advertise_url or url)
        apps.append((create_origin(origin), sock))
    for config in edges:
        sock, url = _bind("edge", config.host, config.port)
        advertised = dataclasses.replace(config, advertise_url=config.advertise_url or url)
        apps.append((create_edge(advertised), sock))
    uvloop.run(serve_all(apps, shutdown))


def local_cluster(
    root: Path, port: int = 5000, edges: int = 2
) -> tuple[OriginConfig, list[EdgeConfig]]:
    """The embedded defaults: an origin on ``port`` and edges on the next ports, data under
    ``root`` (SQLite, filesystem, the origin as every edge's upstream)."""
    from edge.config import EdgeConfig  # noqa: PLC0415
    from gossip.node import StaticPeer  # noqa: PLC0415
    from origin.auth.bootstrap import write_secret  # noqa: PLC0415
    from origin.config import OriginConfig  # noqa: PLC0415

    names = [f"edge-{letter}" for letter in "abcdefghij"[:edges]]
    # The edges accept pushes and carry them to the origin as this account (created by the
    # origin at start with the generated password).
    root.mkdir(parents=True, exist_ok=True)
    secret = root / "replicator-password"
    write_secret(secret)
    password = secret.read_text().strip()
    peers = (
        StaticPeer("origin", "origin", f"http://127.0.0.1:{port}"),
        *(
            StaticPeer(name, "edge", f"http://127.0.0.1:{port + 1 + i}")
            for i, name in enumerate(names)
        ),
    )
    origin = OriginConfig(
        listen=f"127.0.0.1:{port}",
        data_dir=root / "origin",
        node_id="origin",
        peers=peers,
        replicators=(REPLICATOR,),
        replicator_password_file=str(secret),
    )
    return origin, [
        EdgeConfig(
            listen=f"127.0.0.1:{port + 1 + i}",
            origin=f"http://127.0.0.1:{port}",
            data_dir=root / name,
            node_id=name,
            peers=peers,
            replication_username=REPLICATOR,
            replication_password=password,
        )
        for i, name in enumerate(names)
    ]
