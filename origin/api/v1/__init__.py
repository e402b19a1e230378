"""The admin API, ``/api/v1/``: one table of operations, served and described by OpenAPI."""

from __future__ import annotations

from importlib.metadata import version

from aiohttp import web

from origin.api.v1 import (
    accounts,
    audit,
    history,
    keys,
    oidc,
    organizations,
    replication,
    repositories,
    schemas,
    storage,
    webhooks,
)
from origin.api.v1.spec import Operation, Param, aiohttp_path, openapi, route

P = "/api/v1"
REPO = P + "/repositories/{repository}/-"
ORG = P + "/organizations/{org}"
ROBOTS = P + "/namespaces/{namespace}/robots"

OPERATIONS = (
    Operation("GET", P + "/oidc/login", oidc.oidc_login, "Sign in through the OpenID Provider (a redirect)", status=302, signed_in=False),
    Operation("GET", P + "/oidc/callback", oidc.oidc_callback, "Where the OpenID Provider sends the browser back: an API token and a refresh token", response=schemas.SignedIn, signed_in=False, query=(Param("code", "The authorization code", required=True), Param("state", "The state of the sign-in", required=True))),
    Operation("GET", P + "/me", accounts.get_me, "The caller's account", response=schemas.Account),
    Operation("GET", P + "/me/tokens", accounts.list_app_tokens, "The caller's app tokens, with last use", response=schemas.AppToken, many=True),
    Operation("POST", P + "/me/tokens", accounts.create_app_token, "Mint an app token (a password for podman login)", body=schemas.AppTokenCreate, response=schemas.AppTokenSecret, status=201),
    Operation("DELETE", P + "/me/tokens/{token_id}", accounts.revoke_app_token, "Revoke one of the caller's app or refresh tokens", status=204),
    Operation("GET", P + "/users", accounts.list_users, "List users (system admins)", response=schemas.Account, many=True, query=(Param("after", "The last name of the previous page"), Param("limit", "Users per page", {"type": "integer", "minimum": 1, "maximum": 1000}))),
    Operation("POST", P + "/users", accounts.create_user, "Create a local user (system admins)", body=schemas.UserCreate, response=schemas.Account, status=201),
    Operation("GET", P + "/users/{user}", accounts.get_user, "One user (system admins, or the user)", response=schemas.Account),
    Operation("PATCH", P + "/users/{user}", accounts.update_user, "Change a user: admin, disabled (system admins); password (also the user)", body=schemas.UserUpdate, response=schemas.Account),
    Operation("POST", P + "/organizations", organizations.create_organization, "Create an organization; its creator joins its owners team", body=schemas.OrganizationCreate, response=schemas.Organization, status=201),
    Operation("GET", ORG, organizations.get_organization, "An organization and its teams (its members)", response=schemas.Organization),
    Operation("POST", ORG + "/teams", organizations.create_team, "Create a team (organization admins)", body=schemas.TeamCreate, response=schemas.Team, status=201),
    Operation("PATCH", ORG + "/teams/{team}", organizations.update_team, "Change a team's role or synced group", body=schemas.TeamUpdate, response=schemas.Team),
    Operation("DELETE", ORG + "/teams/{team}", organizations.delete_team, "Delete a team", status=204),
    Operation("PUT", ORG + "/teams/{team}/members/{member}", organizations.add_team_member, "Add a user or one of the organization's robots to a team", status=204),
    Operation("DELETE", ORG + "/teams/{team}/members/{member}", organizations.remove_team_member, "Remove a member from a team", status=204),
    Operation("GET", ROBOTS, organizations.list_robots, "The robots of a user or organization", response=schemas.Robot, many=True),
    Operation("POST", ROBOTS, organizations.create_robot, "Create a robot <namespace>+<name>; its secret is shown once", body=schemas.RobotCreate, response=schemas.RobotSecret, status=201),
    Operation("POST", ROBOTS + "/{robot}/secret", organizations.rotate_robot_secret, "Rotate a robot's secret (the old one stops working at once)", response=schemas.RobotSecret),
    Operation("DELETE", ROBOTS + "/{robot}", organizations.delete_robot, "Delete a robot", status=204),
    Operation("GET", REPO + "/permissions", repositories.get_repository_access, "A repository's visibility and permissions (its admins)", response=schemas.RepositoryAccess),
    Operation("PUT", REPO + "/visibility", repositories.set_visibility, "Make a repository public or private", body=schemas.VisibilitySet, response=schemas.RepositoryAccess),
    Operation("PUT", REPO + "/permissions/{kind}/{subject}", repositories.set_permission, "Give an account or a team a role on a repository", body=schemas.PermissionSet, status=204),
    Operation("DELETE", REPO + "/permissions/{kind}/{subject}", repositories.remove_permission, "Take a role away", status=204),
    Operation("GET", REPO + "/tags/{tag}/history", history.tag_history, "A tag's states, newest first, with the time machine's window (pull)", response=schemas.TagHistory),
    Operation("POST", REPO + "/tags/{tag}/restore", history.restore_tag, "Point a tag back at a manifest it pointed at within the window (push); audited", body=schemas.TagRestore, response=schemas.TagRestored),
    Operation("DELETE", REPO + "/tags/{tag}/history", history.expire_history, "Forget a tag's ended states now, before the window ends (repository admins)", response=schemas.HistoryExpired),
    Operation("GET", P + "/namespaces/{namespace}/time-machine", history.get_window, "How long a namespace's tags' ended states stay restorable (its managers)", response=schemas.TimeMachineWindow),
    Operation("PUT", P + "/namespaces/{namespace}/time-machine", history.set_window, "Set a namespace's time machine window, 0 to 4 weeks (its managers)", body=schemas.TimeMachineSet, response=schemas.TimeMachineWindow),
    Operation("GET", P + "/namespaces/{namespace}/immutable-tags", history.list_immutable, "The namespace's immutability rules (its managers)", response=schemas.ImmutableRule, many=True),
    Operation("POST", P + "/namespaces/{namespace}/immutable-tags", history.add_immutable, "Make tags matching a glob immutable: created once, never moved or deleted (its managers)", body=schemas.ImmutableRuleCreate, response=schemas.ImmutableRule, status=201),
    Operation("DELETE", P + "/namespaces/{namespace}/immutable-tags/{rule_id}", history.remove_immutable, "Remove an immutability rule (its managers)", status=204),
    Operation("GET", P + "/namespaces/{namespace}/webhooks", webhooks.list_webhooks, "The namespace's webhooks (its managers)", response=schemas.Webhook, many=True),
    Operation("POST", P + "/namespaces/{namespace}/webhooks", webhooks.add_webhook, "Subscribe a URL to the namespace's events; the signing secret is shown once (its managers)", body=schemas.WebhookCreate, response=schemas.WebhookCreated, status=201),
    Operation("DELETE", P + "/namespaces/{namespace}/webhooks/{hook_id}", webhooks.remove_webhook, "Remove a webhook (its managers)", status=204),
    Operation("GET", P + "/namespaces/{namespace}/webhooks/{hook_id}/deliveries", webhooks.list_deliveries, "A webhook's delivery log, newest first (its managers)", response=schemas.WebhookDelivery, many=True),
    Operation("POST", P + "/namespaces/{namespace}/webhooks/{hook_id}/test", webhooks.ping_webhook, "Deliver a ping now; the delivery as it ended (its managers)", response=schemas.WebhookDelivery),
    Operation("GET", P + "/namespaces/{namespace}/quota", history.get_quota, "The namespace's quota and the bytes it uses (its managers)", response=schemas.Quota),
    Operation("PUT", P + "/namespaces/{namespace}/quota", history.set_quota, "Set a namespace's quota in bytes; null: none (system admins)", body=schemas.QuotaSet, response=schemas.Quota),
    Operation("GET", P + "/audit", audit.query_audit, "Audit events, filtered, a page at a time (system admins)", response=schemas.AuditPage, query=audit.FILTERS + audit.PAGING),
    Operation("GET", P + "/audit/export", audit.export_audit, "Every matching audit event as JSON lines (system admins)", response=schemas.AuditEvent, query=audit.FILTERS, content_type="application/x-ndjson"),
    Operation("GET", P + "/signing-keys", keys.list_signing_keys, "The token signing keys and their state (system admins)", response=schemas.SigningKey, many=True),
    Operation("GET", P + "/replication/rules", replication.list_rules, "Replication rules: which regions hold which repositories before anyone asks (admins, replicators)", response=schemas.Rule, many=True),
    Operation("POST", P + "/replication/rules", replication.create_rule, "Add a replication rule (system admins)", body=schemas.RuleCreate, response=schemas.Rule, status=201),
    Operation("DELETE", P + "/replication/rules/{rule_id}", replication.delete_rule, "Remove a replication rule (system admins)", status=204),
    Operation("GET", P + "/replication/events", replication.feed, "Pushes, tag moves and deletions a region's rules cover, after a cursor; waits for one when asked (replicators, admins)", response=schemas.FeedPage, query=replication.FEED),
    Operation("GET", P + "/storage/locations", storage.list_locations, "Storage locations, nearest first for this replica, with the copies queued for each (system admins)", response=schemas.Location, many=True),
    Operation("GET", P + "/storage/blobs/{digest}", storage.get_blob_placement, "Where a blob's bytes are, and where copies are queued (system admins)", response=schemas.BlobPlacement),
    Operation("GET", P + "/storage/namespaces/{namespace}", storage.get_namespace_placement, "The storage locations a namespace's blobs must live in (system admins)", response=schemas.NamespacePlacement),
    Operation("PUT", P + "/storage/namespaces/{namespace}", storage.set_namespace_placement, "Set a namespace's storage locations; the copies its blobs need are queued (system admins)", body=schemas.NamespacePlacementSet, response=schemas.NamespacePlacement),
    Operation("POST", P + "/storage/backfill", storage.backfill, "Record where existing blobs are and queue the copies their namespaces need (system admins)", response=schemas.Backfill),
    Operation("POST", P + "/gc", storage.collect_garbage, "Run a garbage collection pass now and say what it deleted; 409 while one runs (system admins)", response=schemas.GcPass),
    Operation("POST", P + "/signing-keys", keys.rotate_signing_key, "Rotate the signing key, gently or (a leaked key) at once", body=schemas.KeyRotate, response=schemas.SigningKey, many=True, status=201),
)  # fmt: skip


def add_routes(app: web.Application) -> None:
    document = openapi(OPERATIONS, version("wharf"))

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get(P + "/openapi.json", openapi_json)
    for operation in OPERATIONS:
        app.router.add_route(operation.method, aiohttp_path(operation.path), route(operation))
