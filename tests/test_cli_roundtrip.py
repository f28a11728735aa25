"""simulate -> calibrate -> replay -> evaluate through the command line, with minimum scores."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT, shelfgate


def run(*args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(shelfgate(*args), capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    return res


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("store")
    layout = str(ROOT / "config" / "layout.toml")
    run(
        "simulate",
        "--layout",
        layout,
        "--calibration-walk",
        "--seed",
        "41",
        "--trace",
        f"{d}/cal.jsonl",
        "--truth",
        f"{d}/labels.jsonl",
    )
    run(
        "calibrate",
        "--layout",
        layout,
        "--trace",
        f"{d}/cal.jsonl",
        "--labels",
        f"{d}/labels.jsonl",
        "--out",
        f"{d}/cal.json",
    )
    run(
        "simulate",
        "--layout",
        layout,
        "--shoppers",
        "10",
        "--duration",
        "900",
        "--seed",
        "42",
        "--trace",
        f"{d}/trace.jsonl",
        "--truth",
        f"{d}/truth.jsonl",
    )
    return d


def replay_and_score(d: Path, *extra: str) -> dict:
    layout = str(ROOT / "config" / "layout.toml")
    run(
        "replay",
        f"{d}/trace.jsonl",
        "--layout",
        layout,
        "--calibration",
        f"{d}/cal.json",
        "--events",
        f"{d}/ev.jsonl",
        "--timeline",
        f"{d}/tl.jsonl",
        "--raw-ids",
        *extra,
    )
    res = run(
        "evaluate",
        "--truth",
        f"{d}/truth.jsonl",
        "--events",
        f"{d}/ev.jsonl",
        "--timeline",
        f"{d}/tl.jsonl",
        "--json",
    )
    return json.loads(res.stdout)


def replay_clean_and_bad(
    tmp_path: Path, clean: Path, bad: Path, *extra: str
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Both traces replayed with the same key: (stderr, event ids) of each, by name."""
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('[privacy]\nsecret = "clean-bad-test-secret-0123"\n')  # the same ids in both
    out, ids = {}, {}
    for name, trace in (("clean", clean), ("bad", bad)):
        events = tmp_path / f"ev-{name}.jsonl"
        res = run(
            "replay",
            str(trace),
            "--layout",
            str(ROOT / "config" / "layout.toml"),
            "--events",
            str(events),
            "--config",
            str(cfg),
            *extra,
        )
        out[name] = res.stderr
        ids[name] = [json.loads(x)["event_id"] for x in events.read_text().splitlines()]
    return out, ids


def test_round_trip_scores(store: Path) -> None:
    sc = replay_and_score(store)
    assert sc["true_dwells"] >= 10
    assert sc["f1"] >= 0.85
    assert sc["zone_accuracy"] >= 0.85
    assert sc["median_start_error_s"] < 10 and sc["median_end_error_s"] < 15
    base = replay_and_score(store, "--classifier", "nearest")
    assert sc["f1"] > base["f1"] and sc["zone_accuracy"] > base["zone_accuracy"]


def test_events_carry_the_design_fields(store: Path) -> None:
    replay_and_score(store)
    events = [json.loads(x) for x in (store / "ev.jsonl").read_text().splitlines()]
    assert events
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1))
    for e in events:
        assert {
            "event_id",
            "seq",
            "type",
            "store",
            "gateway",
            "tag",
            "zone",
            "start",
            "end",
            "clock_synced",
        } <= set(e)
        assert e["type"] in ("dwell", "dwell_threshold")
    assert len({e["event_id"] for e in events}) == len(events)


def test_default_pseudonymises_tags(store: Path, tmp_path: Path) -> None:
    layout = str(ROOT / "config" / "layout.toml")
    run("replay", f"{store}/trace.jsonl", "--layout", layout, "--events", f"{tmp_path}/ev.jsonl")
    text = (tmp_path / "ev.jsonl").read_text()
    assert text and "ibeacon:" not in text and "eddystone:" not in text and "altbeacon:" not in text
    assert all(json.loads(x)["tag"].startswith("p:") for x in text.splitlines())


