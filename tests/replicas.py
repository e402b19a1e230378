"""Several origin replicas as real processes sharing one PostgreSQL database and storage
(S3 on moto, or folders standing in for a shared filesystem), with no load balancer: the
tests choose which replica each request goes to."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.process import OriginProcess
from tests.support import sample


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def origin_toml(settings: dict[str, Any], locations: Sequence[dict[str, Any]]) -> str:
    lines = ["[origin]", *(f"{k} = {toml_value(v)}" for k, v in settings.items())]
    for location in locations:
        lines += ["", "[[origin.locations]]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in location.items()]
    return "\n".join(lines) + "\n"


@dataclass
class Replicas:
    root: Path
    database_url: str
    locations: Sequence[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    processes: list[OriginProcess] = field(default_factory=list)

    def replica(self, index: int, region: str = "local") -> OriginProcess:
        config = self.root / f"replica-{index}.toml"
        config.write_text(
            origin_toml(
                {"database_url": self.database_url, "region": region, **self.settings},
                self.locations,
            )
        )
        process = OriginProcess(
            self.root / f"replica-{index}",
            self.root / f"replica-{index}.log",
            None,
            "--config",
            str(config),
        )
        self.processes.append(process)
        return process

    async def start(self, count: int, regions: Sequence[str] = ()) -> list[OriginProcess]:
        started = []
        for index in range(count):  # one after the other: the first creates the admin
            process = self.replica(len(self.processes), regions[index] if regions else "local")
            await process.start()
            started.append(process)
        return started

    def admin_password(self) -> str:
        return (self.processes[0].data_dir / "admin-password").read_text().strip()

    def admin(self) -> str:
        return aiohttp.encode_basic_auth("admin", self.admin_password())

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop_quietly() for p in self.processes))


async def metric(url: str, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as r:
        return sample(await r.text(), name, **labels)


async def leading(processes: Sequence[OriginProcess]) -> list[OriginProcess]:
    """The replicas that say they run the singleton workers."""
    found = []
    for process in processes:
        try:
            if await metric(process.url, "wharf_origin_leader") == 1:
                found.append(process)
        except aiohttp.ClientError:
            pass
    return found
