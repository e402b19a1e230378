"""``wharf origin serve``, ``wharf edge serve``, ``wharf up`` (an origin and two edges on this
machine), and the admin commands of :mod:`wharf.admin`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wharf import admin, members

if TYPE_CHECKING:
    from edge.config import EdgeConfig
    from origin.config import OriginConfig

LEVELS = ["debug", "info", "warning", "error"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wharf", description=__doc__)
    components = parser.add_subparsers(dest="component", required=True)

    origin = components.add_parser("origin", help="the authoritative registry")
    serve = origin.add_subparsers(dest="command", required=True).add_parser(
        "serve", help="serve the OCI Distribution API, the token endpoint and the admin API"
    )
    serve.add_argument("--config", type=Path, help="TOML file with an [origin] table")
    serve.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:5000)")
    serve.add_argument("--data-dir", type=Path, help="blobs and SQLite metadata (./var/origin)")
    serve.add_argument("--database-url", help="SQLAlchemy async URL (default: SQLite in data dir)")
    serve.add_argument("--log-level", choices=LEVELS)

    edge = components.add_parser("edge", help="a pull-through caching node")
    serve = edge.add_subparsers(dest="command", required=True).add_parser(
        "serve", help="serve pulls from a local cache filled from the origin (and mirrors)"
    )
    serve.add_argument("--config", type=Path, help="TOML file with an [edge] table")
    serve.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:5001)")
    serve.add_argument("--origin", help="the origin's URL (default http://127.0.0.1:5000)")
    serve.add_argument("--data-dir", type=Path, help="the cache (./var/edge)")
    serve.add_argument("--cache-size", help="bytes of blobs to keep, e.g. 20GiB")
    serve.add_argument("--region", help="where this edge is (default local)")
    serve.add_argument("--log-level", choices=LEVELS)

    up = components.add_parser(
        "up", help="an origin and two edges on this machine, on embedded defaults"
    )
    up.add_argument("--data-dir", type=Path, default=Path("var"), help="default ./var")
    up.add_argument("--port", type=int, default=5000, help="the origin's; edges take the next")
    up.add_argument("--edges", type=int, default=2, choices=range(0, 10))
    up.add_argument("--log-level", choices=LEVELS, default="info")

    admin.add_commands(components)
    members.add_command(components)
    return parser


def _config(args: argparse.Namespace, load: Any, names: tuple[str, ...]) -> Any:
    """A server's settings: its file (``--config``), WHARF_* variables, then these flags."""
    return load(file=args.config, env=os.environ, overrides={n: getattr(args, n) for n in names})


def _origin_config(args: argparse.Namespace) -> OriginConfig:
    from origin.config import OriginConfig  # noqa: PLC0415 - the server's imports cost seconds

    names = ("listen", "data_dir", "database_url", "log_level")
    config: OriginConfig = _config(args, OriginConfig.load, names)
    return config


def _edge_config(args: argparse.Namespace) -> EdgeConfig:
    from edge.config import EdgeConfig  # noqa: PLC0415 - the server's imports cost seconds

    names = ("listen", "origin", "data_dir", "cache_size", "region", "log_level")
    config: EdgeConfig = _config(args, EdgeConfig.load, names)
    return config


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if hasattr(args, "build"):
        sys.exit(admin.run(args))
    if hasattr(args, "members"):
        sys.exit(members.run(args))
    from wharf import servers  # noqa: PLC0415 - the admin commands stay quick without it

    try:
        if args.component == "origin":
            one = _origin_config(args)
            servers.run(one, [], one.log_level, one.shutdown_timeout_seconds)
        elif args.component == "edge":
            edge = _edge_config(args)
            servers.run(None, [edge], edge.log_level, edge.shutdown_timeout_seconds)
        else:
            origin, edges = servers.local_cluster(args.data_dir, args.port, args.edges)
            servers.run(origin, edges, args.log_level, origin.shutdown_timeout_seconds)
    except (ValueError, OSError) as exc:
        sys.exit(f"wharf: {exc}")


if __name__ == "__main__":
    main()
