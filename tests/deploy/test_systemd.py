"""The systemd units in deploy/systemd/ are what systemd itself accepts (``systemd-analyze
verify``: no error and no warning, with ``ExecStart`` pointed at this checkout's ``wharf``)
and stay hardened (``systemd-analyze security``: exposure at most 2.0 of 10, "OK")."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).parents[2] / "deploy" / "systemd"
INSTALLED = "/opt/wharf/.venv/bin/wharf"  # where the units say wharf is installed


@pytest.fixture(params=["wharf-origin.service", "wharf-edge.service"])
def unit(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The unit, its ExecStart pointed at this checkout's wharf (verify checks it exists)."""
    name: str = request.param
    text = (UNITS / name).read_text()
    assert INSTALLED in text
    here = Path(sys.executable).with_name("wharf")
    assert here.exists()
    copy = tmp_path / name
    copy.write_text(text.replace(INSTALLED, str(here)))
    return copy


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool is not None, "systemd-analyze: make test installs Debian's systemd"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, check=False)


def test_systemd_accepts_the_unit_without_a_warning(unit: Path) -> None:
    verified = systemd_analyze("verify", "--man=no", str(unit))
    # Unknown keys and bad values are only warnings (exit 0): any output is a failure.
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")


def test_the_unit_stays_hardened(unit: Path) -> None:
    checked = systemd_analyze("security", "--offline=true", str(unit))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", checked.stdout)
    assert level is not None, checked.stdout[-2000:]
    assert float(level.group(1)) <= 2.0, checked.stdout
    assert level.group(2) == "OK"
