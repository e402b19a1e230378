"""OCI value types: digests, names and manifests are checked before anything is stored."""

from __future__ import annotations

import json

import pytest

from ocicore.digest import Digest
from ocicore.errors import ErrorCode, OCIError
from ocicore.manifest import OCI_INDEX, OCI_MANIFEST, parse_manifest
from ocicore.names import is_tag, validate_name


@pytest.mark.parametrize(
    "text",
    [
        "sha256:" + "a" * 64,
        "sha512:" + "0" * 128,
    ],
)
def test_supported_digests_parse(text: str) -> None:
    assert str(Digest.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256",
        "sha256:",
        "sha256:" + "A" * 64,
        "md5:" + "a" * 32,
        "sha256:" + "a" * 65,
        "x" * 300,
    ],
)
def test_other_digests_are_invalid(text: str) -> None:
    with pytest.raises(OCIError) as info:
        Digest.parse(text)
    assert info.value.code is ErrorCode.DIGEST_INVALID


@pytest.mark.parametrize("name", ["a", "library/ubuntu", "a.b/c_d/e__f/g-h", "a--b"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "a/../b", "a//b", "/a", "a/", "-a", "a_", "a" * 256])
def test_invalid_names(name: str) -> None:
    with pytest.raises(OCIError) as info:
        validate_name(name)
    assert info.value.code is ErrorCode.NAME_INVALID


def test_tags() -> None:
    assert is_tag("v1.2.3_rc-1")
    assert is_tag("a" * 128)
    assert not is_tag("a" * 129)
    assert not is_tag(".hidden")
    assert not is_tag("sha256:abc")


def test_manifest_without_media_type_is_inferred_from_its_shape() -> None:
    index = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert parse_manifest(index, None).media_type == OCI_INDEX
    image = json.dumps(
        {
            "schemaVersion": 2,
            "config": {"mediaType": "application/x", "digest": str(Digest.of(b"{}")), "size": 2},
            "layers": [],
        }
    ).encode()
    parsed = parse_manifest(image, "application/octet-stream")
    assert parsed.media_type == OCI_MANIFEST
    assert parsed.artifact_type == "application/x"  # the config's type stands in for it
