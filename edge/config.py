"""The edge's settings: defaults here, then ``[edge]`` of a TOML file, ``WHARF_EDGE_*``, flags.

Mirrors of other registries are ``[[edge.mirrors]]`` tables of the file::

    [[edge.mirrors]]
    namespace = "docker.io"                    # clients pull docker.io/library/alpine, or
    url = "https://registry-1.docker.io"       # library/alpine?ns=docker.io (containerd)
    username = "..."                           # optional; never logged
    password = "..."
    public = true                              # pulls need no token (the default)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from gossip.node import NodeSettings, StaticPeer
from ocicore.settings import ServerSettings

GiB = 1 << 30


@dataclass(frozen=True)
class Mirror:
    namespace: str  # the first component(s) of the names it serves, e.g. "docker.io"
    url: str
    username: str = ""
    password: str = field(default="", repr=False)  # never in a log line
    # Public: anyone who reaches the edge may pull what this mirror serves (like the public
    # registry it mirrors). Otherwise a token from the origin with pull on the full name.
    public: bool = True

    def __post_init__(self) -> None:
        if not self.namespace or self.namespace != self.namespace.strip("/"):
            raise ValueError(
                f"a mirror needs a namespace without slashes around: {self.namespace!r}"
            )
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"mirror url must be http(s): {self.url!r}")


@dataclass(frozen=True)
class EdgeConfig(NodeSettings, ServerSettings):
    listen: str = "127.0.0.1:5001"
    origin: str = "http://127.0.0.1:5000"
    data_dir: Path = Path("./var/edge")
    cache_size: int = 20 * GiB  # bytes; "20GiB" in the file, the environment or --cache-size
    log_level: str = "info"
    tag_ttl_seconds: float = 30.0  # a tag is revalidated with the upstream this often
    max_stale_seconds: float = 24 * 3600.0  # served stale this long while the upstream is down
    not_found_ttl_seconds: float = 10.0  # an upstream 404 is remembered this long
    held_ttl_seconds: float = 24 * 3600.0  # "repository R holds blob D", as the upstream said
    max_fills: int = 64  # concurrent upstream fills; beyond: 503 with Retry-After
    fill_timeout_seconds: float = 3600.0  # a fill's own deadline, whoever waits for it
    header_timeout_seconds: float = 20.0  # containerd gives up after 30 s without headers
    jwks_refresh_seconds: float = 300.0
    auth_service: str = "wharf"
    auth_issuer: str = "wharf-origin"
    auth_realm: str = ""  # empty: the origin's /auth/token
    shutdown_timeout_seconds: float = 30.0
    mirrors: tuple[Mirror, ...] = ()
    cooperate: bool = True  # on a miss, ask the digest's home edge in the region first
    # Pushes: accepted here and carried to the origin as the user who pushed, through the
    # origin account below (named in the origin's `replicators`). Empty: pushes are refused.
    replication_username: str = ""
    replication_password: str = field(default="", repr=False)  # never in a log line
    replication_retry_max_seconds: float = 60.0  # backoff cap between attempts
    # A push still not carried after this many attempts (a day and more at the cap) fails,
    # so the pushes after it in its repository go on; counted and logged.
    replication_attempts: int = 2000
    # A blob pushed here that no manifest names after this long is no longer kept from
    # eviction (its push was abandoned); it stays cached like any other blob.
    pushed_blob_ttl_seconds: float = 24 * 3600.0
    # With that account, follow the origin's event feed for this region and prefetch what
    # its replication rules name.
    prefetch: bool = True
    max_blob_bytes: int = 64 * GiB  # a larger pushed blob gets 413 SIZE_INVALID
    # BitTorrent among edges: blobs of at least swarm_threshold_bytes are fetched piece by
    # piece from other edges (the origin as web seed when none has them) and seeded.
    swarm: bool = True
    swarm_listen: str = ""  # HOST:PORT (port 0: any free one); empty: the HTTP host, any port
    swarm_threshold_bytes: int = 64 << 20
    swarm_upload_bytes_per_second: int = 0  # to all peers together; 0: no limit
    swarm_download_bytes_per_second: int = 0
    swarm_connections: int = 200
    # No new piece for this long: add the origin as web seed; again as long: plain HTTP.
    swarm_stall_seconds: float = 5.0

    table: ClassVar[str] = "edge"
    tables: ClassVar[Mapping[str, Any]] = MappingProxyType({"mirrors": Mirror, "peers": StaticPeer})

    def __post_init__(self) -> None:
        if not self.origin.startswith(("http://", "https://")):
            raise ValueError(f"origin must be an http(s) URL: {self.origin!r}")
        self.check(
            (
                "cache_size",
                "tag_ttl_seconds",
                "max_stale_seconds",
                "max_fills",
                "fill_timeout_seconds",
                "header_timeout_seconds",
                "jwks_refresh_seconds",
                "swarm_connections",
                "replication_retry_max_seconds",
                "replication_attempts",
                "pushed_blob_ttl_seconds",
                "max_blob_bytes",
                "swarm_stall_seconds",
            )
        )

    @property
    def swarm_address(self) -> str:
        """Where the swarm listens: ``swarm_listen``, or the HTTP host on any free port."""
        if self.swarm_listen:
            return self.swarm_listen
        return f"[{self.host}]:0" if ":" in self.host else f"{self.host}:0"

    @property
    def accepts_pushes(self) -> bool:
        return bool(self.replication_username)

    @property
    def realm(self) -> str:
        return self.auth_realm or f"{self.origin.rstrip('/')}/auth/token"
