"""Reading a large trace with several processes: parsing is most of replay's work.

The file is cut into byte ranges at line starts; one forked worker process per range finds and
parses its tag sightings (`read_blocks` on the range) and sends the column blocks back through a
queue. The caller gets the blocks in file order, exactly as `read_blocks` on the whole file would
give them, while the pipeline works on the first range and the workers parse the rest. Stats are
merged; malformed lines are reported by the worker that meets them, with their line number in
the whole file.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing as mp
import os
import queue
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path

from .replay import MAX_REPORTED, SightingBlock, TraceStats, read_blocks, require_trace

MIN_BYTES_PER_WORKER = 8 << 20  # below this, forking costs more than it saves


def default_workers() -> int:
    """One parser per core (at least 1, at most 4): the pipeline overlaps with them."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


def read_blocks_parallel(
    path: str | Path,
    rx_index: dict[str, int],
    stats: TraceStats,
    registered: dict[str, str] | None = None,
    workers: int | None = None,
) -> Iterator[SightingBlock]:
    """`read_blocks`, with the parsing spread over `workers` processes where that pays."""
    n = default_workers() if workers is None else workers
    p = require_trace(path)  # a missing file is the caller's error, raised here
    size = p.stat().st_size
    n = min(n, size // MIN_BYTES_PER_WORKER)
    if n < 2 or p.suffix == ".gz" or "fork" not in mp.get_all_start_methods():
        yield from read_blocks(path, rx_index, stats, registered)
        return
    ctx = mp.get_context("fork")
    bounds = _line_bounds(p, size, n)
    jobs: list[tuple[BaseProcess, Queue[object]]] = []
    proc: BaseProcess
    try:
        for a, b in itertools.pairwise(bounds):
            q: Queue[object] = ctx.Queue()
            proc = ctx.Process(
                target=_work, args=(str(path), a, b, rx_index, registered, q), daemon=True
            )
            proc.start()
            jobs.append((proc, q))
        for proc, q in jobs:
            while True:
                item = _get(proc, q)
                if isinstance(item, SightingBlock):
                    yield item
                    continue
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, TraceStats)
                _merge(stats, item)
                break
    finally:
        for proc, q in jobs:
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)
            q.close()


def _line_bounds(p: Path, size: int, n: int) -> list[int]:
    """n + 1 byte offsets, each the start of a line, cutting the file into n similar ranges."""
    bounds = [0]
    with open(p, "rb") as fh:
        for k in range(1, n):
            fh.seek(max(size * k // n, bounds[-1]))
            fh.readline()
            bounds.append(min(fh.tell(), size))
    bounds.append(size)
    return bounds


def _work(
    path: str,
    start: int,
    end: int,
    rx_index: dict[str, int],
    registered: dict[str, str] | None,
    q: Queue[object],
) -> None:
    gc.disable()  # a parser makes no reference cycles; the collector would only rescan its lists
    stats = TraceStats()
    try:
        for blk in read_blocks(path, rx_index, stats, registered, start=start, end=end):
            q.put(blk)
    except Exception as e:  # reported to the reader, which raises it
        q.put(e)
    q.put(stats)
    q.close()
    q.join_thread()


def _get(proc: BaseProcess, q: Queue[object]) -> object:
    while True:
        try:
            return q.get(timeout=1.0)
        except queue.Empty:
            if not proc.is_alive():
                try:
                    return q.get(timeout=1.0)
                except queue.Empty:
                    raise RuntimeError(
                        f"a trace reader process ended without finishing (exit code {proc.exitcode})"
                    ) from None


def _merge(total: TraceStats, part: TraceStats) -> None:
    total.lines += part.lines
    total.sightings += part.sightings
    total.skipped_no_frame += part.skipped_no_frame
    total.bad_lines += part.bad_lines
    total.unknown_receiver += part.unknown_receiver
    if total.first_t is None:
        total.first_t = part.first_t
    if part.last_t is not None:
        total.last_t = part.last_t
    total.bad_examples.extend(part.bad_examples[: MAX_REPORTED - len(total.bad_examples)])
