"""The .deb and the offline bundle from scripts/build-deb, installed into a throwaway root as an
installer would on a fresh Bookworm: dpkg --root with the maintainer scripts run chrootless
($DPKG_ROOT), `check` run from the installed venv, an upgrade with a non-empty outbox, purge.

Offline: the dependency wheels the build script "downloads" are this test venv's own installed
distributions, repacked into wheels (PIP_NO_INDEX, PIP_FIND_LINKS), so no index is asked."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .mqtt_helpers import Broker

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None,
    reason="dpkg-deb is not installed (the .deb cannot be built)",
)
AS_ROOT = os.geteuid() == 0  # otherwise dpkg runs under fakeroot (owners are faked)


def runtime_closure() -> list[metadata.Distribution]:
    """shelfgate's runtime dependencies (no extras), recursively, as installed here."""
    env = default_environment()
    seen: dict[str, metadata.Distribution] = {}
    todo = ["shelfgate"]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        dist = metadata.distribution(name)
        seen[name] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
                todo.append(req.name)
    seen.pop("shelfgate")
    return list(seen.values())


def repack(dist: metadata.Distribution, out: Path) -> Path:
    """An installed distribution back into a wheel (files under site-packages, its WHEEL tags;
    console scripts are regenerated from entry_points.txt on install)."""
    site = Path(str(dist.locate_file("")))
    info = Path(str(dist._path))  # type: ignore[attr-defined]
    wheel_meta = (info / "WHEEL").read_text()
    tags = [ln.split(":", 1)[1].strip() for ln in wheel_meta.splitlines() if ln.startswith("Tag:")]
    py = ".".join(sorted({t.split("-")[0] for t in tags}))
    abi = ".".join(sorted({t.split("-")[1] for t in tags}))
    plat = ".".join(sorted({t.split("-")[2] for t in tags}))
    name = info.name[: -len(".dist-info")]
    path = out / f"{name}-{py}-{abi}-{plat}.whl"
    skip = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    records = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for f in dist.files or []:
            rel = f.as_posix()
            if rel.startswith("..") or "__pycache__" in rel or rel.endswith(".pyc"):
                continue
            if rel.startswith(info.name + "/") and rel.split("/", 1)[1] in skip:
                continue
            data = (site / rel).read_bytes()
            z.writestr(rel, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            records.append((rel, f"sha256={digest.decode()}", str(len(data))))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerows([*records, (f"{info.name}/RECORD", "", "")])
        z.writestr(f"{info.name}/RECORD", buf.getvalue())
    return path


def build(out: Path, wheels: Path, *args: str) -> list[Path]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIP_")},
        "PYTHON": sys.executable,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "PIP_CONFIG_FILE": os.devnull,
    }
    res = subprocess.run(
        [str(ROOT / "scripts" / "build-deb"), "--out", str(out), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    return [Path(p) for p in res.stdout.split()]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pkg")
    wheels = d / "wheels"
    wheels.mkdir()
    for dist in runtime_closure():
        repack(dist, wheels)
    pip = metadata.distribution("pip")
    repack(pip, wheels)
    deb1, bundle = build(d / "r1", wheels, "--revision", "1")
    (deb2,) = build(d / "r2", wheels, "--revision", "2", "--no-bundle")
    return {"deb1": deb1, "deb2": deb2, "bundle": bundle}


def fresh_root(d: Path) -> Path:
    """An empty Bookworm-like tree: base users and groups (no bluetooth: bluez is not
    installed), an empty dpkg database."""
    (d / "etc").mkdir(parents=True)
    (d / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (d / "etc/group").write_text("root:x:0:\ndialout:x:20:\n")
    (d / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (d / "etc/gshadow").write_text("root:*::\ndialout:*::\n")
    for f in ("shadow", "gshadow"):
        (d / "etc" / f).chmod(0o640)
    adm = d / "var/lib/dpkg"
    for sub in ("info", "updates", "triggers"):
        (adm / sub).mkdir(parents=True)
    (adm / "status").write_text("")
    (adm / "available").write_text("")
    return d


def as_root(cmd: list[str]) -> list[str]:
    return cmd if AS_ROOT else ["fakeroot", *cmd]


def dpkg(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        "dpkg",
        f"--root={root}",
        f"--admindir={root}/var/lib/dpkg",
        "--force-script-chrootless",
        "--force-not-root",
        "--force-depends",  # python3 lives outside the throwaway root (the host's is used)
        "--force-confold",  # never a prompt: an edited config stays
        "--log=/dev/null",
        *args,
    ]
    res = subprocess.run(as_root(cmd), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def mapped_config(root: Path) -> Path:
    """The installed config with its absolute paths inside the root (what the daemon sees at
    /etc/shelfgate and /var/lib/shelfgate on the gateway), next to it."""
    text = (root / "etc/shelfgate/gateway.toml").read_text()
    text = re.sub(r'"/(etc|var/lib)/shelfgate', rf'"{root}/\1/shelfgate', text)
    p = root / "etc/shelfgate/chrootless.toml"
    p.write_text(text)
    return p


def shelfgate(root: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    exe = root / "opt/shelfgate/venv/bin/shelfgate"
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout, cwd=root
    )


def entries(root: Path, name: str) -> dict[str, list[str]]:
    out = {}
    for line in (root / "etc" / name).read_text().splitlines():
        parts = line.split(":")
        out[parts[0]] = parts
    return out


def tree(root: Path) -> set[str]:
    skip = ("var/lib/dpkg", "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow")
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if not p.relative_to(root).as_posix().startswith(skip)
    }


def edit_for_store(cfg: Path, broker_url: str, trace: Path) -> None:
    """What an installer does to the inert example: the ids, a source, the broker."""
    text = cfg.read_text()
    text = text.replace('id = "CHANGE-ME"', 'id = "gw-07"')
    text = text.replace('store = "CHANGE-ME"', 'store = "hb-kiel"')
    text = text.replace('broker = "mqtt://127.0.0.1:1883"', f'broker = "{broker_url}"')
    text = text.replace("[pipeline]", f'[[sources]]\nuri = "replay:{trace}"\n\n[pipeline]', 1)
    text = text.replace("connect_delay_max_s = 10.0", "connect_delay_max_s = 0.0")
    cfg.write_text(text)


def fill_outbox(db: Path, n: int) -> None:
    from gateway.outbox import Outbox

    ob = Outbox(db)
    ob.append(
        [{"schema": 1, "event_id": f"e-{i}", "type": "dwell", "store": "hb-kiel"} for i in range(n)]
    )
    ob.close()


def backlog(db: Path) -> int:
    with sqlite3.connect(db) as c:
        n: int = c.execute("SELECT count(*) FROM events").fetchone()[0]
    return n


def assert_inert(root: Path) -> None:
    """The installed example starts nothing and `check` says what is still to edit."""
    cfg = mapped_config(root)
    chk = shelfgate(root, "check", "--config", str(cfg))
    assert chk.returncode == 1, chk.stdout
    assert 'gateway.id: still the placeholder "CHANGE-ME"' in chk.stdout
    assert 'gateway.store: still the placeholder "CHANGE-ME"' in chk.stdout
    assert "no [[sources]]: nothing to listen to" in chk.stdout
    assert "Traceback" not in chk.stdout + chk.stderr
    run = shelfgate(root, "run", "--config", str(cfg), timeout=30)
    assert run.returncode == 2 and "still the placeholder" in run.stderr  # refuses, no sim
    assert not (root / "var/lib/shelfgate/outbox.db").exists()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path).start()
    yield b
    b.stop()


def test_deb_install_check_upgrade_keeps_outbox_purge(
    built: dict[str, Path], tmp_path: Path, broker: Broker
) -> None:
    root = fresh_root(tmp_path / "root")
    before = tree(root)
    dpkg(root, "-i", str(built["deb1"]))

    # user, groups (bluetooth created: it was missing), directories, generated secrets
    users, groups = entries(root, "passwd"), entries(root, "group")
    assert users["shelfgate"][6] == "/usr/sbin/nologin"
    for g in ("bluetooth", "dialout"):
        assert "shelfgate" in groups[g][3].split(","), groups[g]
    data, etc = root / "var/lib/shelfgate", root / "etc/shelfgate"
    if AS_ROOT:
        assert data.stat().st_uid == int(users["shelfgate"][2])
        assert etc.stat().st_gid == int(groups["shelfgate"][2])
    assert data.stat().st_mode & 0o777 == 0o750 and etc.stat().st_mode & 0o777 == 0o750
    secret = (etc / "secret").read_text()
    assert len(secret.strip()) >= 40 and (etc / "secret").stat().st_mode & 0o777 == 0o640
    conffiles = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f=${Conffiles}", "shelfgate"],
        capture_output=True,
        text=True,
    ).stdout
    assert "/etc/shelfgate/gateway.toml" in conffiles and "/etc/shelfgate/layout.toml" in conffiles
    assert os.readlink(root / "usr/bin/shelfgate") == "/opt/shelfgate/venv/bin/shelfgate"

    assert_inert(root)

    # the installer edits it: check from the installed venv says all good (broker included)
    trace = tmp_path / "empty.jsonl"
    trace.write_text("")
    edit_for_store(etc / "gateway.toml", broker.url, trace)
    edited = (etc / "gateway.toml").read_text()
    chk = shelfgate(root, "check", "--config", str(mapped_config(root)))
    assert chk.returncode == 0, chk.stdout
    assert "connected and accepted" in chk.stdout and "all good" in chk.stdout

    # an outbox with events not yet delivered; then the upgrade
    fill_outbox(data / "outbox.db", 250)
    dpkg(root, "-i", str(built["deb2"]))
    version = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f=${Version}", "shelfgate"],
        capture_output=True,
        text=True,
    ).stdout
    assert version == "0.1.0-2"
    assert (etc / "gateway.toml").read_text() == edited  # the edited conffile is kept
    assert (etc / "secret").read_text() == secret
    assert backlog(data / "outbox.db") == 250
    st = shelfgate(root, "status", "--data-dir", str(data))  # the new venv reads the outbox
    assert st.returncode == 0 and "250 events" in st.stdout, st.stdout

    # remove: the program goes, config, secrets, outbox and user stay
    dpkg(root, "-r", "shelfgate")
    assert not (root / "opt/shelfgate").exists() and not (root / "usr/bin/shelfgate").exists()
    assert (etc / "gateway.toml").read_text() == edited and backlog(data / "outbox.db") == 250
    assert "shelfgate" in entries(root, "passwd")

    # purge: nothing of it is left
    dpkg(root, "-P", "shelfgate")
    assert not etc.exists() and not data.exists()
    assert "shelfgate" not in entries(root, "passwd")
    assert "shelfgate" not in entries(root, "group")
    assert tree(root) - before <= {"var/lib", "var", "etc/systemd", "lib", "lib/systemd"} | {
        p for p in tree(root) if Path(root / p).is_dir() and not any((root / p).iterdir())
    }


def test_offline_bundle_install_upgrade_purge(
    built: dict[str, Path], tmp_path: Path, broker: Broker
) -> None:
    root = fresh_root(tmp_path / "root")
    before = tree(root)
    with tarfile.open(built["bundle"]) as t:
        t.extractall(tmp_path / "b", filter="data")
    (script,) = (tmp_path / "b").glob("shelfgate-*/install.sh")

    def install(*args: str) -> None:
        res = subprocess.run(
            as_root([str(script), "--root", str(root), *args]),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stdout + res.stderr

    install()
    assert "shelfgate" in entries(root, "passwd")
    assert (root / "etc/systemd/system/shelfgate.service").is_file()
    assert_inert(root)
    trace = tmp_path / "empty.jsonl"
    trace.write_text("")
    etc, data = root / "etc/shelfgate", root / "var/lib/shelfgate"
    edit_for_store(etc / "gateway.toml", broker.url, trace)
    edited = (etc / "gateway.toml").read_text()
    fill_outbox(data / "outbox.db", 40)

    install()  # the upgrade: same bundle again
    assert (etc / "gateway.toml").read_text() == edited
    assert (etc / "gateway.toml.example").is_file()  # this version's example, beside it
    assert backlog(data / "outbox.db") == 40
    chk = shelfgate(root, "check", "--config", str(mapped_config(root)))
    assert chk.returncode == 0, chk.stdout

    install("--purge")
    assert "shelfgate" not in entries(root, "passwd")
    left = {p for p in tree(root) - before if not (root / p).is_dir()}
    assert not left, left
