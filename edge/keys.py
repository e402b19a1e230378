"""Typed keys through which the edge's handlers reach what ``create_app`` builds."""

from __future__ import annotations

from aiohttp import web

from edge.blobs import EdgeBlobs
from edge.config import EdgeConfig
from edge.jwks import OriginKeys
from edge.manifests import EdgeManifests
from edge.pushes import EdgePushes
from edge.seeding import Seeder
from edge.store import BlobStore
from edge.upstream import Upstreams
from ocicore.torrent import Swarm

CONFIG = web.AppKey("config", EdgeConfig)
STORE = web.AppKey("store", BlobStore)
UPSTREAMS = web.AppKey("upstreams", Upstreams)
BLOBS = web.AppKey("blobs", EdgeBlobs)
MANIFESTS = web.AppKey("manifests", EdgeManifests)
ORIGIN_KEYS = web.AppKey("origin_keys", OriginKeys)
SEEDER = web.AppKey("seeder", Seeder)
SWARM = web.AppKey("swarm", Swarm)
EDGE_PUSHES = web.AppKey("edge_pushes", EdgePushes)
