"""Batching and parallel parsing change nothing but speed: one by one, in batches of any size and
through forked parser processes, the same trace gives the same sightings, zones and dwells."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.trace import parallel as trace_workers
from drivers.trace.parallel import read_blocks_parallel
from drivers.trace.reader import TraceStats, read_blocks, read_sightings
from drivers.trace.writer import write_trace
from gateway.layoutfile import load_layout
from positioning.dwell import DwellParams
from positioning.storesim import SimParams, StoreSimulation
from positioning.tags import TagResolver
from positioning.tracker import TrackerParams, ZoneTracker

from .conftest import ROOT

LAYOUT = ROOT / "config" / "layout.toml"


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    layout = load_layout(LAYOUT)
    sim = StoreSimulation(layout, SimParams(shoppers=8, devices=20, seed=5))
    buf = io.StringIO()
    write_trace(sim, 600.0, buf)
    lines = buf.getvalue().splitlines(keepends=True)
    # damage a few lines far into the file: they must be reported with their own line numbers
    for k in (len(lines) // 3, 2 * len(lines) // 3, len(lines) - 5):
        lines[k] = '{"t": 1767261700.0, "rx": "rx01", "mfg": {"76": "0215' + "\n"
    p = tmp_path_factory.mktemp("batch") / "trace.jsonl"
    p.write_text("".join(lines))
    return p


def _tracker() -> ZoneTracker:
    layout = load_layout(LAYOUT)
    return ZoneTracker(
        layout, params=TrackerParams(dwell=DwellParams(min_dwell_s=20.0)), record_segments=True
    )


def test_one_by_one_equals_batches_with_ticks_at_the_same_sightings(trace: Path) -> None:
    """With ticks at the same places, batches of any size give exactly the per-sighting result."""
    layout_rows = list(read_sightings(trace, _tracker().rx_index, TraceStats(), TagResolver()))
    ticks = set(range(0, len(layout_rows), 3000))  # batches up to 3000 sightings are possible
    largest = 0

    def run(batch: int) -> tuple[list[object], list[object]]:
        nonlocal largest
        trk = _tracker()
        pending: list[tuple[str, int, float, float]] = []
        for k, row in enumerate(layout_rows):
            pending.append(row)
            if len(pending) >= batch or k in ticks:
                largest = max(largest, len(pending))
                trk.observe_sightings(pending)
                pending = []
            if k in ticks:
                trk.tick(row[3])
        trk.observe_sightings(pending)
        trk.finish(layout_rows[-1][3])
        return list(trk.events), list(trk.segments)

    ref = run(1)
    assert ref[0]
    for batch in (2, 64, 1000, 2999):
        assert run(batch) == ref, batch
    assert largest == 2999  # the tracker's batched decisions were taken on batches that large


def test_batches_a_little_out_of_time_order_equal_one_by_one(trace: Path) -> None:
    """Receivers merged by arrival are a little out of time order (within the reader's 5 s): a
    batch then decides at the sightings one by one would, not where a bisection over times
    assumed sorted would put them."""
    rows = list(read_sightings(trace, _tracker().rx_index, TraceStats(), TagResolver()))
    for k in range(0, len(rows) - 40, 7):  # a sighting taken 0.5-3 s late, every 7th
        j = next((j for j in range(k + 1, k + 40) if rows[j][3] - rows[k][3] >= 0.5), None)
        if j is not None and rows[j][3] - rows[k][3] <= 3.0:
            rows.insert(j, rows.pop(k))

    def run(batch: int) -> tuple[list[object], list[object]]:
        trk = _tracker()
        for lo in range(0, len(rows), batch):
            trk.observe_sightings(rows[lo : lo + batch])
        trk.finish(max(r[3] for r in rows))
        return list(trk.events), list(trk.segments)

    ref = run(1)
    assert ref[0]
    for batch in (64, 1000):
        assert run(batch) == ref, batch


def _columns(blocks: list[object]) -> tuple[list[str], list[int], list[float], list[float]]:
    tags: list[str] = []
    rx: list[int] = []
    rssi: list[float] = []
    t: list[float] = []
    for b in blocks:
        tags += b.tags  # type: ignore[attr-defined]
        rx += b.rx.tolist()  # type: ignore[attr-defined]
        rssi += b.rssi.tolist()  # type: ignore[attr-defined]
        t += b.t.tolist()  # type: ignore[attr-defined]
    return tags, rx, rssi, t


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_parallel_parsing_reads_exactly_what_one_process_reads(
    trace: Path, workers: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # split even a small trace, into many blocks dealt round-robin, with little room ahead
    monkeypatch.setattr(trace_workers, "MIN_BYTES_PER_WORKER", 1)
    monkeypatch.setattr(trace_workers, "BLOCK", 1 << 16)
    monkeypatch.setattr(trace_workers, "AHEAD", 2)
    rx_index = load_layout(LAYOUT).receiver_index()
    one = TraceStats()
    ref = _columns(list(read_blocks(trace, rx_index, one, TagResolver())))
    par = TraceStats()
    got = _columns(list(read_blocks_parallel(trace, rx_index, par, TagResolver(), workers=workers)))
    assert got == ref
    assert np.all(np.diff(np.array(got[3])) >= 0)  # file order kept across the ranges
    assert (par.lines, par.sightings, par.skipped_no_frame, par.bad_lines) == (
        one.lines,
        one.sightings,
        one.skipped_no_frame,
        one.bad_lines,
    )
    assert par.bad_lines == 3
    # the damaged lines are named with their line number in the whole file
    assert par.bad_examples == one.bad_examples
    text = trace.read_text().splitlines()
    for ex in par.bad_examples:
        lineno = int(ex.split(":")[1])
        assert text[lineno - 1].endswith('"0215'), ex


def test_parallel_reader_reports_a_missing_file(tmp_path: Path) -> None:
    from positioning.errors import InputError

    with pytest.raises(InputError, match="file not found"):
        list(
            read_blocks_parallel(
                tmp_path / "nope.jsonl", {}, TraceStats(), TagResolver(), workers=2
            )
        )


def test_parsers_started_before_the_pipeline_replay_what_one_process_replays(
    trace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`replay` starts its parsers before it builds the pipeline: the same events and timeline
    as parsing in the replaying process; readers started for other receivers or another resolver
    are refused; leaving the `with` ends the parser processes."""
    import multiprocessing as mp

    from gateway.assembly import build_identity, build_pipeline
    from gateway.config import load_config
    from gateway.trace_replay import replay_trace

    monkeypatch.setattr(trace_workers, "MIN_BYTES_PER_WORKER", 1)
    monkeypatch.setattr(trace_workers, "BLOCK", 1 << 16)
    cfg, layout = load_config(None), load_layout(LAYOUT)

    def pipeline(resolver: TagResolver | None = None) -> object:
        ident = build_identity(cfg, layout, raw_ids=True)
        return build_pipeline(
            cfg, layout, None, identity=ident, record_segments=True, resolver=resolver
        )

    def replay(readers: trace_workers.TraceReaders | None, pl: object) -> tuple[bytes, bytes]:
        ev, tl = io.BytesIO(), io.BytesIO()
        replay_trace(str(trace), pl, ev, tl, workers=0, readers=readers)  # type: ignore[arg-type]
        # event ids are random per run (no configured secret): everything else must agree
        return b"".join(ln.split(b'"type"')[1] for ln in ev.getvalue().splitlines()), tl.getvalue()

    ref = replay(None, pipeline())
    assert ref[0] and ref[1]
    resolver = TagResolver()
    with trace_workers.TraceReaders(trace, layout.receiver_index(), resolver, workers=2) as rd:
        assert len(mp.active_children()) == 2  # parsing while the pipeline is built
        got = replay(rd, pipeline(resolver))
    assert got == ref
    assert not mp.active_children()
    with trace_workers.TraceReaders(trace, layout.receiver_index(), TagResolver(), 2) as rd:
        with pytest.raises(ValueError, match="another pipeline"):
            replay(rd, pipeline(resolver))
        with pytest.raises(ValueError, match="another pipeline"):
            other = trace_workers.TraceReaders(trace, {"rx01": 0}, resolver, workers=0)
            replay(other, pipeline(resolver))
    assert not mp.active_children()


def test_tag_memory_is_bounded_and_slots_are_reused() -> None:
    """At max_tags the least recently heard tag is dropped (its stay closed) and its filter
    slot goes to the newcomer, which starts from a clean filter."""
    layout = load_layout(LAYOUT)
    trk = ZoneTracker(layout, params=TrackerParams(max_tags=3))
    for k in range(6):
        trk.observe_sightings(
            [(f"ibeacon:x:1:{k}", 0, -60.0, float(k)), (f"ibeacon:x:1:{k}", 1, -70.0, k + 0.1)]
        )
        assert trk.active_tags == min(k + 1, 3)
    assert trk.evicted == 3
    assert trk._bank.slots >= 3 and len(trk._tags_by_slot) == 3  # three slots, reused
    # the newest tag's filter started fresh: its first level is its first measurement
    assert trk._bank.level[trk._tags["ibeacon:x:1:5"].slot * trk.n_rx] == -60.0


def test_a_batch_where_no_decision_has_a_receiver_in_earshot() -> None:
    """A tag heard again after its levels went stale: its decision has nothing to decide on
    (regression: an empty batch of likelihoods once crashed the daemon)."""
    layout = load_layout(LAYOUT)
    trk = ZoneTracker(layout, params=TrackerParams(fresh_s=0.0))
    trk.observe_sightings([("ibeacon:x:1:1", 0, -60.0, 100.0)])
    trk.observe_sightings([("ibeacon:x:1:1", 1, -60.0, 101.5), ("ibeacon:x:1:2", 2, -70.0, 101.6)])
    assert trk.active_tags == 2
    clf = trk.classifier
    empty = clf.log_likelihood_batch(np.zeros((0, trk.n_rx), dtype=bool), np.zeros((0, trk.n_rx)))
    assert empty.shape == (0, clf.n_classes)


def test_eviction_drops_the_least_recently_heard_tag() -> None:
    layout = load_layout(LAYOUT)
    trk = ZoneTracker(layout, params=TrackerParams(max_tags=3))
    for k, tag in enumerate(["a", "b", "c", "a", "d"]):  # a is heard again before d arrives
        trk.observe_sightings([(f"ibeacon:x:1:{tag}", 0, -60.0, float(k))])
    assert sorted(trk._tags) == ["ibeacon:x:1:a", "ibeacon:x:1:c", "ibeacon:x:1:d"]


_ALPHABET = b"0215beacfBEACF:\n{}\x10\x12\x15 Aa"


@given(
    st.binary(max_size=300).map(lambda b: bytes(_ALPHABET[c % len(_ALPHABET)] for c in b)),
    st.lists(
        st.binary(min_size=1, max_size=8).map(
            lambda b: bytes(_ALPHABET[c % len(_ALPHABET)] for c in b)
        ),
        max_size=3,
    ),
)
@settings(max_examples=300, deadline=None)
def test_needle_search_finds_what_a_regex_on_the_lower_cased_block_finds(
    buf: bytes, extra: list[bytes]
) -> None:
    """Every start of a frame marker or registered address, whatever its case, as `re` finds it
    in `buf.lower()` (overlapping occurrences too); control bytes that only look like digits
    once their case bit is set (0x10 -> '0') are not matches."""
    from drivers.trace.reader import FRAME_MARKERS, NeedleSearch

    needles = [*FRAME_MARKERS, *extra]
    low = buf.lower()

    def want(end: int) -> set[int]:
        return {i for n in needles for i in range(end - len(n) + 1) if low.startswith(n.lower(), i)}

    search = NeedleSearch(needles)
    for end in (len(buf), len(buf) // 2, 3):  # occurrences that end at or before `end`
        assert set(search.starts(buf, min(end, len(buf))).tolist()) == want(min(end, len(buf)))
