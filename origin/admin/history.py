"""The time machine: a tag's past states, restoring one, forgetting them early, and each
namespace's window (how long ended states stay restorable, and out of garbage collection's
reach); and the rules that make tags immutable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ocicore.digest import Digest
from ocicore.errors import ErrorCode, OCIError
from ocicore.names import validate_name, validate_tag
from origin.admin.base import Caller, Management
from origin.audit import AuditLog
from origin.auth.accounts import AccountService
from origin.metadata.history import HistoryStore, TagState
from origin.metadata.immutable import ImmutableRule, ImmutableRules
from origin.metadata.placements import namespace_of
from origin.metadata.store import MetadataStore, TagImmutable
from origin.registry.manifests import ManifestService, immutable

MAX_WINDOW_SECONDS = 28 * 86400  # four weeks
MAX_IMMUTABLE_RULES = 50  # per namespace: every push that moves a tag matches them all


class TimeMachine(Management):
    def __init__(
        self,
        accounts: AccountService,
        audit: AuditLog,
        meta: MetadataStore,
        history: HistoryStore,
        manifests: ManifestService,
        default_seconds: int,
    ) -> None:
        super().__init__(accounts, audit)
        self.meta = meta
        self.history = history
        self.manifests = manifests
        self.default_seconds = default_seconds

    async def window(self, namespace: str) -> int:
        own = await self.history.window(namespace)
        return self.default_seconds if own is None else own

    async def states(
        self, caller: Caller, repository: str, tag: str, limit: int = 100
    ) -> tuple[list[TagState], datetime]:
        """The tag's states, newest first, and the moment before which ended ones are out of
        reach (the window's start)."""
        validate_name(repository)
        validate_tag(tag)
        await self.require_repository(caller, repository, "pull", "tag.history")
        found = await self.history.states(repository, tag, limit)
        if found is None:
            raise OCIError(ErrorCode.NAME_UNKNOWN, repository)
        since = datetime.now(UTC) - timedelta(seconds=await self.window(namespace_of(repository)))
        return found, since

    async def restore(
        self, caller: Caller, repository: str, tag: str, digest: Digest
    ) -> str | None:
        """Point ``tag`` back at ``digest``; the digest it pointed at before (None: none)."""
        validate_name(repository)
        validate_tag(tag)
        await self.require_repository(caller, repository, "push", "tag.restore")
        since = datetime.now(UTC) - timedelta(seconds=await self.window(namespace_of(repository)))
        try:
            previous, done = await self.meta.restore_tag(repository, tag, str(digest), since)
        except TagImmutable as error:
            raise immutable(error) from None
        if not done:
            raise OCIError(
                ErrorCode.MANIFEST_UNKNOWN,
                f"{repository}:{tag} did not point at {digest} within the time machine's window"
                " (or the manifest is gone)",
            )
        self.manifests.cache.drop((repository, tag))
        self.record(
            caller,
            "tag.restore",
            repository=repository,
            detail={"tag": tag, "digest": str(digest), "previous": previous},
        )
        return previous

    async def expire(self, caller: Caller, repository: str, tag: str | None) -> int:
        """Forget the ended states of a tag (every tag: None) now, before their window ends."""
        validate_name(repository)
        if tag is not None:
            validate_tag(tag)
        await self.require_repository_admin(caller, repository, "history.expire")
        forgotten = await self.history.expire(repository, tag, datetime.now(UTC))
        self.record(
            caller,
            "history.expire",
            repository=repository,
            detail={"tag": tag, "forgotten": forgotten},
        )
        return forgotten

    async def set_window(self, caller: Caller, namespace: str, seconds: int | None) -> int:
        """Set a namespace's window (None: the origin's default); the window now in force."""
        account = await self.namespace(namespace)
        await self.require_manager(caller, account, "namespace.time_machine")
        if seconds is not None and not 0 <= seconds <= MAX_WINDOW_SECONDS:
            raise OCIError(ErrorCode.INVALID_REQUEST, "the window is 0 to 4 weeks")
        await self.history.set_window(namespace, seconds)
        self.record(caller, "namespace.time_machine", detail={"namespace": namespace,
                                                               "seconds": seconds})  # fmt: skip
        return await self.window(namespace)


class TagRules(Management):
    """Who may protect which tags: the namespace's managers."""

    def __init__(self, accounts: AccountService, audit: AuditLog, rules: ImmutableRules) -> None:
        super().__init__(accounts, audit)
        self.rules = rules

    async def of(self, caller: Caller, namespace: str) -> list[ImmutableRule]:
        await self.require_manager(caller, await self.namespace(namespace), "immutable.list")
        return await self.rules.of(namespace)

    async def add(
        self, caller: Caller, namespace: str, pattern: str, repository: str | None
    ) -> ImmutableRule:
        await self.require_manager(caller, await self.namespace(namespace), "immutable.add")
        if repository is not None:
            validate_name(repository)
            if namespace_of(repository) != namespace:
                raise OCIError(ErrorCode.NOT_FOUND, f"no repository {repository} in {namespace}")
        if len(await self.rules.of(namespace)) >= MAX_IMMUTABLE_RULES:
            raise OCIError(
                ErrorCode.DENIED,
                {"limit": MAX_IMMUTABLE_RULES},
                message=f"{namespace} has {MAX_IMMUTABLE_RULES} immutability rules, the most a "
                "namespace may have: remove one first",
            )
        rule_id = await self.rules.add(namespace, repository, pattern, caller.name)
        self.record(caller, "immutable.add", repository=repository,
                    detail={"namespace": namespace, "pattern": pattern, "id": rule_id})  # fmt: skip
        (rule,) = [r for r in await self.rules.of(namespace) if r.id == rule_id]
        return rule

    async def remove(self, caller: Caller, namespace: str, rule_id: int) -> None:
        await self.require_manager(caller, await self.namespace(namespace), "immutable.remove")
        if not await self.rules.remove(namespace, rule_id):
            raise OCIError(ErrorCode.NOT_FOUND, "no such rule")
        self.record(caller, "immutable.remove", detail={"namespace": namespace, "id": rule_id})


class Quotas(Management):
    """A namespace's quota: set by system admins, read (with its usage) by its managers."""

    def __init__(
        self, accounts: AccountService, audit: AuditLog, meta: MetadataStore, history: HistoryStore
    ) -> None:
        super().__init__(accounts, audit)
        self.meta = meta
        self.history = history

    async def get(self, caller: Caller, namespace: str) -> tuple[int | None, int]:
        """The quota (None: none) and the bytes used."""
        await self.require_manager(caller, await self.namespace(namespace), "quota.read")
        return await self.meta.quota(namespace), await self.meta.usage(namespace)

    async def set(self, caller: Caller, namespace: str, quota_bytes: int | None) -> None:
        self.require_admin(caller, "quota.set")
        await self.namespace(namespace)
        await self.history.set_quota(namespace, quota_bytes)
        self.record(caller, "quota.set", detail={"namespace": namespace, "bytes": quota_bytes})
