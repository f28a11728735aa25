"""A calibration swapped into a running pipeline (what the web app's wizard applies): decisions
from then on use it, and everything the pipeline tracks carries on."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

from drivers.trace.reader import TraceStats, read_blocks
from drivers.trace.writer import write_trace
from gateway.assembly import build_identity, build_pipeline
from gateway.config import config_from_dict
from gateway.layoutfile import load_layout
from gateway.pipeline import Pipeline
from positioning.pathloss import RadioModel
from positioning.storesim import SimParams, StoreSimulation

from .conftest import ROOT

LAYOUT = ROOT / "config" / "layout.toml"


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    layout = load_layout(LAYOUT)
    sim = StoreSimulation(layout, SimParams(shoppers=8, devices=0, seed=4, horizon_s=400))
    path = tmp_path_factory.mktemp("swap") / "trace.jsonl"
    buf = io.StringIO()
    write_trace(sim, 300.0, buf)
    path.write_text(buf.getvalue())
    return path


def test_a_new_model_decides_and_the_stays_carry_on(trace: Path) -> None:
    layout = load_layout(LAYOUT)
    cfg = config_from_dict({"pipeline": {"min_dwell_s": 20.0}}, "test")

    def pipeline() -> Pipeline:
        return build_pipeline(cfg, layout, None, identity=build_identity(cfg, layout, raw_ids=True))

    blocks = list(read_blocks(trace, layout.receiver_index(), TraceStats(), pipeline().resolver))
    half = len(blocks) // 2
    # a model that expects rx01 25 dB quieter: whatever rx01 hears seems close, fasteners win
    loud = RadioModel()
    loud = dataclasses.replace(loud, receivers={"rx01": dataclasses.replace(
        loud.for_receiver("rx01"), offset_db=loud.for_receiver("rx01").offset_db - 25.0)})  # fmt: skip
    a, b = pipeline(), pipeline()
    for blk in blocks[:half]:
        a.feed_block(blk)
        b.feed_block(blk)
    before = (a.tracker.active_tags, [s.tag for s in a.tracker.ongoing_stays()])
    assert before[0] and before[1], "the swap should happen with tags tracked and stays open"
    b.set_radio_model(loud)
    assert b.radio_model is loud
    assert (b.tracker.active_tags, [s.tag for s in b.tracker.ongoing_stays()]) == before
    in_a = in_b = 0  # tags in fasteners, summed after every block
    for blk in blocks[half:]:
        a.feed_block(blk)
        b.feed_block(blk)
        in_a += sum(v.zone == "fasteners" for v in a.tag_views())
        in_b += sum(v.zone == "fasteners" for v in b.tag_views())
    assert {v.tag for v in a.tag_views()} == {v.tag for v in b.tag_views()}
    assert in_b >= 3 * in_a + 5, (in_a, in_b)  # the swapped model decides
