"""``wharf users|orgs|teams|robots|tokens|permissions|visibility|audit``: the admin API from a
shell.

Every command is one call to the origin's ``/api/v1/`` and prints the JSON it answers. The
registry comes from ``--registry`` or ``WHARF_REGISTRY``; the caller from ``--user`` or
``WHARF_USER`` with the password (or an app token) in ``WHARF_PASSWORD``, from
``--password-stdin``, or typed at a prompt. Nothing here writes a secret to disk.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from ocicore.settings import parse_size

DEFAULT_REGISTRY = "http://127.0.0.1:5000"


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict[str, Any] | None = None
    query: Mapping[str, str] | None = None
    lines: bool = False  # the answer is JSON lines, streamed through


Build = Callable[[argparse.Namespace], Call]


def _q(text: str) -> str:
    return quote(text, safe="")


def _repo(text: str) -> str:
    return quote(text, safe="/")


def _new_password(args: argparse.Namespace) -> str:
    if args.new_password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass(f"password for {args.name}: ")


def _user_update(args: argparse.Namespace) -> Call:
    body: dict[str, Any] = {}
    if args.admin is not None:
        body["admin"] = args.admin == "yes"
    if args.disabled is not None:
        body["disabled"] = args.disabled == "yes"
    if args.password:
        body["password"] = _new_password(args)
    return Call("PATCH", f"/users/{_q(args.name)}", body)


def _audit(args: argparse.Namespace) -> Call:
    names = ("actor", "repository", "action", "outcome", "since", "until", "after", "limit")
    query = {n: str(getattr(args, n)) for n in names if getattr(args, n) is not None}
    if args.export:
        query.pop("after", None)
        query.pop("limit", None)
        return Call("GET", "/audit/export", query=query, lines=True)
    return Call("GET", "/audit", query=query)


def _subject(args: argparse.Namespace) -> str:
    kind = "teams" if args.team else "accounts"
    return f"/repositories/{_repo(args.repository)}/-/permissions/{kind}/{_q(args.team or args.account)}"


def _expiry(args: argparse.Namespace) -> dict[str, Any]:
    return {"expires_at": args.expires} if args.expires else {}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--registry", default=os.environ.get("WHARF_REGISTRY", DEFAULT_REGISTRY))
    parser.add_argument("--user", default=os.environ.get("WHARF_USER"))
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the caller's password from stdin"
    )
    return parser


def _command(group: Any, name: str, build: Build, help: str) -> argparse.ArgumentParser:
    cmd: argparse.ArgumentParser = group.add_parser(name, help=help, parents=[_parser()])
    cmd.set_defaults(build=build)
    return cmd


def _group(commands: Any, name: str, help: str) -> Any:
    return commands.add_parser(name, help=help).add_subparsers(dest="action", required=True)


def add_commands(commands: Any) -> None:
    """Add the admin commands to the ``wharf`` parser's subcommands."""
    for add in (
        _me_and_users,
        _orgs_and_teams,
        _robots,
        _tokens,
        _repositories,
        _audit_command,
        _keys,
        _replication,
        _storage,
        _time_machine,
        _webhooks,
    ):
        add(commands)


def _me_and_users(commands: Any) -> None:
    me = _group(commands, "me", "your account")
    _command(me, "show", lambda a: Call("GET", "/me"), "who you are signed in as")

    users = _group(commands, "users", "users (system admins)")
    _command(users, "list", lambda a: Call("GET", "/users"), "list users")
    c = _command(
        users,
        "create",
        lambda a: Call(
            "POST", "/users", {"name": a.name, "password": _new_password(a), "admin": a.admin}
        ),
        "create a local user (asks for the new password)",
    )
    c.add_argument("name")
    c.add_argument("--admin", action="store_true")
    c.add_argument("--new-password-stdin", action="store_true")
    c = _command(users, "show", lambda a: Call("GET", f"/users/{_q(a.name)}"), "one user")
    c.add_argument("name")
    c = _command(users, "update", _user_update, "make admin, disable, or set the password")
    c.add_argument("name")
    c.add_argument("--admin", choices=["yes", "no"])
    c.add_argument("--disabled", choices=["yes", "no"])
    c.add_argument("--password", action="store_true", help="set a new password (asked for)")
    c.add_argument("--new-password-stdin", action="store_true")


