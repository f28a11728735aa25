"""`shelfgate report` through the CLI: one self-contained HTML page with every plot, the PNGs
beside it, and plots made of the input given (a confusion matrix and dwell counts from a truth,
timeline and events written by hand; the calibration's stands on the floor)."""

from __future__ import annotations

import base64
import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from .conftest import ROOT, shelfgate
from .mqtt_helpers import env

LAYOUT = ROOT / "config" / "layout.toml"
PNG = b"\x89PNG\r\n\x1a\n"
T0 = 1767261600.0


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        shelfgate(*args), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("report")
    files = {k: d / f"{k}.jsonl" for k in ("trace", "truth", "cal", "labels")}
    files["calibration"] = d / "calibration.json"
    for args in (
        ("simulate", "--layout", str(LAYOUT), "--shoppers", "4", "--duration", "120", "--seed",
         "2", "--trace", str(files["trace"]), "--truth", str(files["truth"])),
        ("simulate", "--layout", str(LAYOUT), "--calibration-walk", "--seed", "7", "--stand-s",
         "8", "--trace", str(files["cal"]), "--truth", str(files["labels"])),
        ("calibrate", "--layout", str(LAYOUT), "--trace", str(files["cal"]), "--labels",
         str(files["labels"]), "--out", str(files["calibration"])),
    ):  # fmt: skip
        r = run(*args)
        assert r.returncode == 0, r.stderr
    return files


class Sections(HTMLParser):
    """Each <section data-plot>: its images' sources and its table cells' attributes/text."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict[str, Any]] = {}
        self._cur: dict[str, Any] | None = None
        self._cell: dict[str, str] | None = None
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section":
            self._cur = self.sections[a["data-plot"]] = {"img": [], "cells": [], "rows": []}
        elif tag in ("link", "script") or (tag == "img" and not a["src"].startswith("data:")):
            self.external.append(tag)
        elif self._cur is not None and tag == "img":
            self._cur["img"].append(a["src"])
        elif self._cur is not None and tag == "td":
            self._cell = {**a, "text": ""}
            self._cur["cells"].append(self._cell)
        elif self._cur is not None and tag == "tr":
            self._cur["rows"].append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._cur = None
        elif tag == "td":
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data


def lines(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def test_report_has_every_plot_made_of_its_input(inputs: dict[str, Path], tmp_path: Path) -> None:
    tag = orjson.loads(inputs["truth"].read_bytes().splitlines()[0])["tag"]
    # by hand: tag A 100 s in fasteners, decided fasteners for 80 s then paint for 20 s;
    # tag B 50 s in paint, decided paint throughout
    truth = lines(tmp_path / "truth.jsonl", [
        {"tag": "A", "zone": "fasteners", "start": T0, "end": T0 + 100},
        {"tag": "B", "zone": "paint", "start": T0, "end": T0 + 50},
    ])  # fmt: skip
    timeline = lines(tmp_path / "timeline.jsonl", [
        {"tag": "A", "zone": "fasteners", "start": T0, "end": T0 + 80},
        {"tag": "A", "zone": "paint", "start": T0 + 80, "end": T0 + 100},
        {"tag": "B", "zone": "paint", "start": T0, "end": T0 + 50},
    ])  # fmt: skip
    events = lines(tmp_path / "events.jsonl", [
        {"type": "dwell", "tag": "A", "zone": "fasteners", "start": T0, "end": T0 + 90},
        {"type": "dwell_threshold", "tag": "A", "zone": "fasteners", "start": T0, "end": T0 + 60},
        {"type": "dwell", "tag": "C", "zone": "fasteners", "start": T0, "end": T0 + 150},
        {"type": "dwell", "tag": "B", "zone": "paint", "start": T0, "end": T0 + 300},
    ])  # fmt: skip
    out = tmp_path / "r" / "report.html"
    r = run("report", str(inputs["trace"]), "--layout", str(LAYOUT), "--truth", str(truth),
            "--timeline", str(timeline), "--events", str(events), "--calibration",
            str(inputs["calibration"]), "--tag", tag, "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    p = Sections()
    p.feed(out.read_text())
    assert set(p.sections) == {"rssi-1", "timeline", "confusion", "floor", "dwell"}
    assert not p.external, "the page must not load anything"
    for key, sec in p.sections.items():
        assert len(sec["img"]) == 1, key
        png = base64.b64decode(sec["img"][0].removeprefix("data:image/png;base64,"))
        assert png.startswith(PNG), key
        assert (out.parent / "report_plots" / f"{key}.png").read_bytes() == png, key

    cells = {
        (c["data-true"], c["data-decided"]): c["text"] for c in p.sections["confusion"]["cells"]
    }
    assert cells == {
        ("fasteners", "fasteners"): "80", ("fasteners", "paint"): "20",
        ("paint", "fasteners"): "0", ("paint", "paint"): "50",
    }  # fmt: skip
    dwells = {
        row["data-zone"]: int(c["text"])
        for row, c in zip(
            [r for r in p.sections["dwell"]["rows"] if "data-zone" in r],
            [c for c in p.sections["dwell"]["cells"] if c.get("class") == "n"],
            strict=True,
        )
    }
    assert dwells["fasteners"] == 2 and dwells["paint"] == 1
    assert sum(dwells.values()) == 3  # the threshold event is not a dwell
    stands = [row for row in p.sections["floor"]["rows"] if row.get("class") == "stand"]
    cal = json.loads(inputs["calibration"].read_text())
    assert len(stands) == len(cal["radio_model"]["corrections"]) > 0


def test_report_replays_when_given_only_a_trace(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "alone.html"
    r = run("report", str(inputs["trace"]), "--layout", str(LAYOUT), "--out", str(out))
    assert r.returncode == 0, r.stderr
    p = Sections()
    p.feed(out.read_text())
    # no truth: no confusion matrix; no calibration: the floor without residuals
    assert {"rssi-1", "rssi-2", "rssi-3", "timeline", "floor", "dwell"} == set(p.sections)
    assert "no --truth" in out.read_text() and "no --calibration" in out.read_text()


def test_report_bad_input_is_one_line(inputs: dict[str, Path], tmp_path: Path) -> None:
    bad = lines(tmp_path / "truth.jsonl", [{"tag": "A", "zone": "fasteners"}])
    r = run("report", str(inputs["trace"]), "--layout", str(LAYOUT), "--truth", str(bad),
            "--out", str(tmp_path / "x.html"))  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "truth.jsonl: line 1" in r.stderr, r.stderr
    r = run(
        "report", str(inputs["trace"]), "--layout", str(LAYOUT), "--out", str(tmp_path / "x.png")
    )
    assert r.returncode == 2 and "expected an .html" in r.stderr
