"""Serial receivers (pyserial): BLED112 (BGAPI), u-blox NINA (AT), DWM1001 (UWB positions).

URI: `serial:/dev/serial/by-id/usb-...?protocol=bgapi&rx=rx03[&baud=115200][&firmware=3]`
(also pyserial URLs: `serial:socket://host:port?...`, `serial:loop://?...`). Prefer the stable
/dev/serial/by-id/ path: USB re-plugs renumber /dev/ttyACM*.

One reader thread per port does the blocking IO and hands decoded batches to the event loop with
`call_soon_threadsafe`, nothing else. A port that vanishes (unplugged, reset) is reopened with
full-jitter backoff (0.5 s up to 30 s); the device is configured again each time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from positioning.errors import InputError

from .base import PositionFix, RadioSource, SourceUri, receiver_of
from .protocols import (
    BGAPI_DISCOVER_OBSERVE,
    BGAPI_END_PROCEDURE,
    BGAPI_FILTERING_DUPLICATES_OFF,
    BGAPI_SCAN_PARAMS,
    BgapiDecoder,
    DwmDecoder,
    NinaDecoder,
    RawAdvert,
    UwbFix,
)

log = logging.getLogger(__name__)

PROTOCOLS = ("bgapi", "nina", "dwm1001")
NINA_SCAN = b"AT+UBTD=4,1,30000\r"  # all adverts, active, 30 s (at most 40 s): re-issued on OK


class SerialReader:
    """Owns the port: open, configure, read, decode, reopen. Runs on its own thread."""

    def __init__(self, uri: SourceUri, deliver: Callable[[list[Any]], None]) -> None:
        p = uri.params
        proto = p.get("protocol", "")
        if proto not in PROTOCOLS:
            raise InputError(
                f"serial:{uri.path}", "protocol", f"expected protocol={'|'.join(PROTOCOLS)}"
            )
        if not uri.path:
            raise InputError(
                "serial:", "path", "expected a port, e.g. serial:/dev/serial/by-id/usb-..."
            )
        self.port = uri.path
        self.protocol = proto
        self.baud = int(p.get("baud", "115200"))
        self.firmware = int(p.get("firmware", "2"))
        self._deliver = deliver
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.opens = 0
        self.rng = random.Random()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"serial {self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(3)

    def _decoder(self) -> BgapiDecoder | NinaDecoder | DwmDecoder:
        if self.protocol == "bgapi":
            return BgapiDecoder()
        if self.protocol == "nina":
            return NinaDecoder(self.firmware)
        return DwmDecoder()

    def _configure(self, ser: Any) -> None:
        if self.protocol == "bgapi":
            for cmd in (
                BGAPI_END_PROCEDURE,
                BGAPI_SCAN_PARAMS,
                BGAPI_FILTERING_DUPLICATES_OFF,
                BGAPI_DISCOVER_OBSERVE,
            ):
                ser.write(cmd)
        elif self.protocol == "nina":
            self._nina_role(ser)
            ser.write(NINA_SCAN)
        else:
            ser.write(b"\r\r")  # enter the PANS shell
            time.sleep(0.2)
            ser.write(b"lec\r")

    def _nina_role(self, ser: Any) -> None:
        """The module must be in the central role (`AT+UBTLE=1`) to scan. Set only when it is
        not: storing (`AT&W`) writes flash, and the role applies after a restart
        (`AT+CPWROFF`, then `+STARTUP`)."""
        if _at(ser, b"AT+UBTLE?", b"+UBTLE:") == b"1":
            return
        log.info(
            "serial %s: setting the NINA module to the central role (stored, restarting)", self.port
        )
        _at(ser, b"AT+UBTLE=1")
        _at(ser, b"AT&W")
        _at(ser, b"AT+CPWROFF", until=b"+STARTUP", timeout=10.0)

    def _run(self) -> None:
        import serial

        attempt = 0
        while not self._stop.is_set():
            try:
                ser = serial.serial_for_url(
                    self.port, baudrate=self.baud, timeout=0.2, rtscts=self.protocol == "nina"
                )
            except (serial.SerialException, OSError, ValueError) as e:
                attempt += 1
                delay = self.rng.uniform(0.0, min(30.0, 0.5 * 2**attempt))
                log.warning("serial %s: cannot open (%s); retrying in %.1f s", self.port, e, delay)
                self._stop.wait(delay)
                continue
            self.opens += 1
            attempt = 0
            dec = self._decoder()
            try:
                self._configure(ser)
                while not self._stop.is_set():
                    data = ser.read(4096)
                    if not data:
                        continue
                    items = dec.feed(data)
                    if isinstance(dec, NinaDecoder) and dec.scan_done:
                        dec.scan_done = 0
                        ser.write(NINA_SCAN)  # the scan period ended: never let scanning lapse
                    if items:
                        self._deliver(items)
            except (serial.SerialException, OSError) as e:
                log.warning("serial %s: lost (%s); reopening", self.port, e)
            finally:
                try:
                    if self.protocol == "bgapi":
                        ser.write(BGAPI_END_PROCEDURE)
                    ser.close()
                except (serial.SerialException, OSError):
                    pass
            if not self._stop.is_set():
                self._stop.wait(self.rng.uniform(0.2, 1.0))


def _at(
    ser: Any, cmd: bytes, value: bytes = b"", until: bytes = b"OK", timeout: float = 3.0
) -> bytes | None:
    """Send an AT command and read lines up to `until` (or ERROR); the text after `value` in the
    answer, if asked. Other lines (a scan still running from before) are skipped."""
    import serial

    ser.write(cmd + b"\r")
    deadline = time.monotonic() + timeout
    buf = b""
    found: bytes | None = None
    while time.monotonic() < deadline:
        buf += ser.read(256)
        *lines, buf = buf.split(b"\n")
        for line in (ln.strip() for ln in lines):
            if value and line.startswith(value):
                found = line[len(value) :].strip()
            elif line.startswith(until):
                return found
            elif line.startswith(b"ERROR"):
                raise serial.SerialException(f"{cmd.decode()} answered ERROR")
    raise serial.SerialException(
        f"no answer to {cmd.decode()} within {timeout:.0f} s (a NINA module at this baud rate, "
        "with RTS/CTS?)"
    )


class SerialSource(RadioSource):
    """Advertisements of one serial receiver, mapped to the layout's receiver `rx`."""

    def __init__(
        self,
        uri: SourceUri,
        rx_index: dict[str, int],
        mono: Callable[[], float],
        tag_of: Callable[[RawAdvert], str | None],
    ) -> None:
        if uri.params.get("protocol") == "dwm1001" and "rx" in uri.params:
            # a UWB module locates a tag, it hears no RSSI
            rx_index = {**rx_index, uri.params["rx"]: -1}
        super().__init__(uri, receiver_of(uri, f"serial:{uri.path}", rx_index), mono, tag_of)

    async def batches(self) -> AsyncIterator[list[Any]]:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[list[Any]] = asyncio.Queue(maxsize=1000)

        def deliver(items: list[Any]) -> None:  # reader thread: hand over, nothing else
            loop.call_soon_threadsafe(_put, q, items)

        reader = SerialReader(self.uri, deliver)
        uwb_tag = self.uri.params.get("tag", f"uwb:{self.uri.params.get('rx')}")
        reader.start()
        try:
            while True:
                items = await q.get()
                t = self._mono()
                if reader.protocol == "dwm1001":
                    # the module on a cart locates itself: positions, not RSSI
                    yield [PositionFix(uwb_tag, f.x, f.y, t, f.quality) for f in items]
                    continue
                out = []
                for adv in items:
                    tag = self._tag_of(adv)
                    if tag is not None:
                        out.append((tag, self.rx, float(adv.rssi), t))
                if out:
                    yield out
        finally:
            await loop.run_in_executor(None, reader.stop)


def _put(q: asyncio.Queue[list[Any]], items: list[Any]) -> None:
    if q.full():
        q.get_nowait()  # the pipeline is behind: drop the oldest batch rather than grow
    q.put_nowait(items)


def advert_json(adv: RawAdvert, rx: str, t: float) -> dict[str, Any]:
    out: dict[str, Any] = {"t": round(t, 3), "rx": rx, "addr": adv.addr, "rssi": adv.rssi}
    if adv.mfg:
        out["mfg"] = {str(k): v.hex() for k, v in adv.mfg.items()}
    if adv.svc:
        out["svc"] = {k: v.hex() for k, v in adv.svc.items()}
    if adv.tx is not None:
        out["tx"] = adv.tx
    if adv.name:
        out["name"] = adv.name
    return out


def fix_json(fix: UwbFix, rx: str, t: float) -> dict[str, Any]:
    return {
        "t": round(t, 3),
        "rx": rx,
        "uwb": {"x": fix.x, "y": fix.y, "z": fix.z, "quality": fix.quality, "anchors": fix.anchors},
    }
