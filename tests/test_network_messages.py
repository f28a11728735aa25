"""Networked receivers' messages, decoded: recorded messages of each format (cited) resolve to the
tag a radio would have named from the same frame, through the one resolver; anything else is a
`Malformed` reason, never another exception."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.network.messages import Malformed, decode_espresense, decode_theengs
from positioning.tags import TagResolver

BLUECHARM = "ibeacon:426c7565-4368-6172-6d42-6561636f6e73:3838:4949"

# Theengs Decoder's own test inputs (theengs/decoder tests/BLE/test_ble.cpp, test_mfgdata:
# "BlueCharm_135727" and "NRF51822"), as Theengs Gateway publishes them with publish_all /
# publish_advdata: the raw manufacturer data, company id first, little endian.
THEENGS_RAW = [
    (
        b'{"id":"DD:88:00:00:1E:3E","name":"BlueCharm_135727","rssi":-67,'
        b'"manufacturerdata":"4c000215426c7565436861726d426561636f6e730efe1355c5"}',
        BLUECHARM,
    ),
    (
        b'{"id":"C8:FD:19:4A:55:00","name":"NRF51822","rssi":-80,'
        b'"manufacturerdata":"4c000215fda50693a4e24fb1afcfc6eb07647825000100021a"}',
        "ibeacon:fda50693-a4e2-4fb1-afcf-c6eb07647825:1:2",
    ),
    # the same beacon's Eddystone-UID frame (its advertisement as recorded in AOSP's
    # ScanManager tests, RECORD_UID "...1716AAFE00EE626C...") with Theengs' 16-bit uuid
    # (bleak's uuid[4:8]) and OpenMQTTGateway's NimBLE spelling ("0xfeaa")
    (
        b'{"id":"DD:88:00:00:1E:3E","rssi":-70,"servicedatauuid":"feaa",'
        b'"servicedata":"00ee626c7565636861726d310000000000010000"}',
        "eddystone:626c7565636861726d31:000000000001",
    ),
    (
        b'{"id":"dd:88:00:00:1e:3e","rssi":-70,"servicedatauuid":"0xfeaa","txpower":-12,'
        b'"servicedata":"00ee626c7565636861726d310000000000010000","time":1234.5}',
        "eddystone:626c7565636861726d31:000000000001",
    ),
    # Theengs Decoder's decoded iBeacon (expected_mfg of the same test) with the id and rssi
    # the gateway adds: no raw data left, the frame is rebuilt from uuid/major/minor
    (
        b'{"id":"DD:88:00:00:1E:3E","rssi":-71,"brand":"GENERIC","model":"iBeacon",'
        b'"model_id":"IBEACON","type":"BCON","mfid":"4c00",'
        b'"uuid":"426c7565436861726d426561636f6e73","major":3838,"minor":4949,"txpower":-59}',
        BLUECHARM,
    ),
    # OpenMQTTGateway's documentation (docs/use/ble.md): service data without its uuid, from
    # a device that is no beacon
    (
        b'{"id":"45:e1:74:12:6e:00","rssi":-89,"distance":21.51847,'
        b'"servicedata":"fe0000000000000000000000000000000000000000"}',
        None,
    ),
]

# ESPresense: a recorded message of the same BlueCharm beacon (a public project's test fixture,
# `espresense/devices/<id>/office`), with the fields ESPresense/ESPresense
# lib/BleFingerprint/BleFingerprint.cpp fill() writes; then the id schemes of its
# fingerprintManufactureData / fingerprintServiceData, for the same beacon's frames
ESPRESENSE = [
    (
        b'{"mac":"dd8800003777","id":"iBeacon:426c7565-4368-6172-6d42-6561636f6e73-3838-4949",'
        b'"rssi@1m":-59,"rssi":-81.10,"rxAdj":0,"rssiVar":7.42,"distance":6.58,"var":4.00,'
        b'"int":2028}',
        BLUECHARM,
        -81,
    ),
    # the firmware prints Eddystone namespace byte 4 twice ("...6563 63 68...")
    (
        b'{"mac":"dd8800001e3e","id":"eddy:626c756563636861726d31-000000000001",'
        b'"rssi@1m":-62,"rssi":-70.4,"rxAdj":-3,"int":1000}',
        "eddystone:626c7565636861726d31:000000000001",
        -73,
    ),
    (
        b'{"mac":"c1a5ff023991","id":"altBeacon:2f234454-cf6d-4a0f-adf2-f4911ba9ffa6-1-2",'
        b'"rssi@1m":-65,"rssi":-58.4,"rxAdj":0,"rssiVar":2.67,"distance":2.18,"int":2560}',
        "altbeacon:2f234454-cf6d-4a0f-adf2-f4911ba9ffa6:1:2",
        -58,
    ),
    (
        b'{"mac":"eeede852bd0b","id":"known:eeede852bd0b","rssi@1m":-71,"rssi":-37.1,'
        b'"rxAdj":0,"close":true,"int":1101}',
        None,
        -37,
    ),
]


@pytest.mark.parametrize(("payload", "tag"), THEENGS_RAW)
def test_theengs_messages_resolve_like_the_radio_frame(payload: bytes, tag: str | None) -> None:
    heard = decode_theengs(orjson.loads(payload))
    assert TagResolver().resolve(heard.mfg, heard.svc, heard.address) == tag


@pytest.mark.parametrize(("payload", "tag", "rssi"), ESPRESENSE)
def test_espresense_ids_become_the_frames_they_name(
    payload: bytes, tag: str | None, rssi: int
) -> None:
    heard = decode_espresense(orjson.loads(payload))
    assert TagResolver().resolve(heard.mfg, heard.svc, heard.address) == tag
    assert heard.rssi == rssi  # rssi + rxAdj: the level the radio heard


def test_a_registered_address_reaches_the_resolver_from_both_formats() -> None:
    resolver = TagResolver(["EE:ED:E8:52:BD:0B"])
    e = decode_espresense(orjson.loads(ESPRESENSE[3][0]))
    t = decode_theengs({"id": "ee:ed:e8:52:bd:0b", "rssi": -60})
    assert resolver.resolve(e.mfg, e.svc, e.address) == "mac:EE:ED:E8:52:BD:0B"
    assert resolver.resolve(t.mfg, t.svc, t.address) == "mac:EE:ED:E8:52:BD:0B"


@pytest.mark.parametrize(
    "obj",
    [
        [1, 2],
        {"rssi": -60},
        {"id": "AA", "rssi": "strong"},
        {"id": "AA", "rssi": 300},
        {"id": "AA", "rssi": True},
        {"id": "AA", "rssi": -60, "manufacturerdata": "4c0"},
        {"id": "AA", "rssi": -60, "manufacturerdata": "zz00"},
        {"id": "AA", "rssi": -60, "manufacturerdata": "4c" * 600},
        {"id": "AA", "rssi": -60, "servicedatauuid": "nope", "servicedata": "00"},
        {"id": "AA", "rssi": -60, "model_id": "IBEACON", "uuid": "00", "major": 1, "minor": 2},
    ],
)
def test_malformed_theengs_messages_say_why(obj: Any) -> None:
    with pytest.raises(Malformed):
        decode_theengs(obj)


@pytest.mark.parametrize(
    "obj",
    [
        {"id": "iBeacon:426c7565-4368-6172-6d42-6561636f6e73-3838-4949"},
        {"id": "iBeacon:426c7565-4368-6172-6d42-6561636f6e73-99999-1", "rssi": -60},
        {"id": "iBeacon:426c7565-4368-6172-6d42-6561636f6e7g-1-1", "rssi": -60},
        {"id": "eddy:626c756563646861726d31-000000000001", "rssi": -60},
        {"id": "x", "rssi": float("nan")},
    ],
)
def test_malformed_espresense_messages_say_why(obj: Any) -> None:
    with pytest.raises(Malformed):
        decode_espresense(obj)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
message_like = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values | st.sampled_from(["iBeacon:", "eddy:", "altBeacon:x-1-2"]),
        "rssi": json_values,
        "rxAdj": json_values,
        "rssi@1m": json_values,
        "manufacturerdata": json_values | st.binary(max_size=30).map(bytes.hex),
        "servicedata": json_values,
        "servicedatauuid": json_values | st.sampled_from(["feaa", "0xfeaa"]),
        "model_id": st.just("IBEACON"),
        "uuid": json_values,
        "major": json_values,
        "minor": json_values,
        "mac": json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(message_like | json_values)
def test_any_json_gives_a_reading_or_malformed(obj: Any) -> None:
    for decode in (decode_theengs, decode_espresense):
        try:
            heard = decode(obj)
        except Malformed:
            continue
        assert -127 <= heard.rssi <= 20
        TagResolver().resolve(heard.mfg, heard.svc, heard.address)


def test_a_node_named_like_a_local_radio_is_not_counted_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import time

    from drivers.network.source import NetworkSource
    from drivers.registry import open_sources
    from drivers.source import PlainSpec, SourceContext
    from gateway.layoutfile import load_layout

    from .conftest import ROOT

    layout = load_layout(str(ROOT / "config" / "layout.toml"))
    ctx = SourceContext(layout, time.monotonic, TagResolver())
    radio = "serial:loop://?protocol=bgapi&rx=rx01"  # pyserial's loopback: nothing opened
    srcs = open_sources([radio, PlainSpec("theengs:mqtt://127.0.0.1:1883")], ctx)
    net = srcs[1]
    assert isinstance(net, NetworkSource)
    assert net.guard.taken == {"rx01": radio}
    for _ in range(3):
        assert net.guard.admit("rx01", b"{}", 0.0) is None
    assert net.guard.admit("rx02", b"{}", 0.0) is not None
    assert net.guard.shadowed == {"rx01": 3}
    assert sum("fed by serial:loop" in r.getMessage() for r in caplog.records) == 1
