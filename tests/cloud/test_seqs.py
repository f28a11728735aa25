"""The per-gateway seq intervals and the gap report: pure functions, property-tested."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from gateway.cloud import seqs


def test_merge_examples() -> None:
    assert seqs.merge([], [3, 1, 2]) == [(1, 3)]
    assert seqs.merge([(1, 3)], [5]) == [(1, 3), (5, 5)]
    assert seqs.merge([(1, 3), (5, 5)], [4]) == [(1, 5)]
    assert seqs.merge([[1, 3]], [2, 3]) == [(1, 3)]  # JSON gives lists; duplicates change nothing


def test_report_examples() -> None:
    r = seqs.report([(1, 2), (5, 5)], last_acked_seq=6, backlog=1)
    assert (r.contiguous_seq, r.max_seq, r.gap_count, r.tail, r.missing) == (2, 5, 2, 1, 3)
    assert r.gaps == ((3, 4),) and r.unexplained == 2
    assert seqs.report([(2, 4)]).contiguous_seq == 0  # seq 1 never came
    assert seqs.report([]).missing == 0


@given(st.lists(st.sets(st.integers(1, 300), max_size=40), max_size=8))
def test_merge_in_any_chunks_is_the_set(chunks: list[set[int]]) -> None:
    received: list[tuple[int, int]] = []
    for chunk in chunks:
        received = seqs.merge(received, chunk)
    everything = set().union(*chunks)
    assert {s for lo, hi in received for s in range(lo, hi + 1)} == everything
    # disjoint, sorted, never adjacent: the shortest description
    assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(received))
    rep = seqs.report(received)
    top = max(everything, default=0)
    assert rep.gap_count == top - len(everything)
    assert {s for lo, hi in seqs.gaps_of(received) for s in range(lo, hi + 1)} == (
        set(range(1, top + 1)) - everything
    )
    contiguous = 0
    while contiguous + 1 in everything:
        contiguous += 1
    assert rep.contiguous_seq == contiguous
