"""What an operator sees: metrics, health, readiness and one JSON log line per request."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.process import OriginProcess
from tests.support import Client, admin_auth, make_image, push_blob, push_image, sha256


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_requests_bytes_and_uploads(origin: Client) -> None:
    data = b"m" * 5000
    digest = await push_blob(origin, "m", data)
    async with origin.get(f"/v2/m/blobs/{digest}") as r:
        await r.read()
    async with origin.post("/v2/m/blobs/uploads/") as r:
        assert r.status == 202
    async with origin.post("/v2/m/blobs/uploads/") as r:
        finished = r.headers["Location"]
    async with origin.put(f"{finished}?digest={sha256(b'done')}", data=b"done") as r:
        assert r.status == 201
    async with origin.get("/metrics") as r:
        assert r.status == 200
        metrics = samples(await r.text())
    blob_route = "/v2/{name}/blobs/{digest}"
    key = (
        "wharf_origin_http_requests_total",
        (("method", "GET"), ("route", blob_route), ("status", "200")),
    )
    assert metrics[key] == 1
    assert metrics[("wharf_origin_http_sent_bytes_total", (("route", blob_route),))] == 5000
    upload_route = (("route", "/v2/{name}/blobs/uploads/"),)
    assert metrics[("wharf_origin_http_received_bytes_total", upload_route)] == 5000
    assert metrics[("wharf_origin_uploads_in_progress", ())] == 1
    latency = (
        "wharf_origin_http_request_duration_seconds_count",
        (("method", "GET"), ("route", blob_route)),
    )
    assert metrics[latency] == 1


async def test_odd_methods_and_paths_keep_the_label_set_bounded(origin: Client) -> None:
    for method in ("FOO", "BAR"):
        async with origin.request(method, "/v2/") as r:
            assert r.status in (400, 405, 501)
    for i in range(3):
        async with origin.get(f"/nowhere/{i}") as r:
            assert r.status == 404
    async with origin.get("/metrics") as r:
        text = await r.text()
    assert "FOO" not in text
    assert "nowhere" not in text
    unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert samples(text)[("wharf_origin_http_requests_total", unmatched)] == 3


async def test_health_and_readiness(origin: Client) -> None:
    async with origin.get("/healthz") as r:
        assert r.status == 200
    async with origin.get("/readyz") as r:
        assert r.status == 200
        assert (await r.json())["status"] == "ready"


async def test_readiness_fails_when_storage_is_gone(origin: Client, tmp_path: Path) -> None:
    (tmp_path / "origin").rename(tmp_path / "moved")
    async with origin.get("/readyz") as r:
        assert r.status == 503
        assert "storage" in (await r.json())["failures"]


@pytest.mark.fault
async def test_one_json_log_line_per_request_with_its_id(origin_process: OriginProcess) -> None:
    proc = origin_process
    try:
        async with aiohttp.ClientSession(
            base_url=proc.url, middlewares=(admin_auth(proc.data_dir),)
        ) as http:
            await push_image(http, "logged/app", "v1", make_image("log"))
            async with http.get(
                "/v2/logged/app/manifests/v1?token=secret-in-query",
                headers={"X-Request-Id": "trace-42", "Authorization": "Bearer hunter2"},
            ) as r:
                assert r.headers["X-Request-Id"] == "trace-42"
            async with http.get("/v2/logged/app/manifests/v1") as r:
                generated = r.headers["X-Request-Id"]
    finally:
        await proc.stop()
    text = proc.log.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    requests = [e for e in lines if e.get("event") == "request"]
    assert [e["request_id"] for e in requests if e["route"].endswith("{reference}")][-2:] == [
        "trace-42",
        generated,
    ]
    tagged = next(e for e in requests if e["request_id"] == "trace-42")
    assert tagged["status"] == 200
    assert tagged["method"] == "GET"
    assert "hunter2" not in text
    admin_password = (proc.data_dir / "admin-password").read_text().strip()
    assert admin_password not in text
    assert any(e.get("password_file") for e in lines)  # where it is, never what
    assert "secret-in-query" not in text


async def test_jwks_publishes_the_token_signing_keys(origin: Client) -> None:
    async with origin.get("/auth/jwks") as r:
        assert r.status == 200
        jwks = await r.json()
    (key,) = jwks["keys"]
    assert key["kty"] == "EC"
    assert key["alg"] == "ES256"
    assert "d" not in key
