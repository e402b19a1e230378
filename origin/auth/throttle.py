"""Failed logins are limited per account and per client address.

Past the limit, attempts are refused with 429 until the window passes, even with the right
password, so a password cannot be guessed at the speed of the network. Successes do not
reset the counters: a guesser who also knows one password gains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from cachetools import TTLCache


@dataclass(frozen=True)
class Limits:
    per_account: int = 10
    per_address: int = 50
    window_seconds: float = 300.0


class LoginThrottle:
    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self._failures: TTLCache[str, int] = TTLCache(maxsize=100_000, ttl=limits.window_seconds)

    def blocked(self, account: str, address: str) -> bool:
        return (
            self._failures.get(f"a:{account}", 0) >= self.limits.per_account
            or self._failures.get(f"ip:{address}", 0) >= self.limits.per_address
        )

    def failed(self, account: str, address: str) -> None:
        # Each failure restarts its key's window (TTLCache re-inserts), so a steady guesser
        # stays blocked; refused attempts while blocked do not count.
        for key in (f"a:{account}", f"ip:{address}"):
            self._failures[key] = self._failures.get(key, 0) + 1
