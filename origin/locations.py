"""The origin's storage locations: where blob bytes live, and which one is nearest.

Without ``[[origin.locations]]`` there is one, ``local``: the filesystem under ``data_dir``.
With several (say a bucket per region), each replica reads from the location nearest it (its
own region's first, then the others in the order configured) and writes pushes to the first
of those; the placement queue (:mod:`origin.placement`) copies every blob to the other
locations its namespace must live in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ocicore.cas import BlobStore, ContentStore
from ocicore.storage.driver import check_upload_id

if TYPE_CHECKING:
    from ocicore.storage.s3 import S3Config

MiB = 1 << 20


@dataclass(frozen=True)
class LocationConfig:
    """A ``[[origin.locations]]`` table."""

    name: str
    driver: str = "filesystem"  # "filesystem" or "s3"
    region: str = ""  # the replicas of this region read from here first
    path: str = ""  # filesystem: the directory (empty: <data_dir> for the first location)
    # s3: any S3-compatible service
    bucket: str = ""
    prefix: str = ""
    endpoint_url: str = ""  # empty: AWS
    s3_region: str = "us-east-1"
    access_key_id: str = ""  # empty: the default credential chain (environment, instance role)
    secret_access_key: str = field(default="", repr=False)
    part_bytes: int = 8 * MiB
    presign: bool = False  # blob GETs are redirected to pre-signed URLs (15 minutes)

    def __post_init__(self) -> None:
        check_upload_id(self.name)  # a plain word: it names metrics and rows
        if len(self.name) > 64:
            raise ValueError(f"location {self.name[:64]}...: a name has at most 64 characters")
        if self.driver not in ("filesystem", "s3"):
            raise ValueError(f"location {self.name}: driver must be filesystem or s3")
        if self.driver == "s3" and not self.bucket:
            raise ValueError(f"location {self.name}: an s3 location needs a bucket")

    def s3(self) -> S3Config:
        from ocicore.storage.s3 import S3Config  # noqa: PLC0415 - aiobotocore only when used

        return S3Config(
            bucket=self.bucket,
            prefix=self.prefix,
            endpoint_url=self.endpoint_url,
            region=self.s3_region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            part_bytes=self.part_bytes,
            presign=self.presign,
        )


DEFAULT = "local"


class Locations:
    """Named blob stores, nearest first."""

    def __init__(self, stores: dict[str, BlobStore], nearest: Sequence[str]) -> None:
        self.stores = stores
        self.nearest = tuple(nearest)
        self.primary = stores[self.nearest[0]]  # where pushes to this replica land

    @classmethod
    async def open(
        cls, configs: Sequence[LocationConfig], data_dir: Path, region: str
    ) -> Locations:
        if not configs:
            return cls({DEFAULT: ContentStore(data_dir)}, [DEFAULT])
        stores: dict[str, BlobStore] = {}
        try:
            for index, config in enumerate(configs):
                if config.name in stores:
                    raise ValueError(f"location {config.name} is configured twice")
                if config.driver == "s3":
                    from ocicore.storage.s3 import S3Driver  # noqa: PLC0415

                    stores[config.name] = BlobStore(await S3Driver.open(config.name, config.s3()))
                else:
                    path = Path(config.path) if config.path else None
                    if path is None and index > 0:
                        raise ValueError(f"location {config.name}: a filesystem path is needed")
                    stores[config.name] = ContentStore(path or data_dir, config.name)
        except BaseException:
            for store in stores.values():
                await store.driver.close()
            raise
        mine = [c.name for c in configs if c.region == region]
        return cls(stores, mine + [c.name for c in configs if c.region != region])

    def __iter__(self) -> Iterator[str]:
        return iter(self.nearest)

    def __len__(self) -> int:
        return len(self.stores)

    def pick(self, present: Sequence[str]) -> BlobStore | None:
        """The nearest of the locations in ``present``."""
        for name in self.nearest:
            if name in present:
                return self.stores[name]
        return None

    async def close(self) -> None:
        for store in self.stores.values():
            with contextlib.suppress(Exception):
                await store.driver.close()
