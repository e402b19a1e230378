"""Webhooks: HMAC-signed JSON deliveries of what happens in a namespace, with retries.

The dispatcher follows the event feed (pushes, tag deletions, manifest deletions, written with
the changes themselves) from a cursor kept in the database and queues a delivery for each
subscribed hook in the same transaction that moves the cursor; the sender posts due
deliveries, retrying with exponential backoff (up to ``max_attempts``) and keeping every
outcome in the delivery log. Both run on the leading replica only. Delivery is at least once:
receivers should use ``X-Wharf-Delivery`` to drop repeats.

Each delivery is ``POST <url>`` with a JSON body and headers ``X-Wharf-Event``,
``X-Wharf-Delivery`` and ``X-Wharf-Signature-256: sha256=<hex HMAC-SHA256 of the body with
the hook's secret>``. A hook's deliveries go one at a time, in the order of the events,
except that a failed one is retried (30 s doubling to an hour, 8 attempts) after those behind
it. Addresses on private, loopback and link-local networks are refused
unless ``webhooks_private_networks`` allows them (a hook must not reach inside the network).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import random
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from prometheus_client import CollectorRegistry, Counter, Gauge

from ocicore.tasks import start_tracked
from origin.metadata.placements import namespace_of
from origin.metadata.webhooks import Delivery, Hook, WebhookStore
from origin.replication import settled

_log = structlog.get_logger("wharf.origin.webhooks")

EVENTS = ("push", "tag_delete", "manifest_delete", "replication_failure", "ping")
_KINDS = {"push": "push", "untag": "tag_delete", "delete": "manifest_delete"}
IDLE_SECONDS = 0.5
MAX_RETRY_SECONDS = 3600.0
BASE_RETRY_SECONDS = 30.0


def backoff(attempts: int, base: float) -> float:
    """Seconds before the next attempt: ``base`` doubling to an hour, give or take a tenth (so
    that a receiver back up is not hit by every retry at once). With 30 s, eight attempts
    span about two hours."""
    jitter = random.uniform(0.9, 1.1)  # noqa: S311 - spreading retries, not a secret
    return min(base * 2.0**attempts, MAX_RETRY_SECONDS) * jitter


class PublicResolver(ThreadedResolver):
    """Resolves to public addresses only: checked where the connection is made, so a name
    that answers differently the second time (DNS rebinding) still cannot lead inside."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await super().resolve(host, port, family)
        public = [r for r in found if ipaddress.ip_address(r["host"]).is_global]
        if not public:
            raise Refused("not a public address")
        return public


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Refused(OSError):
    """The hook's address is not one deliveries may go to."""