def _orgs_and_teams(commands: Any) -> None:
    orgs = _group(commands, "orgs", "organizations")
    c = _command(
        orgs, "create", lambda a: Call("POST", "/organizations", {"name": a.name}), "create one"
    )
    c.add_argument("name")
    c = _command(orgs, "show", lambda a: Call("GET", f"/organizations/{_q(a.name)}"), "its teams")
    c.add_argument("name")

    teams = _group(commands, "teams", "teams of an organization")
    c = _command(
        teams,
        "create",
        lambda a: Call(
            "POST",
            f"/organizations/{_q(a.org)}/teams",
            {"name": a.team, "role": a.role} | ({"external_group": a.group} if a.group else {}),
        ),
        "create a team",
    )
    c.add_argument("org")
    c.add_argument("team")
    c.add_argument("--role", choices=["member", "creator", "admin"], default="member")
    c.add_argument("--group", help="LDAP/OIDC group to sync members from")
    c = _command(
        teams,
        "delete",
        lambda a: Call("DELETE", f"/organizations/{_q(a.org)}/teams/{_q(a.team)}"),
        "delete a team",
    )
    c.add_argument("org")
    c.add_argument("team")
    for verb, method in (("add", "PUT"), ("remove", "DELETE")):
        c = _command(
            teams,
            verb,
            lambda a, m=method: Call(  # type: ignore[misc]
                m, f"/organizations/{_q(a.org)}/teams/{_q(a.team)}/members/{_q(a.member)}"
            ),
            f"{verb} a member",
        )
        c.add_argument("org")
        c.add_argument("team")
        c.add_argument("member")


def _robots(commands: Any) -> None:
    robots = _group(commands, "robots", "robot accounts <namespace>+<name>")
    c = _command(
        robots, "list", lambda a: Call("GET", f"/namespaces/{_q(a.namespace)}/robots"), "list"
    )
    c.add_argument("namespace")
    c = _command(
        robots,
        "create",
        lambda a: Call(
            "POST", f"/namespaces/{_q(a.namespace)}/robots", {"name": a.name} | _expiry(a)
        ),
        "create a robot (its secret is printed once)",
    )
    c.add_argument("namespace")
    c.add_argument("name")
    c.add_argument("--expires", help="RFC 3339 time")
    c = _command(
        robots,
        "rotate",
        lambda a: Call("POST", f"/namespaces/{_q(a.namespace)}/robots/{_q(a.name)}/secret"),
        "a new secret; the old one stops working",
    )
    c.add_argument("namespace")
    c.add_argument("name")
    c = _command(
        robots,
        "delete",
        lambda a: Call("DELETE", f"/namespaces/{_q(a.namespace)}/robots/{_q(a.name)}"),
        "delete a robot",
    )
    c.add_argument("namespace")
    c.add_argument("name")


def _tokens(commands: Any) -> None:
    tokens = _group(commands, "tokens", "your app tokens (passwords for podman login)")
    _command(tokens, "list", lambda a: Call("GET", "/me/tokens"), "with their last use")
    c = _command(
        tokens,
        "create",
        lambda a: Call("POST", "/me/tokens", {"label": a.label} | _expiry(a)),
        "mint one (printed once)",
    )
    c.add_argument("label")
    c.add_argument("--expires", help="RFC 3339 time")
    c = _command(tokens, "revoke", lambda a: Call("DELETE", f"/me/tokens/{a.id}"), "revoke one")
    c.add_argument("id", type=int)


def _repositories(commands: Any) -> None:
    perms = _group(commands, "permissions", "who holds which role on a repository")
    c = _command(
        perms,
        "show",
        lambda a: Call("GET", f"/repositories/{_repo(a.repository)}/-/permissions"),
        "visibility and roles",
    )
    c.add_argument("repository")
    for verb in ("grant", "revoke"):
        c = _command(
            perms,
            verb,
            (lambda a: Call("PUT", _subject(a), {"role": a.role}))
            if verb == "grant"
            else (lambda a: Call("DELETE", _subject(a))),
            f"{verb} a role",
        )
        c.add_argument("repository")
        if verb == "grant":
            c.add_argument("role", choices=["read", "write", "admin"])
        who = c.add_mutually_exclusive_group(required=True)
        who.add_argument("--account", help="a user or robot")
        who.add_argument("--team", help="a team of the repository's organization")

    c = _command(
        commands,
        "visibility",
        lambda a: Call(
            "PUT",
            f"/repositories/{_repo(a.repository)}/-/visibility",
            {"public": a.visibility == "public"},
        ),
        "make a repository public or private",
    )
    c.add_argument("repository")
    c.add_argument("visibility", choices=["public", "private"])


