"""The serial port's owner: open, configure, read, decode, reopen, on its own thread.

A receiver kind is a decoder plus a configure step (the table `KINDS`). The thread stamps each
read with the monotonic clock, builds the readings and hands them over with `deliver`, nothing
else. A port that vanishes (unplugged, reset) or a module that does not answer is reopened with
full-jitter backoff (0.5 s up to 30 s); the device is configured again each time.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from drivers.advertisement import PositionFix, Reading
from drivers.source import SourceUri
from positioning.errors import InputError

from .bgapi import (
    BGAPI_DISCOVER_OBSERVE,
    BGAPI_END_PROCEDURE,
    BGAPI_FILTERING_DUPLICATES_OFF,
    BGAPI_SCAN_PARAMS,
    BgapiDecoder,
)
from .dwm1001 import DwmDecoder, UwbFix
from .nina import NinaDecoder

log = logging.getLogger(__name__)

PROTOCOLS = ("bgapi", "nina", "dwm1001")
NINA_SCAN = b"AT+UBTD=4,1,30000\r"  # all adverts, active, 30 s (at most 40 s): re-issued on OK


class SerialReader:
    """Owns the port: open, configure, read, decode, reopen. Runs on its own thread."""

    def __init__(
        self,
        uri: SourceUri,
        receiver: str,
        mono: Callable[[], float],
        deliver: Callable[[list[Reading]], None],
    ) -> None:
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
        self.baud = uri.integer("baud", 115200)
        self.firmware = uri.integer("firmware", 2)
        self.receiver = receiver
        self.uwb_tag = p.get("tag", f"uwb:{receiver}")
        self._mono = mono
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
            return BgapiDecoder(self.receiver)
        if self.protocol == "nina":
            return NinaDecoder(self.firmware, self.receiver)
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
                delay = self.backoff(attempt)
                log.warning("serial %s: cannot open (%s); retrying in %.1f s", self.port, e, delay)
                self._stop.wait(delay)
                continue
            self.opens += 1
            dec = self._decoder()
            try:
                self._configure(ser)
                while not self._stop.is_set():
                    data = ser.read(4096)
                    if not data:
                        continue
                    t = self._mono()
                    attempt = 0  # the device talks: the next failure starts the backoff anew
                    items = dec.feed(data, t)
                    if isinstance(dec, NinaDecoder) and dec.scan_done:
                        dec.scan_done = 0
                        ser.write(NINA_SCAN)  # the scan period ended: never let scanning lapse
                    if items:
                        self._deliver(self._readings(items, t))
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
                attempt += 1
                self._stop.wait(self.backoff(attempt))

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(30, 0.5 * 2**attempt)] seconds."""
        return self.rng.uniform(0.0, min(30.0, 0.5 * 2 ** min(attempt, 16)))

    def _readings(self, items: list[Any], t: float) -> list[Reading]:
        if self.protocol == "dwm1001":  # the module on a cart locates itself: positions
            rx = self.receiver
            return [
                PositionFix(rx, self.uwb_tag, f.x, f.y, t, f.quality, f.z, f.anchors)
                for f in items
                if isinstance(f, UwbFix)
            ]
        return items  # the decoders made Advertisements of this receiver at time t


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
