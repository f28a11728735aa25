"""Serial receiver decoders: the worked examples of HARDWARE.md, garbage, and chunking."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.serial.bgapi import BgapiDecoder, bgapi_scan_response_frame
from drivers.serial.dwm1001 import DwmDecoder
from drivers.serial.nina import NinaDecoder
from positioning.frames import tag_id

BLED_EXAMPLE = bytes.fromhex(
    "80 29 06 00 C2 00 FF EE DD CC BB AA 00 FF 1E 02 01 06 1A FF 4C 00 02 15 F7 82 6D A6 4F A2 4E 98 80 24"
    " BC 5B 71 E0 89 3E 00 01 00 07 C5".replace(" ", "")
)
TAG = "ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e:1:7"
NINA_EXAMPLE = b'+UBTD:AABBCCDDEEFFp,-62,"",2,0201061AFF4C000215F7826DA64FA24E988024BC5B71E0893E00010007C5\r\nOK\r\n'
DWM_EXAMPLE = (
    b"DIST,4,AN0,0E15,1.75,4.55,2.33,1.61,AN1,1516,0.00,4.55,2.20,2.15,AN2,41B1,1.75,0.00,2.20,4.23,"
    b"AN3,089F,0.00,0.00,2.20,4.37,POS,1.49,4.02,0.78,59\r\n"
)


def test_bled112_worked_example() -> None:
    (adv,) = BgapiDecoder().feed(BLED_EXAMPLE)
    assert adv.rssi == -62 and adv.address == "AA:BB:CC:DD:EE:FF" and not adv.scan_response
    assert tag_id(adv.mfg, adv.svc) == TAG


def test_bled112_resynchronises_after_garbage_and_skips_responses() -> None:
    dec = BgapiDecoder()
    response = bytes.fromhex("00020602" + "0000")  # discover's response: consumed
    stream = b"\xff\x13\x37garbage" + response + BLED_EXAMPLE + b"\x80\x29\x06" + BLED_EXAMPLE
    out = dec.feed(stream)
    assert [tag_id(a.mfg, a.svc) for a in out] == [TAG, TAG]
    assert dec.garbage_bytes > 0


def test_bled112_encoder_round_trip() -> None:
    ad = (
        bytes.fromhex("020106")
        + bytes([26, 0xFF])
        + bytes.fromhex("4c000215f7826da64fa24e988024bc5b71e0893e00010007c5")
    )
    (adv,) = BgapiDecoder().feed(
        bgapi_scan_response_frame(-71, "12:34:56:78:9A:BC", ad, addr_type=1)
    )
    assert (adv.rssi, adv.address, tag_id(adv.mfg, adv.svc)) == (-71, "12:34:56:78:9A:BC", TAG)


def test_nina_both_firmware_generations() -> None:
    (adv,) = NinaDecoder(firmware=2).feed(NINA_EXAMPLE)
    assert (
        adv.address == "AA:BB:CC:DD:EE:FF" and adv.rssi == -62 and tag_id(adv.mfg, adv.svc) == TAG
    )
    assert not adv.scan_response
    v3 = NINA_EXAMPLE.replace(b'"",2,', b'"",0,')
    (adv3,) = NinaDecoder(firmware=3).feed(v3)
    assert adv3.scan_response
    dec = NinaDecoder()
    dec.feed(NINA_EXAMPLE)
    assert dec.scan_done == 1  # the scan period ended: the reader re-issues AT+UBTD


def test_nina_bad_lines_counted_not_fatal() -> None:
    dec = NinaDecoder()
    out = dec.feed(b'+UBTD:XYZ,1,2\r\n+UBTD:AABBCCDDEEFFp,-62,"",2,0201\r\n' + NINA_EXAMPLE)
    assert len(out) == 1 and dec.bad_lines == 2


def test_dwm1001_fix_and_field_count() -> None:
    dec = DwmDecoder()
    (fix,) = dec.feed(DWM_EXAMPLE)
    assert (fix.x, fix.y, fix.z, fix.quality, fix.anchors) == (1.49, 4.02, 0.78, 59, 4)
    assert dec.feed(b"DIST,1,AN0,0E15,1.75,4.55,2.33,1.61\r\n") == []  # no fix yet: fine
    assert dec.bad_lines == 0
    assert dec.feed(b"DIST,4,AN0,0E15,1.75,4.55,POS,1.49,4.02,0.78,59\r\n") == []  # garbled
    assert dec.bad_lines == 1


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    idx = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for i in idx:
        out.append(data[prev:i])
        prev = i
    out.append(data[prev:])
    return out


STREAM_BGAPI = b"\x01\x02junk" + BLED_EXAMPLE * 3 + b"\x80" + BLED_EXAMPLE
STREAM_NINA = NINA_EXAMPLE * 3 + b"+UBTD:bad\r\n" + NINA_EXAMPLE
STREAM_DWM = DWM_EXAMPLE * 2 + b"DIST,x\r\n" + DWM_EXAMPLE


@settings(max_examples=150)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_same_output_however_chunked(cuts: list[int]) -> None:
    for dec_cls, stream in (
        (BgapiDecoder, STREAM_BGAPI),
        (NinaDecoder, STREAM_NINA),
        (DwmDecoder, STREAM_DWM),
    ):
        whole = dec_cls().feed(stream)
        dec = dec_cls()
        parts: list[object] = []
        for c in chunked(stream, cuts):
            parts += dec.feed(c)
        assert parts == whole and len(whole) >= 3


@given(st.binary(max_size=400))
def test_random_bytes_never_raise(data: bytes) -> None:
    for dec in (BgapiDecoder(), NinaDecoder(), DwmDecoder()):
        dec.feed(data)
        dec.feed(BLED_EXAMPLE + NINA_EXAMPLE + DWM_EXAMPLE)
