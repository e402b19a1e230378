"""Manifest media types and parsing: what a manifest references, checked before it is stored."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ocicore.digest import Digest
from ocicore.errors import ErrorCode, OCIError
from ocicore.names import is_tag

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = IMAGE_TYPES | INDEX_TYPES
_NON_DISTRIBUTABLE = (
    "application/vnd.oci.image.layer.nondistributable.",
    "application/vnd.docker.image.rootfs.foreign.",
)


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None

    @property
    def distributable(self) -> bool:
        return not self.media_type.startswith(_NON_DISTRIBUTABLE)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass(frozen=True, slots=True)
class Manifest:
    """A validated manifest and the content it points at."""

    media_type: str
    digest: Digest
    payload: bytes
    blobs: tuple[Descriptor, ...]
    children: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: dict[str, str] | None

    def descriptor(self) -> Descriptor:
        return Descriptor(
            self.media_type, self.digest, len(self.payload), self.artifact_type, self.annotations
        )


def _invalid(detail: str) -> OCIError:
    return OCIError(ErrorCode.MANIFEST_INVALID, detail)


def _string(obj: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _invalid(f"{key} must be a non-empty string")
    return value


def _annotations(obj: dict[str, Any]) -> dict[str, str] | None:
    value = obj.get("annotations")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _invalid("annotations must map strings to strings")
    return value


def parse_descriptor(obj: Any) -> Descriptor:
    if not isinstance(obj, dict):
        raise _invalid("descriptor must be an object")
    media_type = _string(obj, "mediaType", required=True)
    digest_text = _string(obj, "digest", required=True)
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid("descriptor size must be a non-negative integer")
    assert media_type is not None
    assert digest_text is not None
    try:
        digest = Digest.parse(digest_text)
    except OCIError as exc:
        raise _invalid(f"descriptor digest: {exc.detail}") from None
    return Descriptor(
        media_type, digest, size, _string(obj, "artifactType", required=False), _annotations(obj)
    )


def _descriptors(doc: dict[str, Any], key: str, *, required: bool) -> tuple[Descriptor, ...]:
    items = doc.get(key)
    if items is None and not required:
        return ()
    if not isinstance(items, list):
        raise _invalid(f"{key} must be a list")
    return tuple(parse_descriptor(item) for item in items)


def _media_type(doc: dict[str, Any], content_type: str | None) -> str:
    declared = _string(doc, "mediaType", required=False)
    header = (content_type or "").split(";", 1)[0].strip().lower() or None
    if declared is not None:
        if declared not in MANIFEST_TYPES:
            raise _invalid(f"unsupported manifest media type {declared[:100]!r}")
        if header in MANIFEST_TYPES and header != declared:
            raise _invalid("Content-Type does not match the manifest's mediaType")
        return declared
    if header in MANIFEST_TYPES:
        return header
    # OCI manifests may omit mediaType; infer it from their shape.
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST


def parse_manifest(payload: bytes, content_type: str | None, algorithm: str = "sha256") -> Manifest:
    """Validate ``payload`` as a manifest; raises ``MANIFEST_INVALID`` with a reason."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")
    media_type = _media_type(doc, content_type)
    subject = parse_descriptor(doc["subject"]) if doc.get("subject") is not None else None
    artifact_type = _string(doc, "artifactType", required=False)
    if media_type in IMAGE_TYPES:
        config = parse_descriptor(doc.get("config"))
        blobs = (config, *_descriptors(doc, "layers", required=True))
        children: tuple[Descriptor, ...] = ()
        artifact_type = artifact_type or config.media_type
    else:
        blobs = ()
        children = _descriptors(doc, "manifests", required=True)
    return Manifest(
        media_type=media_type,
        digest=Digest.of(payload, algorithm),
        payload=payload,
        blobs=blobs,
        children=children,
        subject=subject,
        artifact_type=artifact_type,
        annotations=_annotations(doc),
    )


def parse_reference(reference: str) -> Digest | str:
    """A manifest reference is a digest or a tag; anything else is refused."""
    if Digest.is_digest(reference):
        return Digest.parse(reference)
    if not is_tag(reference):
        raise OCIError(ErrorCode.MANIFEST_INVALID, f"invalid tag {reference[:140]!r}")
    return reference


def parse_pushed(
    reference: Digest | str, payload: bytes, content_type: str | None
) -> tuple[Manifest, str | None]:
    """A manifest pushed to ``reference``, validated (and its digest checked against a digest
    reference), and the tag it was pushed to, if any."""
    algorithm = reference.algorithm if isinstance(reference, Digest) else "sha256"
    manifest = parse_manifest(payload, content_type, algorithm)
    if isinstance(reference, Digest) and manifest.digest != reference:
        raise OCIError(
            ErrorCode.DIGEST_INVALID,
            f"manifest digest is {manifest.digest}, pushed as {reference}",
        )
    return manifest, reference if isinstance(reference, str) else None
