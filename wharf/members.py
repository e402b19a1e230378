"""``wharf gossip members``: a node's view of the cluster, as a table or as JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import aiohttp

COLUMNS = ("id", "role", "region", "zone", "api_url", "healthy", "age_seconds")


def add_command(components: Any) -> None:
    gossip = components.add_parser("gossip", help="cluster membership")
    members = gossip.add_subparsers(dest="command", required=True).add_parser(
        "members", help="the nodes a node sees: role, region, zone, address, health, age"
    )
    members.add_argument(
        "--node",
        default=os.environ.get("WHARF_NODE", "http://127.0.0.1:5001"),
        help="any origin or edge (default http://127.0.0.1:5001, or WHARF_NODE)",
    )
    members.add_argument("--json", action="store_true", help="JSON instead of a table")
    members.set_defaults(members=True)


async def _fetch(node: str) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(node.rstrip("/") + "/_wharf/members") as r,
    ):
        r.raise_for_status()
        found: list[dict[str, Any]] = await r.json()
        return found


def table(rows: list[dict[str, Any]]) -> str:
    cells = [
        [str(row.get(c, "")) if row.get(c) is not None else "-" for c in COLUMNS] for row in rows
    ]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def run(args: argparse.Namespace) -> int:
    try:
        rows = asyncio.run(_fetch(args.node))
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"wharf: cannot ask {args.node}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0
