"""Tokens and scopes: what an edge or the origin honours, and everything it must refuse."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from ocicore.auth.scopes import InvalidScope, Scope, parse_scope, parse_scopes
from ocicore.auth.tokens import TokenError, TokenVerifier, bearer_token
from origin.auth.signing import FolderVault, SigningKeys, new_key
from origin.auth.token_endpoint import basic_credentials

ISSUER, AUDIENCE = "wharf-origin", "wharf"
PULL = Scope("repository", "team/app", frozenset({"pull"}))


@pytest.fixture
async def keys(tmp_path: Path) -> SigningKeys:
    return await SigningKeys.open(FolderVault(tmp_path / "keys"))


@pytest.fixture
def verifier(keys: SigningKeys) -> TokenVerifier:
    return TokenVerifier.from_jwks(keys.jwks(), ISSUER, AUDIENCE)


def issue(
    keys: SigningKeys, ttl: float = 60, audience: str = AUDIENCE, issuer: str = ISSUER
) -> str:
    return keys.issue("alice", [PULL], issuer, audience, ttl)[0]


def test_a_token_grants_exactly_its_scopes(keys: SigningKeys, verifier: TokenVerifier) -> None:
    grant = verifier.verify(issue(keys))
    assert grant.subject == "alice"
    assert grant.allows("repository", "team/app", "pull")
    assert not grant.allows("repository", "team/app", "push")
    assert not grant.allows("repository", "team/other", "pull")


async def test_keys_persist_with_private_permissions(tmp_path: Path) -> None:
    first = await SigningKeys.open(FolderVault(tmp_path / "keys"))
    again = await SigningKeys.open(FolderVault(tmp_path / "keys"))
    assert first.current.kid == again.current.kid
    (pem,) = (tmp_path / "keys").glob("*.pem")
    assert pem.stat().st_mode & 0o777 == 0o600
    assert first.jwks()["keys"][0]["kid"] == first.current.kid
    assert "d" not in first.jwks()["keys"][0]  # never the private part


async def test_rotated_keys_keep_old_tokens_valid(tmp_path: Path) -> None:
    vault = FolderVault(tmp_path / "keys")
    old = await SigningKeys.open(vault)
    token = issue(old)
    await vault.save(new_key())
    rotated = await SigningKeys.open(vault, publish_ahead=0)  # a restart, much later
    assert rotated.current.kid != old.current.kid
    verifier = TokenVerifier.from_jwks(rotated.jwks(), ISSUER, AUDIENCE)
    assert verifier.verify(token).subject == "alice"
    assert verifier.verify(issue(rotated)).subject == "alice"


def test_expired_tokens_are_refused(keys: SigningKeys, verifier: TokenVerifier) -> None:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "a", "aud": AUDIENCE, "iat": now - 120, "exp": now - 60}
    token = jwt.encode(claims, keys.current.private, "ES256", headers={"kid": keys.current.kid})
    with pytest.raises(TokenError, match="expired"):
        verifier.verify(token)


def test_a_cached_grant_still_expires(keys: SigningKeys, verifier: TokenVerifier) -> None:
    verifier.leeway = 0
    token = issue(keys, ttl=1)
    verifier.verify(token)
    time.sleep(2.1)
    with pytest.raises(TokenError, match="expired"):
        verifier.verify(token)


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["access"][0]["actions"] = ["pull", "push"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_refusals(keys: SigningKeys, verifier: TokenVerifier, tmp_path: Path) -> None:
    stranger = await SigningKeys.open(FolderVault(tmp_path / "stranger"))
    good = issue(keys)
    none_alg = jwt.encode(
        {"iss": ISSUER, "sub": "a", "aud": AUDIENCE, "iat": 0, "exp": 2**40},
        key="",
        algorithm="none",
        headers={"kid": keys.current.kid},
    )
    other_curve = ec.generate_private_key(ec.SECP256R1())
    wrong_key_same_kid = jwt.encode(
        {"iss": ISSUER, "sub": "a", "aud": AUDIENCE, "iat": 0, "exp": 2**40},
        other_curve,
        "ES256",
        headers={"kid": keys.current.kid},
    )
    cases = {
        "tampered": (_tamper(good), "invalid token"),
        "unknown key": (issue(stranger), "unknown key"),
        "other audience": (issue(keys, audience="elsewhere"), "audience"),
        "other issuer": (issue(keys, issuer="mallory"), "issuer"),
        "alg none": (none_alg, "invalid token"),
        "forged signature": (wrong_key_same_kid, "invalid token"),
        "garbage": ("not.a.token", "malformed"),
    }
    for token, reason in cases.values():
        with pytest.raises(TokenError, match=reason):
            verifier.verify(token)


def test_bearer_header() -> None:
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic dXNlcjpwYXNz") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None
    assert bearer_token("Bearer " + "a" * 9000) is None


@given(st.text(max_size=300))
def test_bearer_header_parser_never_crashes(header: str) -> None:
    token = bearer_token(header)
    assert token is None or (token and " " not in token.strip())


@given(st.text(max_size=600))
def test_scope_parser_accepts_or_refuses_cleanly(text: str) -> None:
    try:
        scope = parse_scope(text)
    except InvalidScope:
        return
    assert parse_scope(str(scope)) == scope


names = st.from_regex(r"[a-z0-9]+(/[a-z0-9]+){0,3}", fullmatch=True).filter(lambda n: len(n) < 200)
actions = st.sets(st.sampled_from(["pull", "push", "delete"]), min_size=1)


@given(names, actions)
def test_scopes_round_trip(name: str, acts: set[str]) -> None:
    scope = Scope("repository", name, frozenset(acts))
    assert parse_scope(str(scope)) == scope
    assert parse_scopes([f"{scope} registry:catalog:*"])[1] == Scope(
        "registry", "catalog", frozenset({"*"})
    )


@pytest.mark.parametrize(
    "text",
    [
        "repository:Team/App:pull",
        "repository:team/app:steal",
        "repository::pull",
        "repository:team/app",
        "registry:everything:*",
        "volume:x:pull",
        "repository:../etc:pull",
    ],
)
def test_bad_scopes(text: str) -> None:
    with pytest.raises(InvalidScope):
        parse_scope(text)


@given(st.text(max_size=300))
def test_basic_header_parser_never_crashes(header: str) -> None:
    parsed = basic_credentials(header)
    assert parsed is None or len(parsed) == 2


@given(
    st.text(min_size=1, max_size=64).filter(lambda n: ":" not in n),
    st.text(max_size=200),
)
def test_basic_credentials_round_trip(name: str, password: str) -> None:
    encoded = base64.b64encode(f"{name}:{password}".encode()).decode()
    assert basic_credentials(f"Basic {encoded}") == (name, password)
    assert basic_credentials(f"basic   {encoded}  ") == (name, password)
    assert basic_credentials(f"Bearer {encoded}") is None


@given(st.binary(max_size=400))
def test_arbitrary_tokens_are_refused_not_crashed_on(raw: bytes) -> None:
    verifier = TokenVerifier({}, ISSUER, AUDIENCE)
    for candidate in (raw.decode("latin-1"), base64.urlsafe_b64encode(raw).decode() + ".e30.x"):
        with pytest.raises(TokenError):
            verifier.verify(candidate)


def test_the_api_scope_is_exactly_api_v1_star() -> None:
    assert parse_scope("api:v1:*") == Scope("api", "v1", frozenset({"*"}))
    for bad in ("api:v1:pull", "api:v2:*", "api:*:*"):
        with pytest.raises(InvalidScope):
            parse_scope(bad)


async def age(keys: SigningKeys, folder: Path, kid: str, seconds: float) -> None:
    """Make a key file look ``seconds`` old, as the clock would after a while."""
    moment = time.time() - seconds
    os.utime(folder / f"{kid}.pem", (moment, moment))
    await keys.reload()


async def test_a_rotation_publishes_first_signs_later_and_retires_last(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    keys = await SigningKeys.open(FolderVault(folder), publish_ahead=300)
    old = keys.current
    await age(keys, folder, old.kid, 100 * 86400)
    before = issue(keys)
    new = await keys.rotate()
    # Published at once, but the old key signs until verifiers' caches can know the new one.
    assert {k["kid"] for k in keys.jwks()["keys"]} == {old.kid, new.kid}
    assert keys.current.kid == old.kid
    assert keys.state(keys.keys[-1]) == "next"
    await age(keys, folder, new.kid, 301)
    assert keys.current.kid == new.kid
    assert [keys.state(k) for k in keys.keys] == ["retiring", "signing"]
    after = issue(keys)
    verifier = TokenVerifier.from_jwks(keys.jwks(), ISSUER, AUDIENCE)
    assert verifier.verify(before).subject == verifier.verify(after).subject == "alice"
    # The old key goes once the last token it signed has expired, not before.
    assert await keys.retire(token_ttl=300) == []
    assert await keys.retire(token_ttl=300, now=time.time() + 400) == [old.kid]
    assert [p.stem for p in folder.glob("*.pem")] == [new.kid]


async def test_an_emergency_rotation_refuses_every_outstanding_token(tmp_path: Path) -> None:
    keys = await SigningKeys.open(FolderVault(tmp_path / "keys"))
    leaked = issue(keys)
    verifier = TokenVerifier.from_jwks(keys.jwks(), ISSUER, AUDIENCE)
    assert verifier.verify(leaked).subject == "alice"
    new = await keys.rotate(immediately=True)
    assert keys.current.kid == new.kid
    verifier.set_keys(keys.public_keys())
    with pytest.raises(TokenError, match="unknown key"):
        verifier.verify(leaked)  # a cached grant included
    assert verifier.verify(issue(keys)).subject == "alice"
