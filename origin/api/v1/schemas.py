"""Bodies of the admin API: what it accepts (checked, unknown fields refused) and returns.

The same models produce the OpenAPI description, so the documentation cannot drift from
what the handlers enforce.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _utc(moment: datetime) -> datetime:
    """SQLite hands back times without their zone; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


Time = Annotated[datetime, AfterValidator(_utc)]

AccountName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$",
        description="One component of a repository name: the namespace the account owns.",
    ),
]
Password = Annotated[str, Field(min_length=1, max_length=1024)]
Label = Annotated[str, Field(min_length=1, max_length=255)]
GroupName = Annotated[str, Field(min_length=1, max_length=255)]
TeamRole = Literal["member", "creator", "admin"]
RepositoryRole = Literal["read", "write", "admin"]


class Request(BaseModel):
    # Strict: `"public": "yes"` is an error, not a guess.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Response(BaseModel):
    model_config = ConfigDict(frozen=True)


# Requests


class UserCreate(Request):
    name: AccountName
    password: Password
    admin: bool = False


class UserUpdate(Request):
    admin: bool | None = None
    disabled: bool | None = None
    password: Password | None = None
    current_password: Password | None = Field(
        None, description="Needed to change one's own password: a stolen token cannot."
    )


class OrganizationCreate(Request):
    name: AccountName


class TeamCreate(Request):
    name: AccountName
    role: TeamRole = "member"
    external_group: GroupName | None = Field(
        None, description="LDAP or OIDC group whose members make up the team (team sync)."
    )


class TeamUpdate(Request):
    role: TeamRole | None = None
    external_group: GroupName | None = None


class RobotCreate(Request):
    name: AccountName
    expires_at: datetime | None = Field(None, description="Must be in the future.")


class AppTokenCreate(Request):
    label: Label
    expires_at: datetime | None = Field(None, description="Must be in the future.")


class PermissionSet(Request):
    role: RepositoryRole


class VisibilitySet(Request):
    public: bool


# Responses


class Account(Response):
    name: str
    kind: Literal["user", "organization", "robot"]
    admin: bool
    provider: str | None
    email: str | None
    disabled: bool
    expires_at: Time | None
    created_at: Time


class Team(Response):
    name: str
    role: TeamRole
    external_group: str | None
    members: list[str]


class Organization(Response):
    name: str
    teams: list[Team]


class Robot(Response):
    name: str
    expires_at: Time | None
    created_at: Time


class RobotSecret(Response):
    name: str
    secret: str = Field(description="Shown once: Wharf keeps only its hash.")
    expires_at: Time | None


class AppToken(Response):
    id: int
    kind: Literal["app", "refresh"] = Field(
        description="app: minted by the user; refresh: handed to a client at sign-in."
    )
    label: str = Field(description="The user's label, or a refresh token's client id.")
    created_at: Time
    last_used_at: Time | None
    expires_at: Time | None
    revoked: bool


class AppTokenSecret(Response):
    id: int
    label: str
    token: str = Field(description="Shown once: use it as the password of `podman login`.")


class Permission(Response):
    kind: Literal["account", "team"]
    subject: str
    role: RepositoryRole


class RepositoryAccess(Response):
    name: str
    public: bool
    permissions: list[Permission]


class AuditEvent(Response):
    id: int
    at: Time
    actor: str | None
    action: str
    outcome: str
    repository: str | None
    reference: str | None
    client: str | None
    detail: dict[str, object] | None


class AuditPage(Response):
    events: list[AuditEvent]
    next_after: int | None = Field(description="Pass as `after` for the next page; null: none.")


class SignedIn(Response):
    token: str = Field(description="A bearer token for this API (scope api:v1:*).")
    expires_in: int
    refresh_token: str = Field(description="Trade at POST /auth/token for fresh tokens.")


class ErrorEntry(Response):
    code: str
    message: str
    detail: object | None = None


class Errors(Response):
    errors: list[ErrorEntry]


class KeyRotate(Request):
    immediately: bool = Field(
        False,
        description="Sign with the new key at once and delete the others, refusing every "
        "outstanding token: for a key that leaked. Otherwise the new key is published first "
        "and signs once verifiers' caches know it.",
    )


class SigningKey(Response):
    kid: str
    created_at: Time
    state: Literal["next", "signing", "retiring"]


# Replication

Glob = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        pattern=r"^[a-z0-9._/*?\[\]-]+$",
        description="A glob over repository names, as fnmatch: `team-a/*`, `*`.",
    ),
]
TagGlob = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._*?\[\]-]+$"),
]
Region = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]


class RuleCreate(Request):
    repositories: Glob
    tags: TagGlob = "*"
    regions: list[Region] = Field(min_length=1, max_length=64)


class Rule(Response):
    id: int
    repositories: str
    tags: str
    regions: list[str]
    created_by: str
    created_at: Time


