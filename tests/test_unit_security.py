"""The systemd unit: hardened (`systemd-analyze security` exposure <= 4.0, judged by systemd
itself, offline) while keeping what the radios and serial receivers need to work."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "shelfgate.service"
MAX_EXPOSURE = 4.0

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def directives(unit: Path) -> dict[str, list[str]]:
    """Every `Key=value` of the unit (keys repeat in systemd: all values, in order)."""
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def exposure(unit: Path, threshold: float = MAX_EXPOSURE) -> tuple[float, int]:
    res = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=true",
            f"--threshold={round(threshold * 10)}",
            str(unit),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout + res.stderr)
    assert m, res.stdout + res.stderr
    return float(m.group(1)), res.returncode


def test_exposure_at_most_4() -> None:
    score, rc = exposure(UNIT)
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}"
    assert rc == 0  # systemd-analyze's own --threshold agrees


def test_the_score_tracks_the_unit(tmp_path: Path) -> None:
    """The measurement is of this file: the unit without its hardening rates EXPOSED."""
    bare = tmp_path / "shelfgate.service"
    keep = ("[", "Description", "Type", "User", "Group", "ExecStart", "WantedBy")
    bare.write_text(
        "\n".join(ln for ln in UNIT.read_text().splitlines() if ln.startswith(keep)) + "\n"
    )
    score, rc = exposure(bare)
    assert score > MAX_EXPOSURE and rc != 0


def test_radios_and_serial_ports_stay_usable() -> None:
    d = directives(UNIT)
    families = " ".join(d.get("RestrictAddressFamilies", [])).split()
    # D-Bus to BlueZ (and sd_notify), the broker and web app, netlink, the adapter
    for fam in ("AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_BLUETOOTH"):
        assert fam in families, f"RestrictAddressFamilies lacks {fam}"
    assert d.get("DevicePolicy") == ["closed"]
    allowed = {tuple(v.split()) for v in d.get("DeviceAllow", [])}
    for dev in ("char-ttyACM", "char-ttyUSB"):  # serial receivers: CDC-ACM and USB-serial
        assert (dev, "rw") in allowed, f"DeviceAllow lacks {dev} rw"
    groups = " ".join(d.get("SupplementaryGroups", [])).split()
    assert "bluetooth" in groups and "dialout" in groups  # BlueZ's D-Bus policy, the ttys
    assert "PrivateDevices" not in d  # it would hide /dev/ttyACM*
    assert d.get("User") == ["shelfgate"]
    # the outbox stays writable, the watchdog and the memory cap stay
    assert d.get("ProtectSystem") == ["strict"]
    assert "/var/lib/shelfgate" in " ".join(d.get("ReadWritePaths", []))
    assert d.get("WatchdogSec") == ["60"] and d.get("Type") == ["notify"]
    assert d.get("MemoryMax") and d.get("NoNewPrivileges") == ["true"]
    assert "@system-service" in d.get("SystemCallFilter", [])
