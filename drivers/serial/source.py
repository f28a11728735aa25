"""Serial receivers (pyserial) as a source: BLED112 (BGAPI), u-blox NINA (AT), DWM1001 (UWB).

URI: `serial:/dev/serial/by-id/usb-...?protocol=bgapi&rx=rx03[&baud=115200][&firmware=3]`
(also pyserial URLs: `serial:socket://host:port?...`, `serial:loop://?...`). Prefer the stable
/dev/serial/by-id/ path: USB re-plugs renumber /dev/ttyACM*. A DWM1001 on a cart reports its own
position (`&tag=<id>`, default `uwb:<rx>`); its `rx` need not be a receiver of the layout.

One reader thread per port (`reader.SerialReader`) does the blocking IO; its batches cross into
the event loop with `call_soon_threadsafe`, nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from drivers.advertisement import Reading
from drivers.source import SourceContext, SourceUri
from positioning.errors import InputError

from .reader import SerialReader

QUEUE_BATCHES = 1000


class SerialSource:
    live = True

    def __init__(self, uri: SourceUri, ctx: SourceContext) -> None:
        self.uri = uri
        self.name = uri.text
        SerialReader(uri, "", ctx.mono, lambda items: None)  # validates protocol and port first
        if uri.params.get("protocol") == "dwm1001":
            rx = uri.params.get("rx")
            if rx is None:
                raise InputError(uri.text, "rx", "expected rx=<the UWB module's id>")
            self.feeds: str | None = None  # a UWB module locates a tag, it hears no RSSI
        else:
            rx = ctx.receiver(uri)
            self.feeds = rx
        self.receiver = rx
        self._mono = ctx.mono

    async def batches(self) -> AsyncIterator[list[Reading]]:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[list[Reading]] = asyncio.Queue(maxsize=QUEUE_BATCHES)

        def deliver(items: list[Reading]) -> None:  # reader thread: hand over, nothing else
            loop.call_soon_threadsafe(_put, q, items)

        reader = SerialReader(self.uri, self.receiver, self._mono, deliver)
        reader.start()
        try:
            while True:
                yield await q.get()
        finally:
            await loop.run_in_executor(None, reader.stop)


def _put(q: asyncio.Queue[list[Reading]], items: list[Reading]) -> None:
    if q.full():
        q.get_nowait()  # the pipeline is behind: drop the oldest batch rather than grow
    q.put_nowait(items)
