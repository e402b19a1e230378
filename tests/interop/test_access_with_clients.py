"""Who may pull and push, as skopeo and podman see it: reading takes read, pushing takes
write, anonymous clients pull public repositories only and never push."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.interop.clients import attempt, creds, layers, podman, skopeo_copy
from tests.process import OriginProcess
from tests.support import write_oci_layout

pytestmark = pytest.mark.interop


async def api(origin: OriginProcess, method: str, path: str, body: object = None) -> None:
    password = (origin.data_dir / "admin-password").read_text().strip()
    headers = {"Authorization": aiohttp.encode_basic_auth("admin", password)}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{origin.url}/api/v1{path}", json=body, headers=headers) as r,
    ):
        assert r.status < 300, await r.text()


async def copy(src: str, dst: str, *auth: str) -> tuple[int, str]:
    return await attempt(
        "skopeo",
        "copy",
        "--insecure-policy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        *auth,
        src,
        dst,
    )


async def test_skopeo_and_podman_get_what_their_roles_allow(
    origin_process: OriginProcess, podman_storage: Path, tmp_path: Path
) -> None:
    origin = origin_process
    host = origin.url.removeprefix("http://")
    layout = tmp_path / "in"
    write_oci_layout(layout, "v1", layers())
    for name in ("acme/public", "acme/private"):
        await skopeo_copy(f"oci:{layout}:v1", f"docker://{host}/{name}:v1", creds(origin))
    await api(origin, "POST", "/users", {"name": "rita", "password": "ritas-password"})
    await api(
        origin, "PUT", "/repositories/acme/private/-/permissions/accounts/rita", {"role": "read"}
    )
    await api(origin, "PUT", "/repositories/acme/public/-/visibility", {"public": True})
    rita = ("--src-creds", "rita:ritas-password", "--dest-creds", "rita:ritas-password")
    out = f"oci:{tmp_path / 'out'}:v1"

    # Read lets rita pull, not push.
    assert (await copy(f"docker://{host}/acme/private:v1", out, *rita))[0] == 0
    code, said = await copy(f"oci:{layout}:v1", f"docker://{host}/acme/private:v2", *rita)
    assert code != 0
    assert "unauthorized" in said.lower() or "denied" in said.lower()
    await api(
        origin, "PUT", "/repositories/acme/private/-/permissions/accounts/rita", {"role": "write"}
    )
    assert (await copy(f"oci:{layout}:v1", f"docker://{host}/acme/private:v2", *rita))[0] == 0

    # Anonymous: public pulls work, private ones do not, pushes never do.
    anonymous = ("--src-no-creds", "--dest-no-creds")
    assert (await copy(f"docker://{host}/acme/public:v1", out, *anonymous))[0] == 0
    assert (await copy(f"docker://{host}/acme/private:v1", out, *anonymous))[0] != 0
    assert (await copy(f"oci:{layout}:v1", f"docker://{host}/acme/public:v9", *anonymous))[0] != 0

    storage = podman_storage
    pull = ("pull", "--tls-verify=false")
    assert (await attempt(*podman(storage, *pull, f"{host}/acme/public:v1")))[0] == 0
    code, said = await attempt(*podman(storage, *pull, f"{host}/acme/private:v1"))
    assert code != 0
    assert "unauthorized" in said.lower() or "authentication required" in said.lower()
    code, _ = await attempt(
        *podman(
            storage,
            "push",
            "--tls-verify=false",
            f"{host}/acme/public:v1",
            f"{host}/acme/public:anon",
        )
    )
    assert code != 0
    code, _ = await attempt(
        *podman(
            storage,
            "push",
            "--tls-verify=false",
            "--creds",
            "rita:ritas-password",
            f"{host}/acme/public:v1",
            f"{host}/acme/public:anon",
        )
    )
    assert code != 0  # rita may read the public repository, not write it

    # Nothing anonymous or unauthorized landed.
    password = (origin.data_dir / "admin-password").read_text().strip()
    headers = {"Authorization": aiohttp.encode_basic_auth("admin", password)}
    async with aiohttp.ClientSession() as http:
        token_url = f"{origin.url}/auth/token?service=wharf&scope=repository:acme/public:pull"
        async with http.get(token_url, headers=headers) as r:
            token = (await r.json())["token"]
        async with http.get(
            f"{origin.url}/v2/acme/public/tags/list", headers={"Authorization": f"Bearer {token}"}
        ) as r:
            assert (await r.json())["tags"] == ["v1"]