class FeedEvent(Response):
    seq: int
    at: Time
    repository: str = Field(description='Empty for "blob_delete": the blob is gone from all.')
    kind: Literal["push", "untag", "delete", "blob_delete"] = Field(
        description='"delete": a manifest deleted (by a client, or garbage collection); '
        '"blob_delete": garbage collection deleted a blob\'s bytes'
    )
    digest: str
    tag: str | None


class FeedPage(Response):
    events: list[FeedEvent]
    cursor: int = Field(description="Pass as `after` for what comes next.")


LocationName = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
]


class Location(Response):
    name: str
    driver: str
    region: str
    pending: int = Field(description="Blob copies queued for this location")
    nearest: int = Field(description="0 for the location this replica reads from first")


class BlobPlacement(Response):
    digest: str
    size: int
    locations: list[str] = Field(description="Where the blob's bytes are")
    pending: list[str] = Field(description="Where copies are queued")


class NamespacePlacement(Response):
    namespace: str
    locations: list[str]
    chosen: bool = Field(description="False: the configured default locations apply")


class NamespacePlacementSet(Request):
    locations: list[LocationName] = Field(
        max_length=64, description="Where the namespace's blobs must live; empty: the defaults"
    )


class Backfill(Response):
    recorded: int = Field(description="Blobs found in locations that had no placement recorded")
    queued: int = Field(description="Copies queued")


class TagState(Response):
    digest: str
    started_at: Time
    ended_at: Time | None = Field(description="None: the tag points here now")
    restorable: bool = Field(description="Inside the window, and the manifest is still held")


class TagHistory(Response):
    repository: str
    tag: str
    window_start: Time = Field(description="States that ended before this are out of reach")
    states: list[TagState] = Field(description="Newest first")


class TagRestore(Request):
    digest: Annotated[str, Field(pattern=r"^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$")]


class TagRestored(Response):
    repository: str
    tag: str
    digest: str
    previous: str | None = Field(description="What the tag pointed at before (None: nothing)")


class HistoryExpired(Response):
    forgotten: int = Field(description="Ended states forgotten")


class TimeMachineWindow(Response):
    namespace: str
    seconds: int = Field(description="How long a tag's ended states stay restorable")


def _whole(number: float) -> float:
    if number != int(number):
        raise ValueError("a whole number is needed")
    return number


def whole(at_most: int) -> Any:
    """A whole number from 0 to ``at_most``: JSON has numbers, not integers, and 3600.0 is a
    whole number too (read it with int())."""
    exact = Annotated[int, Field(ge=0, le=at_most)]  # a JSON integer, however large, exactly
    # A float (3600.0) only where floats are exact: past 2**53 they round, bounds included.
    spelled = Annotated[
        float, Field(multiple_of=1, ge=0, le=min(at_most, 2**53)), AfterValidator(_whole)
    ]
    return exact | spelled


class TimeMachineSet(Request):
    seconds: whole(28 * 86400) | None = Field(  # type: ignore[valid-type]
        description="0 to 4 weeks; null: the origin's default"
    )


class ImmutableRuleCreate(Request):
    pattern: TagGlob
    repository: Annotated[
        str | None,
        Field(
            default=None,
            max_length=255,
            pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$",
            description="One repository of the namespace; absent: all of them",
        ),
    ]


class ImmutableRule(Response):
    id: int
    namespace: str
    repository: str | None
    pattern: str
    created_by: str
    created_at: Time


WebhookEvent = Literal["push", "tag_delete", "manifest_delete", "replication_failure"]


_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"


class WebhookCreate(Request):
    url: Annotated[
        str,
        Field(
            max_length=2048,
            pattern=rf"^https?://[A-Za-z0-9.-]+(:{_PORT})?(/[!-~]*)?$",
            description="http(s), a host name or IPv4 address, no credentials",
        ),
    ]
    events: list[WebhookEvent] = Field(min_length=1, max_length=8)


class Webhook(Response):
    id: int
    namespace: str
    url: str
    events: list[str]
    created_by: str
    created_at: Time


class WebhookCreated(Webhook):
    secret: str = Field(description="The HMAC-SHA256 key of X-Wharf-Signature-256; shown once")


class WebhookDelivery(Response):
    id: int
    event: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: Time
    finished_at: Time | None
    payload: dict[str, Any]


class Quota(Response):
    namespace: str
    quota_bytes: int | None = Field(description="None: no quota")
    used_bytes: int = Field(description="The distinct blobs its repositories hold")


class QuotaSet(Request):
    quota_bytes: whole(2**62) | None = Field(description="null: no quota")  # type: ignore[valid-type]


class GcPass(Response):
    repositories: int = Field(description="Repositories walked")
    manifests: int = Field(description="Manifests deleted (nothing reached them)")
    links: int = Field(description="Blob links deleted (no manifest used them)")
    history: int = Field(description="Tag states deleted (their window had passed)")
    tombstoned: int = Field(description="Blobs found unreachable (deleted a grace period later)")
    blobs: int = Field(description="Blobs whose bytes were deleted")
    bytes: int = Field(description="Their bytes")
    seconds: float
