"""Manifests: validated, checked against what the repository holds, stored with their tags."""

from __future__ import annotations

from ocicore.digest import Digest
from ocicore.errors import ErrorCode, OCIError
from ocicore.manifest import Descriptor, Manifest, parse_pushed
from origin.metadata.store import MetadataStore, MissingReferences, StoredManifest, TagImmutable
from origin.registry.blobs import BlobService
from origin.registry.cache import ReadCache


def immutable(error: TagImmutable) -> OCIError:
    return OCIError(
        ErrorCode.DENIED,
        {"tag": error.tag, "rule": error.pattern},
        message=f"tag {error.tag} is immutable (rule {error.pattern}): push another tag",
    )


class ManifestService:
    def __init__(
        self, meta: MetadataStore, blobs: BlobService, cache: ReadCache[StoredManifest]
    ) -> None:
        self.meta = meta
        self.blobs = blobs
        self.cache = cache

    async def get(self, name: str, reference: Digest | str) -> StoredManifest:
        by_digest = isinstance(reference, Digest)
        found = await self.cache.get(
            (name, str(reference)), lambda: self.meta.resolve(name, str(reference), by_digest)
        )
        if found is None:
            raise await self.blobs.unknown(name, ErrorCode.MANIFEST_UNKNOWN, str(reference))
        return found

    async def put(
        self, name: str, reference: Digest | str, payload: bytes, content_type: str | None
    ) -> Manifest:
        manifest, tag = parse_pushed(reference, payload, content_type)
        try:
            await self.meta.put_manifest(name, manifest, tag)
            if tag is not None:
                self.cache.drop((name, tag))
        except TagImmutable as error:
            raise immutable(error) from None
        except MissingReferences as missing:
            if missing.blobs:
                raise OCIError(
                    ErrorCode.MANIFEST_BLOB_UNKNOWN, {"blobs": list(missing.blobs)}
                ) from None
            raise OCIError(
                ErrorCode.MANIFEST_UNKNOWN, {"manifests": list(missing.manifests)}, status=400
            ) from None
        return manifest

    async def delete(self, name: str, reference: Digest | str) -> None:
        try:
            deleted = await self._delete(name, reference)
        except TagImmutable as error:
            raise immutable(error) from None
        if not deleted:
            raise await self.blobs.unknown(name, ErrorCode.MANIFEST_UNKNOWN, str(reference))

    async def _delete(self, name: str, reference: Digest | str) -> bool:
        if isinstance(reference, Digest):
            deleted = await self.meta.delete_manifest(name, str(reference))
            digest = str(reference)
            self.cache.invalidate(lambda key, value: key[0] == name and value.digest == digest)
        else:
            deleted = await self.meta.delete_tag(name, reference)
            self.cache.drop((name, reference))
        return deleted

    async def referrers(
        self, name: str, subject: Digest, artifact_type: str | None
    ) -> list[Descriptor]:
        if not await self.meta.repository_exists(name):
            raise OCIError(ErrorCode.NAME_UNKNOWN, name)
        return await self.meta.referrers(name, str(subject), artifact_type)