def test_malformed_trace_lines_are_skipped_not_fatal(store: Path, tmp_path: Path) -> None:
    lines = (store / "trace.jsonl").read_text().splitlines()[:20000]
    bad = tmp_path / "bad.jsonl"
    lines[5] = (
        '{"t": "soon", "rx": "rx01", "rssi": -70, "mfg": {"76": "0215f7826da64fa24e988024bc5b71e0893e00010007c5"}}'
    )
    lines[7] = '{"t": 1.0, "rx": "rx01", "mfg": {"76": "0215f7826d'  # truncated
    bad.write_text("\n".join(lines) + "\n")
    layout = str(ROOT / "config" / "layout.toml")
    res = run(
        "replay", str(bad), "--layout", layout, "--events", f"{tmp_path}/ev.jsonl", "--raw-ids"
    )
    assert "2 malformed" in res.stderr
    assert f"{bad}:8" in res.stderr  # the line is named


def test_user_mistakes_are_one_line(tmp_path: Path) -> None:
    res = subprocess.run(
        shelfgate("replay", "nope.jsonl", "--layout", "nope.toml", "--events", "x.jsonl"),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "nope.toml" in res.stderr
    bad = tmp_path / "l.toml"
    bad.write_text('[store]\nid = "x"\n[[receivers]]\nid = "r"\nx = "far"\ny = 1\n')
    res = subprocess.run(
        shelfgate("simulate", "--layout", str(bad), "--trace", "t.jsonl"),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode == 2 and "receivers[0].x" in res.stderr and "Traceback" not in res.stderr


def test_offer_triggers_on_simulated_shoppers(store: Path, tmp_path: Path) -> None:
    """Triggers come within a few seconds of true stay start + min_dwell_s; short stays get none."""
    from gateway.layoutfile import load_layout

    layout = load_layout(ROOT / "config" / "layout.toml")
    min_dwell = 60.0
    cat = {
        "version": 1,
        "offers": [
            {
                "id": "any",
                "zones": [z.id for z in layout.zones],
                "min_dwell_s": min_dwell,
                "period": "stay",
                "max_per_tag": 5,
            }
        ],
    }
    (tmp_path / "offers.json").write_text(json.dumps(cat))
    run(
        "replay",
        f"{store}/trace.jsonl",
        "--layout",
        str(ROOT / "config" / "layout.toml"),
        "--calibration",
        f"{store}/cal.json",
        "--events",
        f"{tmp_path}/ev.jsonl",
        "--raw-ids",
        "--offers",
        f"{tmp_path}/offers.json",
    )
    events = [json.loads(x) for x in (tmp_path / "ev.jsonl").read_text().splitlines()]
    trig = [e for e in events if e["type"] == "offer_triggered"]
    truth = [json.loads(x) for x in (store / "truth.jsonl").read_text().splitlines()]
    long_stays = [s for s in truth if s["zone"] and s["end"] - s["start"] >= min_dwell + 10]
    short_stays = [s for s in truth if s["zone"] and s["end"] - s["start"] < min_dwell - 10]
    assert len(trig) >= 0.85 * len(long_stays)
    errors = []
    for s in long_stays:
        expect = s["start"] + min_dwell
        near = [
            abs(e["end"] - expect)
            for e in trig
            if e["tag"] == s["tag"]
            and e["zone"] == s["zone"]
            and s["start"] - 15 <= e["start"] <= s["end"]
        ]
        if near:
            errors.append(min(near))
    errors.sort()
    assert errors[len(errors) // 2] <= 3.0  # median within 3 s
    assert errors[int(0.8 * len(errors))] <= 6.0
    for s in short_stays:  # nobody gets an offer for a glance
        assert not [
            e
            for e in trig
            if e["tag"] == s["tag"]
            and e["zone"] == s["zone"]
            and s["start"] - 5 <= e["start"] <= s["end"]
            and e["end"] <= s["end"] + 5
        ]
    for e in trig:
        assert {"offer_id", "catalogue_version", "payload_ref"} <= set(e) and e[
            "duration_s"
        ] == min_dwell


def test_absurd_values_are_named_and_lose_nothing(store: Path, tmp_path: Path) -> None:
    """t = 1e300, rssi 500 or true: each line is named and dropped; every other line counts as
    before (the span printed is the trace's real one) and the events are those of the clean
    trace."""
    lines = (store / "trace.jsonl").read_text().splitlines()[:150000]
    clean = tmp_path / "clean.jsonl"
    clean.write_text("\n".join(lines) + "\n")
    frame = '"mfg": {"76": "0215f7826da64fa24e988024bc5b71e0893e00010007c5"}'
    absurd = [
        f'{{"t": 1e300, "rx": "rx01", "rssi": -70, {frame}}}',
        f'{{"t": 1e300, "rx": "rx02", "rssi": -71, {frame}}}',
        f'{{"t": 1e300, "rx": "rx03", "rssi": -72, {frame}}}',
        f'{{"t": 1767261700.0, "rx": "rx01", "rssi": 500, {frame}}}',
        f'{{"t": 1767261700.0, "rx": "rx01", "rssi": true, {frame}}}',
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:100] + absurd + lines[100:]) + "\n")
    out, ids = replay_clean_and_bad(tmp_path, clean, bad)
    assert "5 malformed" in out["bad"], out["bad"]
    for k in (101, 102, 103):
        assert f"{bad}:{k}: skipped: t 1e+300 is not a plausible unix time" in out["bad"]
    assert f"{bad}:104: skipped: rssi 500 is outside -127..20 dBm" in out["bad"]
    assert f"{bad}:105: skipped: t and rssi must be numbers" in out["bad"]
    span = [re.search(r"covering (\d+) s", out[n]).group(1) for n in ("clean", "bad")]  # type: ignore[union-attr]
    assert span[0] == span[1]
    assert ids["clean"] and ids["clean"] == ids["bad"]


def test_missing_trace_leaves_the_events_file_alone(tmp_path: Path) -> None:
    events = tmp_path / "ev.jsonl"
    events.write_text('{"kept": true}\n')
    res = subprocess.run(
        shelfgate(
            "replay",
            str(tmp_path / "nope.jsonl"),
            "--layout",
            str(ROOT / "config" / "layout.toml"),
            "--events",
            str(events),
        ),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert res.returncode == 2 and "file not found" in res.stderr
    assert events.read_text() == '{"kept": true}\n'


def test_lines_out_of_time_order_and_truncated_lines_are_named(store: Path, tmp_path: Path) -> None:
    """A block of lines 4000 s in the past is named (receiver, how far back) and skipped, and a
    truncated line without a beacon frame counts as malformed, not as "without a beacon frame";
    the events are those of the clean trace."""
    lines = (store / "trace.jsonl").read_text().splitlines()[:150000]
    clean = tmp_path / "clean.jsonl"
    clean.write_text("\n".join(lines) + "\n")
    past = []
    for ln in lines[1000:1400]:
        o = json.loads(ln)
        o["t"] -= 4000.0
        past.append(json.dumps(o))
    truncated = '{"t": 1767261700.0, "rx": "rx01", "addr": "aa:bb'
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:100000] + past + [truncated] + lines[100000:]) + "\n")
    out, ids = replay_clean_and_bad(tmp_path, clean, bad, "--workers", "0")
    late = sum(1 for ln in past if '"0215' in ln or '"beac' in ln or "feaa" in ln)
    assert late and f"{late} out of time order" in out["bad"], out["bad"]
    assert re.search(r"receiver 'rx\d+' at t=[\d.]+ is 4\d\d\d s before", out["bad"])
    assert "1 malformed" in out["bad"] and f"{bad}:100401: skipped: truncated" in out["bad"]
    frameless = [
        re.search(r"(\d+) without a beacon frame", out[n]).group(1) for n in ("clean", "bad")
    ]  # type: ignore[union-attr]
    assert int(frameless[1]) == int(frameless[0]) + (len(past) - late)
    assert ids["clean"] and ids["clean"] == ids["bad"]


def test_calibrate_takes_a_walk_recorded_out_of_time_order(store: Path, tmp_path: Path) -> None:
    # receivers' logs merged one after the other (as the Danis et al. recordings are) are not in
    # time order; calibrate sorts what it reads, so it must not drop the later-logged part
    lines = (store / "cal.jsonl").read_text().splitlines(keepends=True)
    half = len(lines) // 2
    shuffled = tmp_path / "cal-shuffled.jsonl"
    shuffled.write_text("".join(lines[half:] + lines[:half]))
    run(
        "calibrate",
        "--layout",
        str(ROOT / "config" / "layout.toml"),
        "--trace",
        str(shuffled),
        "--labels",
        f"{store}/labels.jsonl",
        "--out",
        str(tmp_path / "cal.json"),
    )
    ordered = json.loads((store / "cal.json").read_text())
    got = json.loads((tmp_path / "cal.json").read_text())
    assert got["radio_model"] == ordered["radio_model"]
