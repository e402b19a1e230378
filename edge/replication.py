"""The replicator: carries what the journal holds to the origin, in push order per repository.

For each pushed manifest: its blobs (skipped when the origin has them, mounted from another
repository this edge pushed them to when it can, uploaded otherwise), then the manifest by
digest, then its tag. Every step asks first and writes only what is missing, so a replay after
a crash repeats nothing. The edge authenticates as its replicator account and acts for the user
who pushed (``act_as``): the origin authorizes and audits the push as that user's.

Conflicts: the origin is authoritative. A tag is moved at the origin only if it still has the
digest it had when the edge accepted the push (or did not exist, or nobody could tell then);
if somebody moved it at the origin since, the origin's tag stays, the pushed manifest is still
carried (reachable by digest), the edge drops its own tag, and the conflict is logged and
counted. Failures are retried with exponential backoff and jitter; what the origin refuses for
good (a 4xx other than 401, 404 and 429) ends the item as failed, counted and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import structlog

from edge.config import EdgeConfig
from edge.journal import Item, Journal
from edge.manifests import EdgeManifests
from edge.metrics import ReplicationMetrics
from edge.pushes import ORIGIN
from edge.store import BlobStore
from edge.tokens import Token, TokenRefused, ask_token
from edge.upstream import Unreachable, Upstream
from ocicore.digest import Digest

_log = structlog.get_logger("wharf.edge.replication")
CHUNK = 1 << 20
ASK_FIRST = 1 << 20  # blobs this large are only sent when the origin lacks them


class Refused(Exception):
    """The origin refused for good: retrying will not help."""


class Retry(Exception):
    """Not now: try again later."""


@dataclass(frozen=True)
class Outcome:
    kept: bool  # the tag (if any) is the pushed one at the origin now
    uploaded: int  # blob bytes sent


class Replicator:
    def __init__(
        self,
        journal: Journal,
        store: BlobStore,
        manifests: EdgeManifests,
        origin: Upstream,
        session: aiohttp.ClientSession,
        config: EdgeConfig,
        metrics: ReplicationMetrics,
    ) -> None:
        self.journal = journal
        self.store = store
        self.manifests = manifests
        self.origin = origin
        self.session = session
        self.config = config
        self.metrics = metrics
        self.wake = asyncio.Event()
        self._tokens: dict[tuple[str, str, str], Token] = {}

    async def run(self) -> None:
        """Until cancelled: carry every due item, then sleep until one is due or a push
        comes."""
        while True:
            try:
                # One item per repository at a time (push order), repositories side by side.
                await asyncio.gather(*(self.carry(i) for i in await self.journal.due(time.time())))
                self.wake.clear()
                due = await self.journal.next_due()
            except Exception:  # the journal's disk, say: try again in a moment
                _log.exception("replication round failed")
                due = time.time() + 1.0
            wait = 30.0 if due is None else max(0.0, due - time.time())
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self.wake.wait()

    async def carry(self, item: Item) -> None:
        try:
            outcome = await self._carry(item)
        except Refused as exc:
            await self._give_up(item, str(exc))
            return
        except Exception as exc:  # the origin down or busy, a token refused, a bad answer
            error = f"{type(exc).__name__}: {exc}"
            if item.attempts + 1 >= self.config.replication_attempts:
                await self._give_up(item, f"{item.attempts + 1} attempts, the last: {error}")
                return
            delay = min(self.config.replication_retry_max_seconds, 0.5 * 2**item.attempts)
            delay *= random.uniform(0.5, 1.5)  # noqa: S311 - jitter
            await self.journal.retry(item.seq, time.time() + delay, error)
            self.metrics.failures.labels("retry").inc()
            return
        await self.journal.finish(item.seq, "replicated" if outcome.kept else "conflict")
        await self._settled(item, outcome.kept)
        if not outcome.kept:
            self.metrics.conflicts.inc()  # counted once the edge follows the origin's tag
        self.metrics.bytes.inc(outcome.uploaded)
        self.metrics.lag.observe(time.time() - item.at)

    async def _give_up(self, item: Item, why: str) -> None:
        """The origin will not take this push: it ends here (the next pushes go on); the
        edge's tag follows the origin's again and the push's blobs may be evicted."""
        await self.journal.finish(item.seq, "failed", why)
        await self._settled(item, kept=False)
        self.metrics.failures.labels("refused").inc()
        _log.warning(
            "push not replicated",
            repository=item.repository,
            digest=item.digest,
            subject=item.subject,
            why=why,
        )

    async def _settled(self, item: Item, kept: bool) -> None:
        for digest in await self.journal.release(item.repository, item.blobs):
            self.store.unpin(Digest.parse(digest))
        self.manifests.replicated(f"{ORIGIN}:{item.repository}", item.tag, kept)

    async def _carry(self, item: Item) -> Outcome:
        auth = f"Bearer {await self._token(item.subject, item.repository)}"
        sizes = await asyncio.gather(  # the blobs of one manifest travel side by side
            *(self._blob(item.repository, d, item.subject, auth) for d in item.blobs)
        )
        uploaded = sum(sizes)
        # One write per push, as the user made it: by tag (which stores the manifest too)
        # when the tag may move, else by digest.
        state = "none" if item.tag is None else await self._tag_state(item, auth)
        if state == "there":  # a replay: the origin has it all
            return Outcome(True, uploaded)
        reference = item.tag if state == "move" and item.tag is not None else item.digest
        path = f"/v2/{item.repository}/manifests/{reference}"
        if state == "move" or await self._status("HEAD", path, auth) != 200:
            await self._put_manifest(path, item.body, item.media_type, auth)
            self.metrics.replicated.labels("tag" if state == "move" else "manifest").inc()
        return Outcome(state != "conflict", uploaded)

    async def _tag_state(self, item: Item, auth: str) -> str:
        """The origin's tag: "there" (the pushed digest already), "move" (it may be set to
        it), or "conflict" (it moved since the push: it stays)."""
        async with self.origin.request(
            "HEAD", f"/v2/{item.repository}/manifests/{item.tag}", auth
        ) as r:
            status, current = r.status, r.headers.get("Docker-Content-Digest")
        if status not in (200, 404):
            raise _failure(status, "HEAD of the tag")
        now = current if status == 200 else ""
        if now == item.digest:
            return "there"
        if item.base is None or now == item.base:
            return "move"
        _log.warning(
            "replication conflict: the origin's tag moved since the push; it stays",
            repository=item.repository,
            tag=item.tag,
            pushed=item.digest,
            origin=now or None,
            expected=item.base or None,
        )
        return "conflict"

    async def _put_manifest(self, path: str, body: bytes, media_type: str, auth: str) -> None:
        async with self.origin.request(
            "PUT", path, auth, {"Content-Type": media_type}, data=body
        ) as r:
            if r.status != 201:
                raise _failure(r.status, f"PUT {path}: {(await r.text())[:300]}")

    async def _blob(self, name: str, digest: str, subject: str, auth: str) -> int:
        """Make sure the origin holds ``digest`` in ``name``; the bytes sent for it. A small
        blob is simply sent (the origin takes it again at no harm): asking first would cost
        as much as sending it."""
        local = self.store.size(Digest.parse(digest))
        if (local is None or local >= ASK_FIRST) and await self._status(
            "HEAD", f"/v2/{name}/blobs/{digest}", auth
        ) == 200:
            return 0
        for source in await self.journal.carried_to(digest):
            if source == name:
                continue
            # A mount needs pull on the source too: the pusher's, asked for both.
            both = f"Bearer {await self._token(subject, name, source)}"
            if await self._mount(name, digest, source, both):
                self.metrics.replicated.labels("mount").inc()
                return 0
        size = self.store.size(Digest.parse(digest))
        if size is None:
            raise Retry(f"blob {digest} is neither at this edge nor at the origin")
        with self.store.reading(Digest.parse(digest)) as path:
            async with self.origin.request(
                "POST",
                f"/v2/{name}/blobs/uploads/?digest={digest}",
                auth,
                {"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                data=_file_chunks(path),
            ) as r:
                if r.status != 201:
                    raise _failure(r.status, f"upload of {digest}: {(await r.text())[:300]}")
        self.metrics.replicated.labels("blob").inc()
        return size

    async def _mount(self, name: str, digest: str, source: str, auth: str) -> bool:
        path = f"/v2/{name}/blobs/uploads/?mount={digest}&from={source}"
        async with self.origin.request("POST", path, auth) as r:
            if r.status == 201:
                return True
            location = r.headers.get("Location") if r.status == 202 else None
        if location:  # a session opened instead: not needed
            with contextlib.suppress(Unreachable):
                async with self.origin.request("DELETE", location, auth):
                    pass
        return False

    async def _status(self, method: str, path: str, auth: str) -> int:
        async with self.origin.request(method, path, auth) as r:
            return r.status

    async def _token(self, subject: str, name: str, source: str = "") -> str:
        """A token for ``subject`` on ``name`` (pull, push) and ``source`` (pull, to mount
        from), asked as the replicator."""
        key = (subject, name, source)
        found = self._tokens.get(key)
        if found is not None and found.fresh:
            return found.value
        scopes = [f"repository:{name}:pull,push"]
        if source:
            scopes.append(f"repository:{source}:pull")
        params = [
            ("service", self.config.auth_service),
            ("act_as", subject),
            *(("scope", scope) for scope in scopes),
        ]
        try:
            found = await ask_token(
                self.session,
                self.config.realm,
                params,
                self.config.replication_username,
                self.config.replication_password,
            )
        except TokenRefused as exc:
            raise Retry(f"the origin refused the replicator's token ({exc.status})") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unreachable(f"token endpoint: {type(exc).__name__}") from None
        if f"repository:{name}:pull,push" not in found.granted:
            raise Refused(f"{subject or 'anonymous'} may not push to {name} at the origin now")
        self._tokens[key] = found
        return found.value


def _failure(status: int, what: str) -> Exception:
    if status in (401, 404, 429) or status >= 500:
        return Retry(f"{what}: {status}")
    return Refused(f"{what}: {status}")


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:  # noqa: ASYNC230 (reads go to a thread below)
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk
