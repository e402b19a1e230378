"""Settings come from defaults, a TOML file, WHARF_ORIGIN_* variables and flags, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import EdgeConfig
from origin.config import OriginConfig


def test_layers_override_in_order(tmp_path: Path) -> None:
    file = tmp_path / "wharf.toml"
    file.write_text(
        '[origin]\nlisten = "127.0.0.1:6000"\nlog_level = "debug"\nmax_manifest_bytes = 1024\n'
    )
    config = OriginConfig.load(
        file=file,
        env={"WHARF_ORIGIN_LISTEN": "127.0.0.1:7000", "WHARF_ORIGIN_DATA_DIR": "/srv/wharf"},
        overrides={"listen": "0.0.0.0:8000", "data_dir": None},
    )
    assert config.listen == "0.0.0.0:8000"
    assert config.data_dir == Path("/srv/wharf")
    assert config.log_level == "debug"
    assert config.max_manifest_bytes == 1024
    assert config.port == 8000


def test_sqlite_in_the_data_dir_by_default() -> None:
    config = OriginConfig(data_dir=Path("/d"))
    assert config.effective_database_url == "sqlite+aiosqlite:////d/metadata.db"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WHARF_ORIGIN_LISTEN": "nope"}, "HOST:PORT"),
        ({"WHARF_ORIGIN_LOG_LEVEL": "loud"}, "log_level"),
        ({"WHARF_ORIGIN_MAX_BLOB_BYTES": "0"}, "positive"),
        ({"WHARF_ORIGIN_COLOUR": "blue"}, "unknown origin settings: colour"),
        ({"WHARF_ORIGIN_AUTH_ENABLED": "maybe"}, "true or false"),
        # An open registry only where nobody else can reach it.
        (
            {"WHARF_ORIGIN_AUTH_ENABLED": "false", "WHARF_ORIGIN_LISTEN": "0.0.0.0:5000"},
            "loopback",
        ),
    ],
)
def test_bad_settings_are_refused_with_a_reason(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OriginConfig.load(env=env)


def test_identity_providers_are_tables_of_the_file(tmp_path: Path) -> None:
    file = tmp_path / "wharf.toml"
    file.write_text(
        "[origin]\nauth_enabled = true\n"
        "[origin.ldap]\n"
        'url = "ldaps://ldap.corp:636"\nbind_dn = "cn=wharf,dc=corp"\n'
        'bind_password = "hunter2"\nuser_base = "ou=people,dc=corp"\n'
        "[origin.oidc]\n"
        'issuer = "https://sso.corp"\nclient_id = "wharf"\nclient_secret = "s3"\n'
        'redirect_url = "https://wharf.corp/api/v1/oidc/callback"\n'
    )
    config = OriginConfig.load(file=file, env={"WHARF_ORIGIN_AUTH_ENABLED": "off"})
    assert config.auth_enabled is False
    assert config.ldap is not None
    assert config.ldap.user_base == "ou=people,dc=corp"
    assert config.oidc is not None
    assert config.oidc.issuer == "https://sso.corp"
    assert "hunter2" not in repr(config)  # secrets never reach a log line through repr
    assert "s3" not in repr(config.oidc)
    file.write_text('[origin.ldap]\nurl = "ldap://x"\nbogus = 1\n')
    with pytest.raises(ValueError, match=r"\[origin.ldap\]"):
        OriginConfig.load(file=file)


def test_edge_settings_read_sizes_and_mirror_tables(tmp_path: Path) -> None:
    file = tmp_path / "edge.toml"
    file.write_text(
        '[edge]\norigin = "https://registry.example"\ncache_size = "512MiB"\n'
        '[[edge.mirrors]]\nnamespace = "docker.io"\nurl = "https://registry-1.docker.io"\n'
        'username = "bot"\npassword = "hunter2"\n'
    )
    config = EdgeConfig.load(
        file=file, env={"WHARF_EDGE_REGION": "eu-west"}, overrides={"cache_size": "2GiB"}
    )
    assert config.cache_size == 2 << 30
    assert config.region == "eu-west"
    assert config.realm == "https://registry.example/auth/token"
    (mirror,) = config.mirrors
    assert (mirror.namespace, mirror.public) == ("docker.io", True)
    assert "hunter2" not in repr(config)
    for bad in ({"cache_size": "lots"}, {"origin": "ftp://x"}, {"max_fills": "0"}):
        with pytest.raises(ValueError):  # noqa: PT011 - each says why in its own words
            EdgeConfig.load(overrides=bad)


def test_lists_and_rates_read_from_the_file_and_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "wharf.toml"
    file.write_text('[origin]\nreplicators = ["edge-sync", "edge-eu"]\n')
    assert OriginConfig.load(file=file).replicators == ("edge-sync", "edge-eu")
    from_env = OriginConfig.load(env={"WHARF_ORIGIN_REPLICATORS": "edge-sync, edge-eu"})
    assert from_env.replicators == ("edge-sync", "edge-eu")
    edge_file = tmp_path / "edge.toml"
    edge_file.write_text('[edge]\nswarm_upload_bytes_per_second = "200MiB"\n')
    edge = EdgeConfig.load(file=edge_file, env={"WHARF_EDGE_REPLICATION_PASSWORD": "s3cret"})
    assert edge.swarm_upload_bytes_per_second == 200 << 20
    assert edge.accepts_pushes is False  # a password alone names no account
    assert "s3cret" not in repr(edge)
