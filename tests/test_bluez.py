"""bleak's real BlueZ backend on a private D-Bus system bus with python-dbusmock's bluez5 template."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

dbus = pytest.importorskip("dbus")
dbusmock = pytest.importorskip("dbusmock")
if shutil.which("dbus-daemon") is None:
    pytest.skip("dbus-daemon is not installed", allow_module_level=True)

from drivers.advertisement import Advertisement  # noqa: E402
from drivers.bluez import BluezSource, RadioUnavailable  # noqa: E402
from drivers.registry import parse_uri  # noqa: E402
from drivers.source import SourceContext  # noqa: E402
from gateway.layoutfile import scan_layout  # noqa: E402
from positioning.frames import ibeacon_payload  # noqa: E402
from positioning.tags import TagResolver  # noqa: E402

UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"
TAG = f"ibeacon:{UUID}:1:7"
DEV_PATH = "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF"


@pytest.fixture
def system_bus() -> Iterator[str]:
    """A private system bus (python-dbusmock writes a permissive config and sets
    DBUS_SYSTEM_BUS_ADDRESS, which bleak honours)."""
    old = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    dbusmock.DBusTestCase.start_system_bus()
    try:
        yield os.environ["DBUS_SYSTEM_BUS_ADDRESS"]
    finally:
        dbusmock.DBusTestCase.tearDownClass()
        if old is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = old


@pytest.fixture
def bluez(system_bus: str, tmp_path: Path) -> Iterator[tuple[object, Path]]:
    log = tmp_path / "bluez-mock.log"
    with open(log, "w") as fh:
        proc, obj = dbusmock.DBusTestCase.spawn_server_template(
            "bluez5", {}, stdout=fh, system_bus=True
        )
    try:
        yield obj, log
    finally:
        proc.terminate()
        proc.wait(5)


def add_ibeacon(bus_obj: object, rssi: int) -> None:
    mfg = dbus.Dictionary(
        {dbus.UInt16(0x004C): dbus.Array(ibeacon_payload(UUID, 1, 7), signature="y")},
        signature="qv",
    )
    props = dbus.Dictionary(
        {
            "Address": "AA:BB:CC:DD:EE:FF",
            "AddressType": "random",
            "Alias": "phone",
            "Adapter": dbus.ObjectPath("/org/bluez/hci0"),
            "RSSI": dbus.Int16(rssi),
            "ManufacturerData": mfg,
            "ServiceData": dbus.Dictionary({}, signature="sv"),
            "UUIDs": dbus.Array([], signature="s"),
            "Paired": False,
            "Connected": False,
            "Trusted": False,
            "Blocked": False,
            "LegacyPairing": False,
            "ServicesResolved": False,
        },
        signature="sv",
    )
    dbusmock_iface = dbus.Interface(bus_obj, "org.freedesktop.DBus.Mock")
    dbusmock_iface.AddObject(DEV_PATH, "org.bluez.Device1", props, [])
    dbusmock_iface.EmitSignalDetailed(
        "org.freedesktop.DBus.ObjectManager",
        "InterfacesAdded",
        "oa{sa{sv}}",
        [
            dbus.ObjectPath(DEV_PATH),
            dbus.Dictionary({"org.bluez.Device1": props}, signature="sa{sv}"),
        ],
        {"path": "/"},
    )


def rssi_update(bus: object, rssi: int) -> None:
    dev = bus.get_object("org.bluez", DEV_PATH)  # type: ignore[attr-defined]
    dbus.Interface(dev, "org.freedesktop.DBus.Mock").EmitSignal(
        "org.freedesktop.DBus.Properties",
        "PropertiesChanged",
        "sa{sv}as",
        [
            "org.bluez.Device1",
            dbus.Dictionary({"RSSI": dbus.Int16(rssi)}, signature="sv"),
            dbus.Array([], signature="s"),
        ],
    )


def source(params: str = "") -> BluezSource:
    """A bluez source on hci0 as receiver rx01 (URI parameters `params`)."""
    ctx = SourceContext(
        scan_layout("rx01"), lambda: asyncio.get_running_loop().time(), TagResolver()
    )
    return BluezSource(parse_uri(f"bluez:hci0?rx=rx01&{params}"), ctx)


def sightings(batch: list[Advertisement]) -> list[tuple[str | None, int, float, float]]:
    """The advertisements as the pipeline sees them: (tag from the frame, receiver index, rssi, t)."""
    resolver = TagResolver()
    return [(resolver.resolve(a.mfg, a.svc, a.address), 0, float(a.rssi), a.t) for a in batch]


def test_ibeacon_and_rssi_updates_reach_the_pipeline(bluez: tuple[object, Path]) -> None:
    obj, log = bluez
    dbus.Interface(obj, "org.bluez.Mock").AddAdapter("hci0", "gateway")
    got: list[tuple[str | None, int, float, float]] = []

    async def main() -> None:
        gen = source("").batches()
        first = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(0.5)
        add_ibeacon(obj, -60)
        got.extend(sightings(await asyncio.wait_for(first, 5)))
        bus = dbus.SystemBus()
        for r in (-65, -70):
            rssi_update(bus, r)
            got.extend(sightings(await asyncio.wait_for(gen.__anext__(), 5)))
        await gen.aclose()

    asyncio.run(main())
    assert [(g[0], g[1], g[2]) for g in got][:3] == [
        (TAG, 0, -60.0),
        (TAG, 0, -65.0),
        (TAG, 0, -70.0),
    ]
    calls = log.read_text()
    assert "SetDiscoveryFilter" in calls and "StartDiscovery" in calls and "StopDiscovery" in calls


def test_silent_scanner_is_restarted(bluez: tuple[object, Path]) -> None:
    obj, log = bluez
    dbus.Interface(obj, "org.bluez.Mock").AddAdapter("hci0", "gateway")

    async def main() -> None:
        gen = source("silence_s=1&check_s=0.5").batches()
        task = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(3.0)
        task.cancel()

    asyncio.run(main())
    assert log.read_text().count("StartDiscovery") >= 2  # the silent scan was restarted


def test_missing_adapter_is_a_clear_error(system_bus: str, tmp_path: Path) -> None:
    with open(tmp_path / "log", "w") as fh:
        proc, _ = dbusmock.DBusTestCase.spawn_server_template(
            "bluez5", {}, stdout=fh, system_bus=True
        )
    try:

        async def main() -> None:
            src = source()
            await src.batches().__anext__()

        with pytest.raises(RadioUnavailable, match="adapter hci0 was not found"):
            asyncio.run(main())
    finally:
        proc.terminate()
        proc.wait(5)


def test_daemon_exits_nonzero_when_the_radio_is_missing(system_bus: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    with open(tmp_path / "log", "w") as fh:
        proc, _ = dbusmock.DBusTestCase.spawn_server_template(
            "bluez5", {}, stdout=fh, system_bus=True
        )
    try:
        root = Path(__file__).parent.parent
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "run",
                "--source",
                "bluez:hci0?rx=rx01",
                "--data-dir",
                str(tmp_path / "data"),
                "--broker",
                "mqtt://127.0.0.1:9",
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": system_bus},
        )
        assert res.returncode == 2  # systemd's Restart=always takes over
        assert "the adapter hci0 was not found" in res.stderr
    finally:
        proc.terminate()
        proc.wait(5)


def test_passive_scan_with_beacon_patterns(bluez: tuple[object, Path]) -> None:
    obj, log = bluez
    dbus.Interface(obj, "org.bluez.Mock").AddAdapter("hci0", "gateway")
    got: list[tuple[str | None, int, float, float]] = []

    async def main() -> None:
        gen = source("mode=passive").batches()
        first = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(0.5)
        add_ibeacon(obj, -61)
        got.extend(sightings(await asyncio.wait_for(first, 5)))
        await gen.aclose()

    asyncio.run(main())
    assert got[0][:3] == (TAG, 0, -61.0)
    assert "RegisterMonitor" in log.read_text()  # an advertisement monitor with our patterns


def test_silent_radio_escalates_restart_power_cycle_then_gives_up(
    bluez: tuple[object, Path],
) -> None:
    """Silence: three scan restarts, then the adapter is powered off and on, then the source
    fails with RadioUnavailable (the daemon exits and systemd restarts it)."""
    obj, log = bluez
    dbus.Interface(obj, "org.bluez.Mock").AddAdapter("hci0", "gateway")

    async def main() -> None:
        gen = source("silence_s=0.5&check_s=0.3").batches()
        with pytest.raises(RadioUnavailable, match="power cycle; exiting so systemd restarts"):
            await asyncio.wait_for(gen.__anext__(), 30)

    asyncio.run(main())
    calls = log.read_text()
    assert calls.count("StartDiscovery") >= 5  # first start, three restarts, after the power cycle
    powered = [ln for ln in calls.splitlines() if "Set" in ln and "Powered" in ln]
    assert len(powered) == 2 and "False" in powered[0] and "True" in powered[1], powered
