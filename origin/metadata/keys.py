"""Token signing keys in the metadata database, where every origin replica finds them."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from origin.auth.signing import FolderVault, SigningKey, from_pem, to_pem
from origin.metadata.db import upsert
from origin.metadata.models import signing_keys


class TableVault:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def load(self) -> list[SigningKey]:
        query = select(signing_keys.c.kid, signing_keys.c.pem, signing_keys.c.created)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [from_pem(pem, created, f"signing key {kid}") for kid, pem, created in rows]

    async def save(self, key: SigningKey) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                upsert(conn, signing_keys)
                .values(kid=key.kid, pem=to_pem(key), created=key.created)
                .on_conflict_do_nothing()
            )

    async def delete(self, kid: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(signing_keys).where(signing_keys.c.kid == kid))

    async def adopt(self, folder: FolderVault) -> int:
        """Import the keys a single origin kept in a folder, when the table has none (so the
        tokens they signed stay valid); how many were imported."""
        if await self.load():
            return 0
        found = await folder.load()
        for key in found:
            await self.save(key)
        return len(found)