class Webhooks:
    def __init__(
        self,
        store: WebhookStore,
        http: aiohttp.ClientSession,
        registry: CollectorRegistry,
        private_networks: bool = False,
        max_attempts: int = 8,
        timeout: float = 10.0,
        retry_base: float = BASE_RETRY_SECONDS,
    ) -> None:
        self.retry_base = retry_base
        self.store = store
        self.http = http
        self.private_networks = private_networks
        self.max_attempts = max_attempts
        self.timeout = timeout
        self._sent = Counter(
            "wharf_origin_webhook_deliveries",
            "Webhook delivery attempts, by outcome",
            ["result"],
            registry=registry,
        )
        self._pending = Gauge(
            "wharf_origin_webhook_pending_deliveries",
            "Deliveries waiting for their (next) attempt",
            registry=registry,
        )

    # -- producing -----------------------------------------------------------------------
    async def dispatch(self) -> int:
        """Queue deliveries for the next events of the feed; how many events were read."""
        cursor, rows = await self.store.next_events(500)
        rows = settled(cursor, rows, datetime.now(UTC))
        if not rows:
            return 0
        hooks = await self.store.hooks()
        queued: list[tuple[int, str, dict[str, Any]]] = []
        for row in rows:
            event = _KINDS.get(row.kind)
            if event is None:
                continue
            payload = {
                "event": event,
                "repository": row.repository,
                "digest": row.digest,
                "tag": row.tag,
                "at": (row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)).isoformat(),
                "seq": row.seq,
            }
            for hook in _subscribed(hooks, namespace_of(row.repository), event):
                queued.append((hook.id, event, payload))
        await self.store.dispatch(cursor, rows[-1].seq, queued)
        return len(rows)

    async def notify(self, namespaces: Sequence[str], event: str, payload: dict[str, Any]) -> None:
        """Queue an event that is not in the feed (a replication failure) for those hooks."""
        hooks = await self.store.hooks()
        for namespace in set(namespaces):
            for hook in _subscribed(hooks, namespace, event):
                await self.store.enqueue(hook.id, event, {"event": event, **payload})

    # -- delivering ----------------------------------------------------------------------
    async def run(self) -> None:
        """Dispatch and deliver until cancelled (on the leading replica). Each hook has its
        own sender, so a slow or dead receiver delays only its own deliveries."""
        senders: dict[int, asyncio.Task[None]] = {}
        try:
            while True:
                try:
                    read = await self.dispatch()
                    due = await self.store.due(64, busy=list(senders))
                    by_hook: dict[int, list[Delivery]] = {}
                    for delivery in due:
                        by_hook.setdefault(delivery.hook_id, []).append(delivery)
                    for hook_id, group in by_hook.items():
                        start_tracked(senders, hook_id, self._in_order(group))
                    self._pending.set(await self.store.pending())
                except Exception as exc:  # the database is away: try again soon
                    _log.warning("webhook round failed", error=str(exc) or type(exc).__name__)
                    read, due = 0, []
                if not read and not due:
                    await asyncio.sleep(IDLE_SECONDS)
        finally:
            for task in list(senders.values()):
                task.cancel()
            await asyncio.gather(*senders.values(), return_exceptions=True)

    async def _in_order(self, deliveries: list[Delivery]) -> None:
        """A hook's deliveries one after the other, oldest first."""
        for delivery in deliveries:
            try:
                await self.attempt(delivery)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: the delivery stays due
                _log.warning("webhook attempt not recorded", error=str(exc) or type(exc).__name__)
                return

    async def attempt(self, delivery: Delivery) -> Delivery:
        """One attempt at a delivery, recorded; the delivery as it is afterwards."""
        hook = await self._hook(delivery.hook_id)
        status: int | None = None
        error: str | None = None
        if hook is None:
            error = "the hook is gone"
        else:
            try:
                status = await self._post(hook, delivery)
                if not 200 <= status < 300:
                    error = f"the receiver answered {status}"
            except Refused as refused:
                error = str(refused)
            except aiohttp.ClientConnectorError as exc:
                private = isinstance(exc.os_error, Refused)
                error = "not a public address" if private else "could not connect"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = type(exc).__name__  # no more: internal details stay inside
        last = delivery.attempts + 1 >= self.max_attempts or hook is None
        retry_in = None if last else backoff(delivery.attempts, self.retry_base)
        result = "delivered" if error is None else "failed" if retry_in is None else "retry"
        self._sent.labels(result).inc()
        if error is not None:
            _log.info("webhook delivery failed", hook=delivery.hook_id, delivery=delivery.id,
                      error=error, retry_in=retry_in)  # fmt: skip
        await self.store.attempted(delivery, status, error, retry_in)
        updated = await self.store.delivery(delivery.id)
        assert updated is not None
        return updated

    async def _hook(self, hook_id: int) -> Hook | None:
        found = [h for h in await self.store.hooks() if h.id == hook_id]
        return found[0] if found else None

    async def _post(self, hook: Hook, delivery: Delivery) -> int:
        self._check_address(hook.url)
        body = json.dumps({**delivery.payload, "delivery": delivery.id}).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "wharf-webhooks",
            "X-Wharf-Event": delivery.event,
            "X-Wharf-Delivery": str(delivery.id),
            "X-Wharf-Signature-256": sign(hook.secret, body),
        }
        async with self.http.post(
            hook.url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        ) as r:
            await r.read()
            return r.status

    def _check_address(self, url: str) -> None:
        """An address written in the URL is not resolved (so the resolver cannot refuse it):
        check it here. Names are checked by :class:`PublicResolver`."""
        if self.private_networks:
            return
        host = urlsplit(url).hostname or ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return
        if not address.is_global:
            raise Refused("not a public address")


def _subscribed(hooks: Sequence[Hook], namespace: str, event: str) -> list[Hook]:
    return [h for h in hooks if h.namespace == namespace and event in h.events]
