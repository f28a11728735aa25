"""The Pi's own radio (or any HCI dongle) through bleak on BlueZ.

URI: `bluez:hci0[?mode=active|passive][&silence_s=90][&check_s=30]`

- Active scanning asks BlueZ for every advertisement (`DuplicateData`), not only the first per
  device: RSSI tracking needs them all.
- Passive scanning needs BlueZ's experimental features and explicit patterns: one per configured
  beacon kind (iBeacon prefix for Apple, AltBeacon code, Eddystone service data).
- Watchdog: BlueZ scans stop silently after hours (several upstream reports). No advertisement
  for `silence_s` (checked every `check_s`) restarts the scan; three restarts in a row without
  traffic power-cycle the adapter; if that brings nothing either, the source fails and the daemon
  exits non-zero, so systemd restarts the service. Scanning is never duty-cycled.

The detection callback runs on the event loop: it only appends an `Advertisement` (stamped
with the monotonic clock) to a list; tags are resolved later, in the pipeline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from positioning.errors import ShelfgateError

from .advertisement import Advertisement
from .source import SourceContext, SourceUri

BATCH_S = 0.2  # how long advertisements gather before they go to the pipeline

log = logging.getLogger(__name__)


class RadioUnavailable(ShelfgateError):
    pass


class BluezScanner:
    """Start/stop/restart of a bleak scanner with the watchdog; feeds Advertisements to `sink`."""

    def __init__(
        self,
        uri: SourceUri,
        receiver: str,
        sink: Callable[[Advertisement], None],
        mono: Callable[[], float],
    ) -> None:
        p = uri.params
        self.adapter = uri.path or "hci0"
        self.mode = p.get("mode", "active")
        if self.mode not in ("active", "passive"):
            raise ShelfgateError(
                f"bluez:{self.adapter}: mode: expected active or passive, got {self.mode!r}"
            )
        self.silence_s = uri.number("silence_s", 90.0)
        self.check_s = uri.number("check_s", 30.0)
        self.receiver = receiver
        self._sink = sink
        self._mono = mono
        self._scanner: Any = None
        self.last_seen = mono()
        self.restarts = 0
        self.power_cycles = 0

    def _callback(self, device: Any, adv: Any) -> None:
        t = self.last_seen = self._mono()
        self._sink(
            Advertisement(
                self.receiver,
                device.address,
                int(adv.rssi),
                adv.manufacturer_data,
                adv.service_data,
                t,
                adv.tx_power,
                adv.local_name,
            )
        )

    def _make(self) -> Any:
        from bleak import BleakScanner

        if self.mode == "passive":
            from bleak.args.bluez import OrPattern
            from bleak.assigned_numbers import AdvertisementDataType

            patterns: list[Any] = [
                OrPattern(
                    0, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA, b"\x4c\x00\x02\x15"
                ),  # iBeacon
                OrPattern(
                    2, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA, b"\xbe\xac"
                ),  # AltBeacon
                OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\xaa\xfe"),  # Eddystone
            ]
            return BleakScanner(
                self._callback,
                scanning_mode="passive",
                bluez={"adapter": self.adapter, "or_patterns": patterns},
            )
        return BleakScanner(
            self._callback,
            scanning_mode="active",
            bluez={"adapter": self.adapter, "filters": {"DuplicateData": True}},
        )

    async def start(self) -> None:
        from bleak.exc import BleakBluetoothNotAvailableError, BleakError

        try:
            self._scanner = self._make()
            await self._scanner.start()
        except BleakBluetoothNotAvailableError as e:
            raise RadioUnavailable(
                f"bluez:{self.adapter}: Bluetooth is not available ({e}); check that the adapter exists "
                "(hciconfig / bluetoothctl list), is powered (rfkill unblock bluetooth), and that the "
                "service user may use BlueZ over D-Bus (group bluetooth)"
            ) from None
        except (BleakError, OSError) as e:
            if "not found" in str(e):
                raise RadioUnavailable(
                    f"bluez:{self.adapter}: the adapter {self.adapter} was not found; list adapters with "
                    "`bluetoothctl list` (a USB dongle may be hci1)"
                ) from None
            raise RadioUnavailable(f"bluez:{self.adapter}: cannot start scanning: {e}") from None
        self.last_seen = self._mono()
        log.info("bluez:%s scanning (%s)", self.adapter, self.mode)

    async def stop(self) -> None:
        if self._scanner is not None:
            try:
                await self._scanner.stop()
            except Exception:
                log.debug("stopping the scanner failed", exc_info=True)
            self._scanner = None

    async def _power_cycle(self) -> None:
        from dbus_fast import BusType, Variant
        from dbus_fast.aio import MessageBus

        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            path = f"/org/bluez/{self.adapter}"
            intro = await bus.introspect("org.bluez", path)
            props = bus.get_proxy_object("org.bluez", path, intro).get_interface(
                "org.freedesktop.DBus.Properties"
            )
            await props.call_set("org.bluez.Adapter1", "Powered", Variant("b", False))  # type: ignore[attr-defined]
            await asyncio.sleep(1.0)
            await props.call_set("org.bluez.Adapter1", "Powered", Variant("b", True))  # type: ignore[attr-defined]
        finally:
            bus.disconnect()

    async def watchdog(self) -> None:
        """Restart a silent scan; power-cycle the adapter; give up (raise) if nothing helps."""
        silent_checks = 0
        while True:
            await asyncio.sleep(self.check_s)
            if self._mono() - self.last_seen < self.silence_s:
                silent_checks = 0
                continue
            silent_checks += 1
            if silent_checks <= 3:
                self.restarts += 1
                log.warning(
                    "bluez:%s silent for %.0f s: restarting the scan",
                    self.adapter,
                    self._mono() - self.last_seen,
                )
            elif silent_checks == 4:
                self.power_cycles += 1
                log.error("bluez:%s still silent: power-cycling the adapter", self.adapter)
                await self.stop()
                try:
                    await self._power_cycle()
                except Exception as e:
                    log.error("power-cycling %s failed: %s", self.adapter, e)
            else:
                raise RadioUnavailable(
                    f"bluez:{self.adapter}: no advertisement for {self._mono() - self.last_seen:.0f} s despite "
                    "scan restarts and an adapter power cycle; exiting so systemd restarts the service"
                )
            await self.stop()
            await self.start()
            self.last_seen = self._mono() - self.silence_s + self.check_s  # give it one period


class BluezSource:
    """The Pi's radio: `bluez:hci0`; it feeds the layout receiver `rx=` (default: the adapter's
    name, for a layout whose receiver is called hci0)."""

    live = True

    def __init__(self, uri: SourceUri, ctx: SourceContext) -> None:
        self.uri = uri
        self.name = uri.text
        self.feeds = ctx.receiver(uri, uri.path or "hci0")
        self._mono = ctx.mono
        BluezScanner(uri, self.feeds, lambda adv: None, ctx.mono)  # validates the URI now

    async def batches(self) -> AsyncIterator[list[Advertisement]]:
        pending: list[Advertisement] = []
        scanner = BluezScanner(self.uri, self.feeds, pending.append, self._mono)
        await scanner.start()
        dog = asyncio.create_task(scanner.watchdog())
        try:
            while True:
                await asyncio.sleep(BATCH_S)
                if dog.done():
                    dog.result()  # raises RadioUnavailable
                if pending:
                    batch = pending[:]
                    pending.clear()
                    yield batch
        finally:
            dog.cancel()
            await scanner.stop()
