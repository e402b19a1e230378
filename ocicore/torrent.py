"""BitTorrent metainfo for blobs, the one module of Wharf that imports libtorrent.

Metainfo is deterministic: the same bytes give the same info-hash on every node. The torrent
has one file named by the digest's hex, an explicit piece size from :func:`piece_size`, no
creation date and no creator, and is v1 only (the widest support; a v2 merkle tree would add
nothing a registry needs: the blob's own digest is checked before commit anyway).
"""

from __future__ import annotations

from pathlib import Path

import libtorrent as lt

MIN_PIECE = 256 * 1024
TARGET_PIECES = 2000
MAX_PIECE = 16 * 1024 * 1024


def piece_size(size: int) -> int:
    """A power of two of at least 256 KiB keeping the piece count in the low thousands (at
    most 16 MiB: libtorrent's web seed requests stay small enough)."""
    piece = MIN_PIECE
    while piece < MAX_PIECE and size > piece * TARGET_PIECES:
        piece *= 2
    return piece


def metainfo(path: Path, size: int) -> bytes:
    """The bencoded metainfo of the blob at ``path`` (its file name is the digest's hex).
    Hashes every piece: call it in a thread."""
    entry = lt.create_file_entry(path.name, size)
    creator = lt.create_torrent([entry], piece_size(size), lt.create_torrent.v1_only)
    lt.set_piece_hashes(creator, str(path.parent))
    creator.set_creation_date(0)
    return bytes(lt.bencode(creator.generate()))


def info_hash(data: bytes) -> str:
    """The v1 info-hash (hex) of bencoded metainfo."""
    return str(lt.torrent_info(data).info_hashes().v1)
