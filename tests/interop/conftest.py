from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def podman_storage() -> Iterator[Path]:
    """Podman's storage, all of it in a temporary folder (its runroot must be short)."""
    folder = Path(tempfile.mkdtemp(prefix="wharf-podman-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
