"""Tables of the origin's metadata, kept portable between SQLite and PostgreSQL.

Blob bytes live in the content store; these tables say which repository may see which blob,
which manifests each repository holds, where tags point and which uploads are open.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    false,
    func,
)

DIGEST = String(160)  # "sha512:" + 128 hex characters, with room to spare
NAME = String(255)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _created() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", NAME, nullable=False, unique=True),
    _created(),
    # New repositories are private: reading one takes a permission.
    Column("public", Boolean, nullable=False, server_default=false()),
)

# Users, organizations and robots share one table (and one namespace of names), as in Quay:
# a repository's first path component names the account that owns it.
accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", NAME, nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # "user" | "organization" | "robot"
    Column("provider", String(16), nullable=True),  # users: "local" | "ldap" | "oidc"
    Column("password_hash", String(255), nullable=True),  # argon2; robots: their secret's
    Column("is_admin", Boolean, nullable=False, server_default=false()),
    Column("owner_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
    _created(),
    Column("email", String(255), nullable=True),  # from LDAP or OIDC
)

teams = Table(
    "teams",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "organization_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
    ),
    Column("name", String(255), nullable=False),
    Column("role", String(16), nullable=False),  # "member" | "creator" | "admin"
    # Team sync: members are the users whose LDAP or OIDC groups include this group.
    Column("external_group", String(255), nullable=True),
    UniqueConstraint("organization_id", "name", name="uq_teams_organization_name"),
)

team_members = Table(
    "team_members",
    metadata,
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
)

# A role on one repository, held by an account (user or robot) or by a team.
repository_permissions = Table(
    "repository_permissions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False
    ),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=True),
    Column("role", String(16), nullable=False),  # "read" | "write" | "admin"
    UniqueConstraint("repository_id", "account_id", "team_id", name="uq_permissions_subject"),
    CheckConstraint("(account_id IS NULL) != (team_id IS NULL)", name="ck_permissions_one_subject"),
)

blobs = Table(
    "blobs",
    metadata,
    Column("digest", DIGEST, primary_key=True),
    Column("size", BigInteger, nullable=False),
    _created(),
    # Garbage collection (origin.gc): when an upload or a link last made the blob reachable,
    # and when collection found it unreachable (its bytes go a grace period later).
    Column("touched_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("tombstoned_at", DateTime(timezone=True), nullable=True),
    Index("ix_blobs_tombstoned_at", "tombstoned_at"),
)

repository_blobs = Table(
    "repository_blobs",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("digest", DIGEST, ForeignKey("blobs.digest"), primary_key=True),
    _created(),
    # When a push last linked or asked for it: a link no manifest uses lives a grace
    # period from here (the manifest that will use it may be on its way).
    Column("touched_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_repository_blobs_digest", "digest"),
)

manifests = Table(
    "manifests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False
    ),
    Column("digest", DIGEST, nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("artifact_type", String(255), nullable=True),
    Column("subject_digest", DIGEST, nullable=True),
    Column("annotations", JSON, nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    _created(),
    UniqueConstraint("repository_id", "digest", name="uq_manifests_repository_digest"),
    Index("ix_manifests_subject", "repository_id", "subject_digest"),
)

# What each manifest points at: blobs (config, layers) and child manifests (of an index).
manifest_references = Table(
    "manifest_references",
    metadata,
    Column(
        "manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("digest", DIGEST, primary_key=True),
    Column("kind", String(16), primary_key=True),  # "blob" | "manifest"
    Index("ix_manifest_references_digest", "digest"),
)

tags = Table(
    "tags",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("name", String(128), primary_key=True),
    Column("manifest_digest", DIGEST, nullable=False),
    Column(
        "updated_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.now(),
    ),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("repository", NAME, nullable=False),
    Column("offset", BigInteger, nullable=False, default=0),
    _created(),
)

# App-specific passwords: what `podman login` stores instead of the user's real password.
app_tokens = Table(
    "app_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    # "app": an app-specific password; "refresh": a refresh token from the token endpoint.
    Column("kind", String(16), nullable=False, server_default="app"),
    Column("secret_hash", String(64), nullable=False),  # sha256 hex: the secret is 256 random bits
    _created(),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# Who did what, to which repository, from where, and how it ended.
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", NAME, nullable=True),  # None: anonymous
    Column("action", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),  # "ok" | "denied" | "failed"
    Column("repository", NAME, nullable=True),
    Column("reference", String(160), nullable=True),
    Column("client", String(64), nullable=True),
    Column("detail", JSON, nullable=True),
    Index("ix_audit_events_at", "at"),
    Index("ix_audit_events_actor", "actor", "at"),
    Index("ix_audit_events_repository", "repository", "at"),
)

# What happened to manifests and tags, in order: the feed edges of other regions follow
# (``seq`` is their cursor). Written in the same transaction as the change itself.
events = Table(
    "events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("repository", NAME, nullable=False),
    Column("kind", String(16), nullable=False),  # "push" | "untag" | "delete"
    Column("digest", DIGEST, nullable=False),
    Column("tag", String(128), nullable=True),
)

# Which repositories (and tags) the edges of which regions hold before anyone there asks.
replication_rules = Table(
    "replication_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repositories", String(255), nullable=False),  # a glob: "team-a/*", "*"
    Column("tags", String(128), nullable=False, server_default="*"),  # a glob over tags
    Column("regions", JSON, nullable=False),  # ["eu", ...]
    Column("created_by", NAME, nullable=False),
    _created(),
)

# Which storage locations hold each blob's bytes (geo-replication, issue 8).
blob_placements = Table(
    "blob_placements",
    metadata,
    Column("digest", DIGEST, ForeignKey("blobs.digest", ondelete="CASCADE"), primary_key=True),
    Column("location", String(64), primary_key=True),
    _created(),
)

# Copies still to make: a blob to a location its namespaces must live in. Durable: a copier
# that dies leaves the row, and the next one copies again (copies are verified, idempotent).
placement_queue = Table(
    "placement_queue",
    metadata,
    Column("digest", DIGEST, ForeignKey("blobs.digest", ondelete="CASCADE"), primary_key=True),
    Column("location", String(64), primary_key=True),
    _created(),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("due_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("error", String(255), nullable=True),
    Index("ix_placement_queue_due", "due_at"),
)

# The locations a namespace (the first component of its repositories' names) must live in;
# a namespace with no rows lives in the configured default locations.
namespace_locations = Table(
    "namespace_locations",
    metadata,
    Column("namespace", NAME, primary_key=True),
    Column("location", String(64), primary_key=True),
)

# The token signing keys, shared by every origin replica (PEM, PKCS#8).
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("pem", LargeBinary, nullable=False),
    Column("created", Float, nullable=False),  # unix time: when it was made
)

# Failed sign-ins, by account ("a:<name>") and by client address ("ip:<addr>"), counted in a
# sliding window by every replica.
login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject", String(300), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_login_failures_subject", "subject", "at"),
)

# The time machine: every tag's states with their lifetimes. A row is open (``ended_at`` NULL)
# while the tag points at its manifest; a move or a deletion ends it and (a move) opens the
# next. Ended rows inside their namespace's window can be restored.
tag_history = Table(
    "tag_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False
    ),
    Column("tag", String(128), nullable=False),
    Column("manifest_digest", DIGEST, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Index("ix_tag_history_tag", "repository_id", "tag", "started_at"),
)

# Settings of a namespace (the first component of its repositories' names).
namespace_settings = Table(
    "namespace_settings",
    metadata,
    Column("namespace", NAME, primary_key=True),
    Column("time_machine_seconds", Integer, nullable=True),  # None: the origin's default
    Column("quota_bytes", BigInteger, nullable=True),  # None: no quota
)

# Tags that may be created but never moved or deleted: a glob over tag names, for one
# repository of a namespace or (repository NULL) all of them.
immutable_tags = Table(
    "immutable_tags",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("namespace", NAME, nullable=False),
    Column("repository", NAME, nullable=True),
    Column("pattern", String(128), nullable=False),
    Column("created_by", NAME, nullable=False),
    _created(),
    Index("ix_immutable_tags_namespace", "namespace"),
)

# Webhooks: a namespace's subscribers, and every delivery made to them (the delivery log).
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("namespace", NAME, nullable=False),
    Column("url", String(2048), nullable=False),
    Column("events", JSON, nullable=False),  # ["push", "tag_delete", ...]
    Column("secret", String(128), nullable=False),  # the HMAC key: shown once, kept to sign
    Column("created_by", NAME, nullable=False),
    _created(),
    Index("ix_webhooks_namespace", "namespace"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hook_id", Integer, ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("state", String(16), nullable=False),  # "pending" | "delivered" | "failed"
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("last_status", Integer, nullable=True),
    Column("last_error", String(255), nullable=True),
    _created(),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index("ix_webhook_deliveries_due", "state", "due_at"),
    Index("ix_webhook_deliveries_hook", "hook_id", "id"),
)

# Where the webhook dispatcher is in the event feed (one row).
webhook_cursor = Table(
    "webhook_cursor",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", Integer, nullable=False),
)
