"""Who may subscribe what to a namespace's events: its managers."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from urllib.parse import urlsplit

from ocicore.errors import ErrorCode, OCIError
from origin.admin.base import Caller, Management
from origin.audit import AuditLog
from origin.auth.accounts import AccountService
from origin.metadata.webhooks import Delivery, Hook
from origin.webhooks import Webhooks

MAX_WEBHOOKS = 20  # per namespace: every event is delivered to each of them


class WebhookAdmin(Management):
    def __init__(self, accounts: AccountService, audit: AuditLog, webhooks: Webhooks) -> None:
        super().__init__(accounts, audit)
        self.webhooks = webhooks

    async def _managed(self, caller: Caller, namespace: str, action: str) -> None:
        await self.require_manager(caller, await self.namespace(namespace), action)

    async def of(self, caller: Caller, namespace: str) -> list[Hook]:
        await self._managed(caller, namespace, "webhook.list")
        return await self.webhooks.store.hooks(namespace)

    async def add(
        self, caller: Caller, namespace: str, url: str, events: Sequence[str]
    ) -> tuple[Hook, str]:
        """A new hook and its secret (shown this once)."""
        await self._managed(caller, namespace, "webhook.add")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not one
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
            valid = valid and not parts.username
        except ValueError:  # a malformed host or port
            valid = False
        if not valid:
            raise OCIError(ErrorCode.INVALID_REQUEST, "url: an http(s) URL without credentials")
        if len(await self.webhooks.store.hooks(namespace)) >= MAX_WEBHOOKS:
            raise OCIError(
                ErrorCode.DENIED,
                {"limit": MAX_WEBHOOKS},
                message=f"{namespace} has {MAX_WEBHOOKS} webhooks, the most a namespace may "
                "have: remove one first",
            )
        secret = secrets.token_urlsafe(32)
        hook_id = await self.webhooks.store.add(namespace, url, events, secret, caller.name)
        self.record(caller, "webhook.add",
                    detail={"namespace": namespace, "id": hook_id, "events": list(events)})  # fmt: skip
        hook = await self.webhooks.store.hook(namespace, hook_id)
        assert hook is not None
        return hook, secret

    async def _hook(self, caller: Caller, namespace: str, hook_id: int, action: str) -> Hook:
        await self._managed(caller, namespace, action)
        hook = await self.webhooks.store.hook(namespace, hook_id)
        if hook is None:
            raise OCIError(ErrorCode.NOT_FOUND, "no such webhook")
        return hook

    async def remove(self, caller: Caller, namespace: str, hook_id: int) -> None:
        await self._hook(caller, namespace, hook_id, "webhook.remove")
        await self.webhooks.store.remove(namespace, hook_id)
        self.record(caller, "webhook.remove", detail={"namespace": namespace, "id": hook_id})

    async def deliveries(
        self, caller: Caller, namespace: str, hook_id: int, limit: int = 100
    ) -> list[Delivery]:
        await self._hook(caller, namespace, hook_id, "webhook.deliveries")
        return await self.webhooks.store.deliveries(hook_id, limit)

    async def test(self, caller: Caller, namespace: str, hook_id: int) -> Delivery:
        """Deliver a ``ping`` now (retried later like any delivery if it fails)."""
        hook = await self._hook(caller, namespace, hook_id, "webhook.test")
        delivery_id = await self.webhooks.store.enqueue(
            hook.id,
            "ping",
            {"event": "ping", "namespace": namespace, "hook": hook.id},
            due_in=3600,  # sent here, now: not also by the leader's sender meanwhile
        )
        delivery = await self.webhooks.store.delivery(delivery_id)
        assert delivery is not None
        return await self.webhooks.attempt(delivery)
