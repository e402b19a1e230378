"""A Wharf node as its peers see it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Peer:
    id: str  # unique per node, stable across restarts
    role: str  # "origin" | "edge"
    region: str
    zone: str
    api_url: str  # where its HTTP API answers, e.g. http://10.0.0.5:5001
    torrent_port: int = 0  # 0: no BitTorrent
    version: str = ""
    healthy: bool = True
    since: float = field(default=0.0, compare=False)  # when this view of it was taken

    def meta(self) -> dict[str, str]:
        """Its description as Consul service Meta (string values only)."""
        return {
            "role": self.role,
            "region": self.region,
            "zone": self.zone,
            "api_url": self.api_url,
            "torrent_port": str(self.torrent_port),
            "version": self.version,
        }