def _audit_command(commands: Any) -> None:
    c = _command(commands, "audit", _audit, "query or export the audit log (system admins)")
    for name in ("actor", "repository", "action", "outcome", "since", "until"):
        c.add_argument(f"--{name}")
    c.add_argument("--after", type=int)
    c.add_argument("--limit", type=int)
    c.add_argument("--export", action="store_true", help="every match, as JSON lines")


def _keys(commands: Any) -> None:
    keys = _group(commands, "keys", "token signing keys (system admins)")
    _command(keys, "list", lambda a: Call("GET", "/signing-keys"), "keys and their state")
    c = _command(
        keys,
        "rotate",
        lambda a: Call("POST", "/signing-keys", {"immediately": a.immediately}),
        "publish a new key (it signs in 5 minutes)",
    )
    c.add_argument(
        "--immediately", action="store_true", help="a key leaked: refuse every outstanding token"
    )


def _caller(args: argparse.Namespace) -> tuple[str, str]:
    user = args.user
    if not user:
        sys.exit("wharf: say who you are: --user or WHARF_USER")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = os.environ.get("WHARF_PASSWORD") or getpass.getpass(f"password for {user}: ")
    return user, password


async def _run(args: argparse.Namespace, call: Call, user: str, password: str) -> int:
    url = args.registry.rstrip("/") + "/api/v1" + call.path
    auth = {"Authorization": aiohttp.encode_basic_auth(user, password)}
    timeout = aiohttp.ClientTimeout(total=None if call.lines else 60)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(call.method, url, json=call.body, params=call.query, headers=auth) as r,
    ):
        if r.status >= 400:
            text = await r.text()
            try:
                errors = json.loads(text)["errors"]
                message = "; ".join(
                    f"{e['code']}: {e.get('detail') or e['message']}" for e in errors
                )
            except (ValueError, KeyError, TypeError):
                message = text[:500]
            print(f"wharf: {r.status} {message}", file=sys.stderr)
            return 1
        if call.lines:
            async for line in r.content:
                sys.stdout.buffer.write(line)
        elif r.status != 204:
            print(json.dumps(await r.json(), indent=2))
    return 0


def run(args: argparse.Namespace) -> int:
    call: Call = args.build(args)  # may ask for a new password first
    user, password = _caller(args)
    try:
        return asyncio.run(_run(args, call, user, password))
    except aiohttp.ClientError as exc:
        print(f"wharf: cannot reach {args.registry}: {exc}", file=sys.stderr)
        return 1


def _replication(commands: Any) -> None:
    rules = _group(commands, "replication", "replication rules: regions that hold repositories")
    _command(rules, "list", lambda a: Call("GET", "/replication/rules"), "the rules")
    c = _command(
        rules,
        "add",
        lambda a: Call(
            "POST",
            "/replication/rules",
            {"repositories": a.repositories, "tags": a.tags, "regions": a.regions},
        ),
        "edges of these regions hold these repositories before anyone asks",
    )
    c.add_argument("repositories", help="a glob over repository names: team-a/*")
    c.add_argument("regions", nargs="+", help="eu us-east ...")
    c.add_argument("--tags", default="*", help="a glob over tags (default: every tag)")
    c = _command(
        rules,
        "remove",
        lambda a: Call("DELETE", f"/replication/rules/{a.id}"),
        "remove a rule",
    )
    c.add_argument("id", type=int)


def _storage(commands: Any) -> None:
    storage = _group(commands, "storage", "storage locations and where blobs are placed")
    _command(storage, "locations", lambda a: Call("GET", "/storage/locations"), "the locations")
    c = _command(
        storage,
        "blob",
        lambda a: Call("GET", f"/storage/blobs/{_q(a.digest)}"),
        "where a blob is, and where copies are queued",
    )
    c.add_argument("digest")
    c = _command(
        storage,
        "place",
        lambda a: Call("PUT", f"/storage/namespaces/{_q(a.namespace)}", {"locations": a.locations}),
        "the locations a namespace's blobs must live in (none: the defaults)",
    )
    c.add_argument("namespace")
    c.add_argument("locations", nargs="*")
    c = _command(
        storage,
        "placement",
        lambda a: Call("GET", f"/storage/namespaces/{_q(a.namespace)}"),
        "a namespace's locations",
    )
    c.add_argument("namespace")
    _command(
        storage,
        "backfill",
        lambda a: Call("POST", "/storage/backfill"),
        "record where existing blobs are and queue the copies they need",
    )
    gc = _group(commands, "gc", "garbage collection (it runs by itself on the leader, too)")
    _command(
        gc,
        "run",
        lambda a: Call("POST", "/gc"),
        "run a pass now and say what it deleted",
    )


