"""The web app's memory of live input: bounded rings, and the pipeline's read-only tap."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from drivers.advertisement import Advertisement
from drivers.trace.reader import SightingBlock
from gateway.assembly import build_pipeline
from gateway.clock import FakeClock
from gateway.config import GatewayConfig
from gateway.layoutfile import load_layout
from gateway.web.history import LiveRecorder, Ring

from .web_helpers import LAYOUT

FRAME = {76: bytes.fromhex("0215F7826DA64FA24E988024BC5B71E0893E00010007C5")}
TAG = "ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e:1:7"


@given(st.lists(st.integers(0, 20), max_size=12), st.integers(1, 16))
def test_ring_keeps_the_newest_rows_in_order(chunks: list[int], rows: int) -> None:
    ring = Ring(rows, {"v": (np.int64, 1), "key": (np.int64, 1)})
    written: list[int] = []
    for n in chunks:
        vals = list(range(len(written), len(written) + n))
        ring.append(v=vals, key=[v % 2 for v in vals])
        written += vals
    kept = written[-rows:] if written else []
    assert ring.cols["v"][ring.select("key", 0)].tolist() == [v for v in kept if v % 2 == 0]
    assert ring.cols["v"][ring.select("key", 1)].tolist() == [v for v in kept if v % 2 == 1]


def test_the_tap_sees_live_readings_only() -> None:
    layout = load_layout(str(LAYOUT))
    clock = FakeClock()
    p = build_pipeline(GatewayConfig(), layout, None, clock=clock)
    rec = LiveRecorder(p, rssi_rows=64)
    p.tap = rec
    ads = (
        [
            Advertisement("rx01", "AA:BB:CC:DD:EE:FF", -60 - k % 3, FRAME, {}, 1000.0 + k * 0.1)
            for k in range(30)
        ]
        + [
            Advertisement("rx03", "AA:BB:CC:DD:EE:FF", -75 - k, FRAME, {}, 1000.05 + k * 0.2)
            for k in range(10)
        ]
        + [Advertisement("rx02", "11:22:33:44:55:66", -80, {}, {}, 1003.0)]
    )  # not a tag
    ads.sort(key=lambda a: a.t)  # reception order
    p.feed(ads)
    i1, i2 = p.tracker.rx_index["rx01"], p.tracker.rx_index["rx02"]
    assert rec.adverts[i1] == 30 and rec.adverts[i2] == 1  # every advert counts for health
    assert (
        rec.last_heard[i1] == ads[-1].t
    )  # the batch's last reading: when its receivers were heard
    h = rec.history(TAG, 0.0)
    t, raw, filt = h.rssi[i1]
    assert len(t) == 30 and raw.tolist() == [a.rssi for a in ads if a.receiver == "rx01"]
    view = p.tag_view(TAG)
    assert view is not None and filt[-1] == np.float32(view.level[i1])
    i3 = p.tracker.rx_index["rx03"]
    _, raw3, filt3 = h.rssi[i3]
    assert raw3.tolist() == [-75.0 - k for k in range(10)] and rec.adverts[i3] == 10
    assert filt3[-1] == np.float32(view.level[i3]) and view.level[i3] != view.level[i1]
    assert abs(float(view.probs.sum()) - 1.0) < 1e-9
    # a trace's blocks (replay) never pass the tap
    blk = SightingBlock([TAG], np.array([i1]), np.array([-50.0]), np.array([2000.0]))
    p.feed_block(blk)
    assert rec.adverts[i1] == 30 and len(rec.history(TAG, 0.0).rssi[i1][0]) == 30
