"""The origin's settings: defaults here, then a TOML file, then ``WHARF_ORIGIN_*``, then flags.

Every setting has one name used everywhere: ``data_dir`` is ``data_dir`` in the ``[origin]``
table of the config file, ``WHARF_ORIGIN_DATA_DIR`` in the environment and ``--data-dir`` on
the command line. Identity providers are tables of the file only, ``[origin.ldap]`` and
``[origin.oidc]`` (their fields are those of :class:`LdapConfig` and :class:`OidcConfig`);
keep a file holding their secrets readable by the service alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from gossip.node import NodeSettings, StaticPeer
from ocicore.settings import ServerSettings
from origin.auth.ldap import LdapConfig
from origin.auth.oidc import OidcConfig
from origin.locations import LocationConfig

MiB = 1 << 20


@dataclass(frozen=True)
class OriginConfig(NodeSettings, ServerSettings):
    listen: str = "127.0.0.1:5000"
    data_dir: Path = Path("./var/origin")
    database_url: str = ""  # empty: SQLite at <data_dir>/metadata.db
    log_level: str = "info"
    max_manifest_bytes: int = 4 * MiB
    max_blob_bytes: int = 64 * 1024 * MiB
    upload_ttl_seconds: float = 7 * 24 * 3600.0
    shutdown_timeout_seconds: float = 30.0
    cache_entries: int = 10_000
    cache_ttl_seconds: float = 2.0
    small_blob_cache_bytes: int = 64 * MiB
    auth_service: str = "wharf"  # the token audience, and `service` in auth challenges
    auth_issuer: str = "wharf-origin"
    auth_realm: str = ""  # the token endpoint clients are sent to; empty: this host's /auth/token
    token_ttl_seconds: float = 300.0
    # A web seed token (an edge fetching a blob's pieces from the origin over BitTorrent's
    # BEP 19) lives this long: enough for one large blob; past it the edge falls back to HTTP.
    seed_token_ttl_seconds: float = 900.0
    # Accounts (an edge's robot or user) that may get tokens acting for other accounts, to
    # carry pushes accepted at an edge to the origin as the user who pushed them.
    replicators: tuple[str, ...] = ()
    # If set, replicators that do not exist yet are created with this file's password.
    replicator_password_file: str = ""
    feed_max_wait_seconds: float = 20.0  # the longest an edge's event feed request is held
    # Pushed blobs this large get their torrent metainfo at once, so the first edges to pull
    # them do not wait for it (edges fetch blobs of 64 MiB and more over BitTorrent); 0: never.
    torrent_precompute_bytes: int = 64 * MiB
    signing_key_rotation_days: float = 90.0  # a new signing key this often (0: never)
    # Off: /v2/ answers without tokens, as an open registry would. For benchmarks and sealed
    # labs only, so it is refused unless the origin listens on a loopback address.
    auth_enabled: bool = True
    # argon2id cost of password hashes (RFC 9106's second recommendation by default).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    # Failed sign-ins allowed per account and per client address in a sliding window; past
    # them, even the right password is refused (429) until the window passes.
    login_failures_per_account: int = 10
    login_failures_per_address: int = 50
    login_failure_window_seconds: float = 300.0
    refresh_token_ttl_seconds: float = 30 * 24 * 3600.0
    # How long a tag's past states stay restorable (and out of garbage collection's reach),
    # unless its namespace sets its own (0 to 4 weeks).
    time_machine_days: float = 14.0
    # Garbage collection: deletes, on the leader, manifests and blobs nothing reaches (no tag,
    # no tag state inside the time machine's window, no referrer's subject) once the grace
    # period has passed since a push last touched them; a blob's bytes go a grace period
    # after collection found it unreachable. A pass starts this often (0: never, and the
    # API's "run now" still works).
    gc_interval_seconds: float = 300.0
    gc_grace_seconds: float = 86400.0  # a day: the longest a push may take, manifest last
    # Webhook deliveries may go to private, loopback and link-local addresses (off: only to
    # public ones, so a hook cannot reach inside the network).
    webhooks_private_networks: bool = False
    webhook_max_attempts: int = 8  # a failing delivery is retried with backoff this often
    webhook_retry_base_seconds: float = 30.0  # the first retry's delay, doubling after
    audit_retention_days: float = 400.0  # a year and a bit: long enough for yearly audits
    ldap: LdapConfig | None = None
    oidc: OidcConfig | None = None
    # Where blob bytes live ([[origin.locations]]); none: the filesystem under data_dir. The
    # replica reads from its region's locations first and writes pushes to the first of them.
    locations: tuple[LocationConfig, ...] = ()
    # The locations every blob must reach unless its namespace says otherwise (empty: all).
    default_locations: tuple[str, ...] = ()
    placement_copies: int = 4  # blobs the copier moves between locations at once
    # How often a replica tries to become the one running the singleton workers (and the
    # leader checks it still is): a dead leader is replaced within about this long.
    leader_poll_seconds: float = 1.0

    table: ClassVar[str] = "origin"
    tables: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {"ldap": LdapConfig, "oidc": OidcConfig, "peers": StaticPeer, "locations": LocationConfig}
    )

    def __post_init__(self) -> None:
        self.check(
            (
                "max_manifest_bytes",
                "max_blob_bytes",
                "upload_ttl_seconds",
                "cache_entries",
                "cache_ttl_seconds",
                "small_blob_cache_bytes",
                "token_ttl_seconds",
                "seed_token_ttl_seconds",
                "argon2_time_cost",
                "argon2_memory_kib",
                "refresh_token_ttl_seconds",
                "audit_retention_days",
                "login_failures_per_account",
                "login_failures_per_address",
                "login_failure_window_seconds",
                "placement_copies",
                "leader_poll_seconds",
                "gc_grace_seconds",
            )
        )
        names = [location.name for location in self.locations]
        unknown = set(self.default_locations) - set(names or ["local"])
        if unknown:
            raise ValueError(f"default_locations names no configured location: {sorted(unknown)}")
        if not 0 <= self.time_machine_days <= 28:
            raise ValueError("time_machine_days is 0 to 28 (four weeks)")
        if self.gc_interval_seconds < 0:
            raise ValueError("gc_interval_seconds is 0 (never) or more")
        if not self.auth_enabled and self.host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("auth_enabled = false is only allowed on a loopback address")

    @property
    def location_names(self) -> tuple[str, ...]:
        return tuple(location.name for location in self.locations) or ("local",)

    @property
    def placement_defaults(self) -> tuple[str, ...]:
        return self.default_locations or self.location_names

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'metadata.db'}"