def _tag_path(a: Any, what: str) -> str:
    return f"/repositories/{_repo(a.repository)}/-/tags/{_q(a.tag)}/{what}"


def _time_machine(commands: Any) -> None:
    tags = _group(commands, "tags", "the time machine: a tag's past states, and going back")
    c = _command(tags, "history", lambda a: Call("GET", _tag_path(a, "history")), "its states")
    c.add_argument("repository")
    c.add_argument("tag")
    c = _command(
        tags,
        "restore",
        lambda a: Call("POST", _tag_path(a, "restore"), {"digest": a.digest}),
        "point the tag back at a manifest it pointed at within the window",
    )
    c.add_argument("repository")
    c.add_argument("tag")
    c.add_argument("digest")
    c = _command(
        tags,
        "expire",
        lambda a: Call("DELETE", _tag_path(a, "history")),
        "forget the tag's ended states now",
    )
    c.add_argument("repository")
    c.add_argument("tag")
    c = _command(
        tags,
        "window",
        lambda a: Call(
            "GET" if a.days is None and not a.default else "PUT",
            f"/namespaces/{_q(a.namespace)}/time-machine",
            None if a.days is None and not a.default else
            {"seconds": None if a.default else int(a.days * 86400)},
        ),
        "show or set how long a namespace's tag states stay restorable",
    )  # fmt: skip
    c.add_argument("namespace")
    c.add_argument("--days", type=float, help="0 to 28")
    c.add_argument("--default", action="store_true", help="back to the origin's default")

    quota = _group(commands, "quota", "a namespace's quota and the bytes it uses")
    c = _command(
        quota,
        "show",
        lambda a: Call("GET", f"/namespaces/{_q(a.namespace)}/quota"),
        "the quota and the usage",
    )
    c.add_argument("namespace")
    c = _command(
        quota,
        "set",
        lambda a: Call(
            "PUT",
            f"/namespaces/{_q(a.namespace)}/quota",
            {"quota_bytes": None if a.size == "none" else parse_size(a.size)},
        ),
        "set the quota (system admins): 500GiB, or none",
    )
    c.add_argument("namespace")
    c.add_argument("size")

    rules = _group(commands, "immutable", "tags created once, never moved or deleted")
    c = _command(
        rules,
        "list",
        lambda a: Call("GET", f"/namespaces/{_q(a.namespace)}/immutable-tags"),
        "a namespace's rules",
    )
    c.add_argument("namespace")
    c = _command(
        rules,
        "add",
        lambda a: Call(
            "POST",
            f"/namespaces/{_q(a.namespace)}/immutable-tags",
            {"pattern": a.pattern, **({"repository": a.repository} if a.repository else {})},
        ),
        "protect the tags matching a glob (v*, release-*)",
    )
    c.add_argument("namespace")
    c.add_argument("pattern")
    c.add_argument("--repository", help="one repository of the namespace (default: all)")
    c = _command(
        rules,
        "remove",
        lambda a: Call("DELETE", f"/namespaces/{_q(a.namespace)}/immutable-tags/{a.id}"),
        "remove a rule",
    )
    c.add_argument("namespace")
    c.add_argument("id", type=int)


def _webhooks(commands: Any) -> None:
    hooks = _group(commands, "webhooks", "signed deliveries of a namespace's events")

    def hook(a: Any, rest: str = "") -> str:
        return f"/namespaces/{_q(a.namespace)}/webhooks" + (f"/{a.id}{rest}" if rest else "")

    c = _command(hooks, "list", lambda a: Call("GET", hook(a)), "a namespace's webhooks")
    c.add_argument("namespace")
    c = _command(
        hooks,
        "add",
        lambda a: Call("POST", hook(a), {"url": a.url, "events": a.events}),
        "subscribe a URL (prints the signing secret, once)",
    )
    c.add_argument("namespace")
    c.add_argument("url")
    c.add_argument(
        "events",
        nargs="+",
        choices=["push", "tag_delete", "manifest_delete", "replication_failure"],
    )
    for name, method, rest, help in (
        ("remove", "DELETE", "/", "remove a webhook"),
        ("deliveries", "GET", "/deliveries", "its delivery log, newest first"),
        ("test", "POST", "/test", "deliver a ping now"),
    ):
        c = _command(hooks, name, _hook_call(hook, method, rest), help)
        c.add_argument("namespace")
        c.add_argument("id", type=int)


def _hook_call(path: Callable[[Any, str], str], method: str, rest: str) -> Build:
    return lambda a: Call(method, path(a, rest).rstrip("/"))
