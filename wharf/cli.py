"""``wharf origin serve`` (and, as later components land, ``wharf edge serve``), and the
admin commands of :mod:`wharf.admin`."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from wharf import admin

if TYPE_CHECKING:
    from origin.config import OriginConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wharf", description=__doc__)
    components = parser.add_subparsers(dest="component", required=True)
    origin = components.add_parser("origin", help="the authoritative registry")
    origin_cmds = origin.add_subparsers(dest="command", required=True)
    serve = origin_cmds.add_parser("serve", help="serve the OCI Distribution API")
    serve.add_argument("--config", type=Path, help="TOML file with an [origin] table")
    serve.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:5000)")
    serve.add_argument("--data-dir", type=Path, help="blobs and SQLite metadata (./var/origin)")
    serve.add_argument("--database-url", help="SQLAlchemy async URL (default: SQLite in data dir)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    admin.add_commands(components)
    return parser


def serve_origin(config: OriginConfig) -> None:
    # The server's imports cost seconds; the admin commands, which need none of them, stay quick.
    import uvloop  # noqa: PLC0415

    from ocicore.web.accesslog import write_line  # noqa: PLC0415
    from ocicore.web.logs import configure_logging  # noqa: PLC0415
    from ocicore.web.serve import serve  # noqa: PLC0415
    from origin.app import create_app  # noqa: PLC0415

    configure_logging(config.log_level)
    # Bind before the loop starts so a port that is taken fails at once, loudly.
    sock = socket.create_server((config.host, config.port), backlog=1024)
    host, port = sock.getsockname()[:2]
    # Written whatever the log level: tools (and tests) learn the port picked for ":0" here.
    write_line({"event": "listening", "component": "origin", "url": f"http://{host}:{port}"})
    app = create_app(config)
    uvloop.run(serve(app, sock, config.shutdown_timeout_seconds))


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if hasattr(args, "build"):
        sys.exit(admin.run(args))
    if args.component == "origin" and args.command == "serve":
        from origin.config import OriginConfig  # noqa: PLC0415 - see serve_origin

        try:
            config = OriginConfig.load(
                file=args.config,
                env=os.environ,
                overrides={
                    "listen": args.listen,
                    "data_dir": args.data_dir,
                    "database_url": args.database_url,
                    "log_level": args.log_level,
                },
            )
        except (ValueError, OSError) as exc:
            sys.exit(f"wharf: {exc}")
        serve_origin(config)


if __name__ == "__main__":
    main()
