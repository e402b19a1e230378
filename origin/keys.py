"""Typed keys through which handlers reach the services ``create_app`` builds."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from ocicore.auth.tokens import TokenVerifier
from ocicore.uploads import UploadService
from ocicore.web.sendfile import SendfilePool
from origin.admin.history import Quotas, TagRules, TimeMachine
from origin.admin.organizations import Organizations
from origin.admin.people import People
from origin.admin.repositories import Repositories
from origin.admin.webhooks import WebhookAdmin
from origin.audit import AuditLog
from origin.auth.oidc import OidcProvider
from origin.auth.signing import SigningKeys
from origin.auth.token_endpoint import TokenService
from origin.config import OriginConfig
from origin.gc import Collector
from origin.leader import Leadership
from origin.locations import Locations
from origin.metadata.placements import Placements
from origin.metadata.store import MetadataStore
from origin.registry.blobs import BlobService
from origin.registry.manifests import ManifestService
from origin.registry.torrents import TorrentService
from origin.replication import Replication

CONFIG = web.AppKey("config", OriginConfig)
META = web.AppKey("metadata", MetadataStore)
BLOBS = web.AppKey("blobs", BlobService)
UPLOADS = web.AppKey("uploads", UploadService)
MANIFESTS = web.AppKey("manifests", ManifestService)
SENDFILE = web.AppKey("sendfile", SendfilePool)
SIGNING_KEYS = web.AppKey("signing_keys", SigningKeys)
TOKENS = web.AppKey("tokens", TokenService)
LOCATIONS = web.AppKey("locations", Locations)
VERIFIER = web.AppKey("verifier", TokenVerifier)
AUDIT = web.AppKey("audit", AuditLog)
PEOPLE = web.AppKey("people", People)
ORGANIZATIONS = web.AppKey("organizations", Organizations)
REPOSITORIES = web.AppKey("repositories", Repositories)
OIDC = web.AppKey("oidc", OidcProvider)
TORRENTS = web.AppKey("torrents", TorrentService)
REPLICATION = web.AppKey("replication", Replication)
LEADERSHIP = web.AppKey("leadership", Leadership)
PLACEMENTS = web.AppKey("placements", Placements)
# The workers only the leading replica runs, by name (each a coroutine function).
SINGLETONS = web.AppKey("singletons", dict[str, Callable[[], Coroutine[Any, Any, None]]])
TIME_MACHINE = web.AppKey("time_machine", TimeMachine)
TAG_RULES = web.AppKey("tag_rules", TagRules)
WEBHOOK_ADMIN = web.AppKey("webhook_admin", WebhookAdmin)
QUOTAS = web.AppKey("quotas", Quotas)
COLLECTOR = web.AppKey("collector", Collector)
