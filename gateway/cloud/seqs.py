"""Per-gateway sequence bookkeeping: which `seq` numbers arrived, as a short list of closed
intervals, and the gap report derived from it. Pure functions (no IO), so the consumer's writer
and the tests share them.

Why intervals: a gateway's seq is gapless by contract, so what arrived is one interval plus a few
holes (batches in flight, a backlog drained newest-first, events a broker lost). The list stays as
short as the number of holes however many events a gateway sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Interval = tuple[int, int]  # closed: (lo, hi), lo <= hi

MAX_LISTED_GAPS = 100  # the gap list in the report is capped; the counts never are


def merge(received: Iterable[Sequence[int]], seqs: Iterable[int]) -> list[Interval]:
    """The union of `received` (closed intervals) and the single numbers `seqs`, as sorted,
    disjoint, non-adjacent closed intervals. Idempotent: merging a seq twice changes nothing."""
    spans = [(int(lo), int(hi)) for lo, hi in received]
    spans += [(s, s) for s in seqs]
    spans.sort()
    out: list[Interval] = []
    for lo, hi in spans:
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def gaps_of(received: Sequence[Interval]) -> list[Interval]:
    """Missing seqs below the highest received one (seqs start at 1)."""
    out: list[Interval] = []
    expect = 1
    for lo, hi in received:
        if lo > expect:
            out.append((expect, lo - 1))
        expect = hi + 1
    return out


@dataclass(frozen=True, slots=True)
class GapReport:
    """What the consumer can say about one gateway's sequence, cross-checked with its status.

    - `contiguous_seq`: every seq 1..contiguous_seq is stored.
    - `gap_count`: seqs missing below `max_seq`; `tail`: seqs the gateway reports acknowledged by
      the broker (`last_acked_seq`) above anything stored.
    - `missing` = gap_count + tail. Of those, `backlog` may still be queued on the gateway,
      `drops` were dropped by its quota policy and `dead_letter` refused by the broker;
      `rejected` this consumer dead-lettered (invalid events); `unexplained` is the rest: acknowledged by a broker and never delivered (a broker crash
      after PUBACK), or still in flight between broker and consumer.
    """

    contiguous_seq: int
    max_seq: int
    gap_count: int
    tail: int
    missing: int
    unexplained: int
    gaps: tuple[Interval, ...]


def report(
    received: Sequence[Interval],
    last_acked_seq: int = 0,
    backlog: int = 0,
    drops: int = 0,
    dead_letter: int = 0,
    rejected: int = 0,
) -> GapReport:
    gaps = gaps_of(received)
    contiguous = received[0][1] if received and received[0][0] == 1 else 0
    max_seq = received[-1][1] if received else 0
    gap_count = sum(hi - lo + 1 for lo, hi in gaps)
    tail = max(0, last_acked_seq - max_seq)
    missing = gap_count + tail
    return GapReport(
        contiguous_seq=contiguous,
        max_seq=max_seq,
        gap_count=gap_count,
        tail=tail,
        missing=missing,
        unexplained=max(0, missing - backlog - drops - dead_letter - rejected),
        gaps=tuple(gaps[:MAX_LISTED_GAPS]),
    )
