"""Run ``wharf`` as a real child process, to restart it or kill it with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp

WHARF = [sys.executable, "-m", "wharf.cli"]


class OriginProcess:
    component = "origin"

    def __init__(
        self, data_dir: Path, log: Path, env: dict[str, str] | None = None, *flags: str
    ) -> None:
        self.data_dir = data_dir
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.flags = flags
        self.url = ""
        self._proc: asyncio.subprocess.Process | None = None

    def arguments(self) -> list[str]:
        return [
            "origin",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(self.data_dir),
            *self.flags,
        ]

    async def start(self, timeout: float = 30.0) -> str:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            start = log.tell()
            self._proc = await asyncio.create_subprocess_exec(
                *WHARF,
                *self.arguments(),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
                env=self.env,
                start_new_session=True,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            self.url = self._listening(start)
            if self.url:
                await self._wait_ready(deadline)
                return self.url
            if self._proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.component} did not start:\n{self.log.read_text()[-4000:]}")

    def _listening(self, start: int) -> str:
        with self.log.open("rb") as f:
            f.seek(start)
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "listening":
                    return str(event["url"])
        return ""

    async def _wait_ready(self, deadline: float) -> None:
        await wait_ready(self.url, deadline - asyncio.get_running_loop().time(), self.component)

    async def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, exactly like a crash."""
        assert self._proc is not None
        os.killpg(self._proc.pid, signal.SIGKILL)
        await self._proc.wait()

    async def stop_quietly(self) -> None:
        """Stop it if it still runs (a test may have killed it)."""
        if self._proc is not None and self._proc.returncode is None:
            await self.stop()

    async def stop(self) -> int:
        assert self._proc is not None
        if self._proc.returncode is None:
            self._proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self._proc.wait(), 30)
        return self._proc.returncode or 0


class EdgeProcess(OriginProcess):
    """``wharf edge serve`` as a real child process, in front of ``origin``."""

    component = "edge"

    def __init__(
        self,
        origin: str,
        data_dir: Path,
        log: Path,
        *flags: str,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(data_dir, log, env, *flags)
        self.origin = origin

    def arguments(self) -> list[str]:
        return [
            "edge",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--origin",
            self.origin,
            "--data-dir",
            str(self.data_dir),
            *self.flags,
        ]


async def wait_ready(url: str, seconds: float = 30.0, what: str = "server") -> None:
    """Until ``url``'s /readyz answers 200."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            try:
                async with session.get(f"{url}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{what} never became ready")
