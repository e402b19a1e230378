"""Failed logins are limited per account and per client address, across every replica.

Past the limit, attempts are refused with 429 until the window passes, even with the right
password, so a password cannot be guessed at the speed of the network. Successes do not
reset the counters: a guesser who also knows one password gains nothing. Failures are rows
of the metadata database counted in a sliding window, so a guesser spreading attempts over
the replicas behind a load balancer meets the same limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from origin.metadata.models import login_failures


@dataclass(frozen=True)
class Limits:
    per_account: int = 10
    per_address: int = 50
    window_seconds: float = 300.0


def _subjects(account: str, address: str) -> tuple[str, ...]:
    """What a failure counts against: the client's address, and the account when one was
    named (a bad refresh token names none: it must not lock everyone's refreshes)."""
    by_address = f"ip:{address[:64]}"
    return (f"a:{account[:255]}", by_address) if account else (by_address,)


class LoginThrottle:
    def __init__(self, engine: AsyncEngine, limits: Limits = Limits()) -> None:
        self.engine = engine
        self.limits = limits

    def _since(self) -> datetime:
        return datetime.now(UTC) - timedelta(seconds=self.limits.window_seconds)

    async def blocked(self, account: str, address: str) -> bool:
        subjects = _subjects(account, address)
        query = (
            select(login_failures.c.subject, func.count())
            .where(
                login_failures.c.subject.in_(subjects),
                login_failures.c.at > self._since(),
            )
            .group_by(login_failures.c.subject)
        )
        async with self.engine.connect() as conn:
            counts = {str(row[0]): int(row[1]) for row in (await conn.execute(query)).all()}
        return any(
            counts.get(subject, 0)
            >= (self.limits.per_address if subject.startswith("ip:") else self.limits.per_account)
            for subject in subjects
        )

    async def failed(self, account: str, address: str) -> None:
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(login_failures),
                [{"subject": subject, "at": now} for subject in _subjects(account, address)],
            )

    async def prune(self) -> int:
        """Forget failures older than the window; how many."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(login_failures).where(login_failures.c.at <= self._since())
            )
        return result.rowcount
