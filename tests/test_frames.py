from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from positioning import frames

UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"


def test_ibeacon_from_hardware_doc_example() -> None:
    # the BLED112 worked example of HARDWARE.md: uuid f7826da6-..., major 1, minor 7, power -59
    data = bytes.fromhex("0215F7826DA64FA24E988024BC5B71E0893E00010007C5")
    assert frames.parse_ibeacon(data) == f"ibeacon:{UUID}:1:7"
    assert frames.tag_id({76: data}, {}) == f"ibeacon:{UUID}:1:7"


def test_ibeacon_only_for_apple_company() -> None:
    data = frames.ibeacon_payload(UUID, 1, 2)
    assert frames.tag_id({117: data}, {}) is None


def test_altbeacon_any_company() -> None:
    data = frames.altbeacon_payload(UUID, 5, 6)
    assert frames.tag_id({0x0118: data}, {}) == f"altbeacon:{UUID}:5:6"


def test_eddystone_uid() -> None:
    data = frames.eddystone_uid_payload("5368656c666761746521", "00000000002a")
    tag = frames.tag_id({}, {frames.EDDYSTONE_UUID: data})
    assert tag == "eddystone:5368656c666761746521:00000000002a"
    # TLM / URL frames (first byte != 0) are not tags
    assert frames.tag_id({}, {frames.EDDYSTONE_UUID: b"\x10" + data[1:]}) is None


def test_trace_json_form() -> None:
    mfg = {"76": "0215f7826da64fa24e988024bc5b71e0893e00020001c5"}
    assert frames.tag_id_from_json(mfg, None) == f"ibeacon:{UUID}:2:1"
    assert frames.tag_id_from_json({"76": "zz"}, None) is None
    assert frames.tag_id_from_json({"x76": "0215"}, None) is None
    assert frames.tag_id_from_json([1, 2], "svc") is None


def test_phones_and_headphones_are_not_tags() -> None:
    assert frames.tag_id({76: bytes.fromhex("1005031c0d7a2e")}, {}) is None  # Apple nearby info
    assert frames.tag_id({6: bytes.fromhex("0309800102")}, {}) is None  # MS Swift Pair
    assert frames.tag_id({}, {"0000fe2c-0000-1000-8000-00805f9b34fb": b"\x01\x02\x03"}) is None


@given(st.binary(max_size=64), st.integers(min_value=0, max_value=0xFFFF))
def test_random_manufacturer_data_never_raises(data: bytes, company: int) -> None:
    tag = frames.tag_id({company: data}, {})
    assert tag is None or tag.startswith(("ibeacon:", "altbeacon:"))


@given(st.binary(max_size=40), st.text(max_size=40))
def test_random_service_data_never_raises(data: bytes, uuid: str) -> None:
    assert frames.tag_id({}, {uuid: data}) is None or uuid.lower() == frames.EDDYSTONE_UUID


@given(st.integers(min_value=0, max_value=22))
def test_truncated_ibeacon_is_none(n: int) -> None:
    data = frames.ibeacon_payload(UUID, 1, 2)[:n]
    assert frames.parse_ibeacon(data) is None


@given(
    st.dictionaries(st.text(max_size=6), st.one_of(st.text(max_size=60), st.integers(), st.none()))
)
def test_untrusted_json_never_raises(mfg: dict[str, object]) -> None:
    frames.tag_id_from_json(mfg, mfg)


@given(st.uuids(), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_ibeacon_round_trip(u: object, major: int, minor: int) -> None:
    data = frames.ibeacon_payload(str(u), major, minor)
    assert frames.parse_ibeacon(data) == f"ibeacon:{u}:{major}:{minor}"


def test_ibeacon_with_trailing_battery_byte() -> None:
    # retail beacons that append a battery level send 24-byte iBeacon payloads
    data = bytes.fromhex("0215F7826DA64FA24E988024BC5B71E0893E00010007C5") + b"\x64"
    assert frames.parse_ibeacon(data) == f"ibeacon:{UUID}:1:7"
    assert frames.tag_id_from_json({"76": data.hex()}, None) == f"ibeacon:{UUID}:1:7"
    # too short, or the wrong prefix, is still no frame
    assert frames.parse_ibeacon(data[:22]) is None
    assert frames.parse_ibeacon(b"\x02\x16" + data[2:]) is None
