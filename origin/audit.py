"""The audit log: every push, pull, delete, login and token, written off the request path.

Handlers call :meth:`AuditLog.record`, which only appends to a list. A background task writes
the batch in one transaction every ``interval`` seconds (or sooner once ``batch`` events wait).
When the database refuses a batch, the batch goes to a JSON-lines file under the spool folder
and is retried on every later flush, so a failing sink loses nothing; files are removed only
once their events are committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from origin.metadata.models import audit_events

_log = structlog.get_logger("wharf.audit")


@dataclass(frozen=True)
class AuditEvent:
    action: str  # push, pull, delete, login, token, ...
    outcome: str  # ok, denied, failed
    actor: str | None = None
    repository: str | None = None
    reference: str | None = None
    client: str | None = None
    detail: dict[str, Any] | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def row(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps({**self.row(), "at": self.at.isoformat()})

    @classmethod
    def from_json(cls, line: str) -> AuditEvent:
        data = json.loads(line)
        return cls(**{**data, "at": datetime.fromisoformat(data["at"])})


def _with_zone(event: dict[str, Any]) -> dict[str, Any]:
    """SQLite returns times without their zone; the log's times are all UTC."""
    at = event["at"]
    if at.tzinfo is None:
        event["at"] = at.replace(tzinfo=UTC)
    return event


class AuditLog:
    def __init__(
        self, engine: AsyncEngine, spool: Path, batch: int = 500, interval: float = 0.5
    ) -> None:
        self.engine = engine
        self.spool = spool
        self.batch = batch
        self.interval = interval
        self._pending: list[AuditEvent] = []
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        spool.mkdir(mode=0o700, parents=True, exist_ok=True)

    def record(self, event: AuditEvent) -> None:
        self._pending.append(event)
        if len(self._pending) >= self.batch:
            self._wake.set()

    async def run(self) -> None:
        """Flush until cancelled; the caller flushes once more after cancelling."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        async with self._flushing:  # once it returns, whatever was recorded before is stored
            await self._flush()

    async def _flush(self) -> None:
        events, self._pending = self._pending, []
        if events:
            try:
                await self._insert(events)
            except (SQLAlchemyError, OSError) as exc:
                await asyncio.to_thread(self._spool, events)
                _log.warning("audit sink failed; events spooled", count=len(events), error=str(exc))
                return
        await self._replay()

    async def _insert(self, events: list[AuditEvent]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(insert(audit_events), [e.row() for e in events])

    def _spool(self, events: list[AuditEvent]) -> None:
        path = self.spool / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex}.jsonl"
        with path.open("w") as f:
            f.writelines(e.to_json() + "\n" for e in events)
            f.flush()
            os.fsync(f.fileno())

    async def _replay(self) -> None:
        for path in sorted(self.spool.glob("*.jsonl")):
            text = await asyncio.to_thread(path.read_text)
            events = [AuditEvent.from_json(line) for line in text.splitlines() if line]
            try:
                await self._insert(events)
            except (SQLAlchemyError, OSError):
                return  # still failing: keep the file for the next flush
            path.unlink()

    async def query(
        self,
        *,
        actor: str | None = None,
        repository: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Events in order, filtered, one page at a time (pass the last id as ``after_id``);
        what was recorded before the call is in it (a query flushes first)."""
        if after_id == 0:
            await self.flush()
        q = select(audit_events).where(audit_events.c.id > after_id).order_by(audit_events.c.id)
        for column, value in (
            ("actor", actor),
            ("repository", repository),
            ("action", action),
            ("outcome", outcome),
        ):
            if value is not None:
                q = q.where(audit_events.c[column] == value)
        if since is not None:
            q = q.where(audit_events.c.at >= since)
        if until is not None:
            q = q.where(audit_events.c.at < until)
        async with self.engine.connect() as conn:
            rows = await conn.execute(q.limit(min(limit, 1000)))
            return [_with_zone(dict(row._mapping)) for row in rows]

    async def export(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Every matching event, oldest first, read a page at a time."""
        after = 0
        while True:
            page = await self.query(**filters, after_id=after, limit=1000)
            for event in page:
                yield event
            if len(page) < 1000:
                return
            after = page[-1]["id"]

    async def prune(self, older_than: datetime) -> int:
        """Delete events recorded before ``older_than`` (the retention setting)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(audit_events).where(audit_events.c.at < older_than))
            return result.rowcount
