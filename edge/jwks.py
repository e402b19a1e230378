"""The origin's token signing keys, as the edge knows them: fetched at start and every
``jwks_refresh_seconds``, kept on disk so that a restart while the origin is down still
verifies tokens. The origin publishes a new key five minutes before it signs with it, so a
refresh every five minutes never meets a token signed by a key it does not know yet."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from ocicore.auth.tokens import TokenVerifier, public_keys

_log = structlog.get_logger("wharf.edge.jwks")
MAX_JWKS_BYTES = 1 << 20


class OriginKeys:
    def __init__(self, url: str, file: Path, issuer: str, audience: str) -> None:
        self.url = url
        self.file = file
        self.verifier = TokenVerifier({}, issuer, audience)
        self.loaded = False

    def load_saved(self) -> None:
        try:
            document = json.loads(self.file.read_text())
        except (FileNotFoundError, ValueError):
            return
        self._use(document)

    def _use(self, document: dict[str, Any]) -> None:
        self.verifier.set_keys(public_keys(document))
        self.loaded = True

    async def refresh(self, session: aiohttp.ClientSession) -> None:
        async with session.get(self.url) as r:
            if r.status != 200:
                raise RuntimeError(f"{self.url} answered {r.status}")
            raw = await r.content.read(MAX_JWKS_BYTES + 1)
        if len(raw) > MAX_JWKS_BYTES:
            raise RuntimeError("the key set is too large")
        document = json.loads(raw)
        if not isinstance(document, dict):
            raise TypeError("the key set is not a JSON object")
        fresh = public_keys(document)
        if not self.loaded or set(fresh) != self.verifier.key_ids:
            self._use(document)
            await asyncio.to_thread(self._save, raw)
            _log.info("origin keys updated", kids=sorted(fresh))

    def _save(self, raw: bytes) -> None:
        temp = self.file.with_suffix(".tmp")
        temp.write_bytes(raw)
        os.replace(temp, self.file)
