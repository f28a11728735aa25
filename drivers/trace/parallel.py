"""Reading a large trace with several processes: parsing is most of replay's work.

The file is cut into blocks of BLOCK bytes at line starts, dealt round-robin to forked worker
processes (block k to worker k mod n). Each worker finds and parses its blocks' tag sightings
(`read_blocks` on the block's byte range) and sends the column blocks back through its own
bounded queue. The caller takes block 0 from worker 0, block 1 from worker 1, and so on: the
blocks arrive in file order, exactly as `read_blocks` on the whole file gives them, while the
pipeline works on one block and the workers parse the next ones. A worker runs at most AHEAD
blocks ahead of the caller, so memory stays bounded whatever the size of the trace.

Stats are summed; malformed lines are reported by the worker that meets them, with their line
number in the whole file.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import queue
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import IO

from positioning.tags import TagResolver

from .reader import MAX_REPORTED, LineCounter, SightingBlock, TraceStats, read_blocks, require_trace

BLOCK = 1 << 22  # bytes of trace per task
AHEAD = 6  # queued results per worker, at most
MIN_BYTES_PER_WORKER = 8 << 20  # below this, forking costs more than it saves


def default_workers() -> int:
    """Parser processes: one per core besides the main process's own (which runs the pipeline),
    at least one, at most 3 (a Pi 4: the main process and three parsers on four cores, about
    200 MB together). More parsers than that share cores with the pipeline: on two cores, two
    parsers and the pipeline took 0.44 s of a trace whose parsing is light where one parser
    took 0.38 s (and 1.28 against 1.40 s where parsing is most of the work)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(3, (cores or 1) - 1))


class _Done:
    """End of one block's results."""


class TraceReaders:
    """The parser processes of one trace, started at construction: a caller that knows the
    receivers and the tag resolver before it has built its pipeline (replay) starts them first,
    so the first blocks are parsed while the pipeline is being built. `blocks` then gives what
    `read_blocks` gives; `close` (or leaving the `with`) ends the processes whatever happened.
    Where parallel parsing does not pay (a small or gzipped file, one worker, no fork) no process
    is started and `blocks` reads in this process; `workers`: how many parser processes (0: none,
    parse in this process; None: `default_workers`)."""

    def __init__(
        self,
        path: str | Path,
        rx_index: dict[str, int],
        resolver: TagResolver,
        workers: int | None = None,
    ) -> None:
        p = require_trace(path)  # a missing file is the caller's error, raised here
        self.path, self.rx_index, self.resolver = path, rx_index, resolver
        self._jobs: list[tuple[BaseProcess, Queue[object]]] = []
        size = p.stat().st_size
        n = min(default_workers() if workers is None else workers, size // MIN_BYTES_PER_WORKER)
        if n < 1 or p.suffix == ".gz" or "fork" not in mp.get_all_start_methods():
            return
        ctx = mp.get_context("fork")
        self._n_blocks = -(-size // BLOCK)
        try:
            for w in range(n):
                q: Queue[object] = ctx.Queue(maxsize=AHEAD)
                proc = ctx.Process(
                    target=_work,
                    args=(str(path), w, n, self._n_blocks, size, rx_index, resolver, q),
                    daemon=True,
                )
                proc.start()
                self._jobs.append((proc, q))
        except BaseException:
            self.close()
            raise

    def blocks(self, stats: TraceStats) -> Iterator[SightingBlock]:
        """The trace's sightings in file order, as `read_blocks` gives them; `stats` summed."""
        if not self._jobs:
            yield from read_blocks(self.path, self.rx_index, stats, self.resolver)
            return
        jobs, n = self._jobs, len(self._jobs)
        for k in range(self._n_blocks):
            proc, q = jobs[k % n]
            while not isinstance(item := _get(proc, q), _Done):
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, SightingBlock)
                if stats.first_t is None:
                    stats.first_t = float(item.t[0])
                stats.last_t = float(item.t[-1])
                stats.sightings += len(item)
                yield item
        parts = [_get(proc, q) for proc, q in jobs]
        _merge(stats, [st for st in parts if isinstance(st, TraceStats)], str(self.path))

    def close(self) -> None:
        for proc, q in self._jobs:
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)
            q.close()
        self._jobs = []

    def __enter__(self) -> TraceReaders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_blocks_parallel(
    path: str | Path,
    rx_index: dict[str, int],
    stats: TraceStats,
    resolver: TagResolver,
    workers: int | None = None,
) -> Iterator[SightingBlock]:
    """`read_blocks`, with the parsing spread over `workers` processes where that pays (0: in
    this process)."""
    with TraceReaders(path, rx_index, resolver, workers) as readers:
        yield from readers.blocks(stats)


def _line_start(fh: IO[bytes], offset: int, size: int) -> int:
    """The first line start at or after `offset`."""
    if offset <= 0 or offset >= size:
        return min(max(offset, 0), size)
    fh.seek(offset - 1)
    fh.readline()
    return min(fh.tell(), size)


def _work(
    path: str,
    w: int,
    n: int,
    n_blocks: int,
    size: int,
    rx_index: dict[str, int],
    resolver: TagResolver,
    q: Queue[object],
) -> None:
    gc.disable()  # a parser makes no reference cycles; the collector would only rescan its lists
    stats = TraceStats()  # this worker's share; first_t, last_t and sightings the caller counts
    counter = LineCounter(path)
    try:
        with open(path, "rb") as fh:
            for k in range(w, n_blocks, n):
                a, b = _line_start(fh, k * BLOCK, size), _line_start(fh, (k + 1) * BLOCK, size)
                if a < b:
                    for blk in read_blocks(
                        path, rx_index, stats, resolver, a, b, counter.lines_before
                    ):
                        q.put(blk)
                q.put(_Done())
    except Exception as e:  # reported to the caller, which raises it
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


def _merge(total: TraceStats, parts: list[TraceStats], src: str) -> None:
    for part in parts:
        total.lines += part.lines
        total.skipped_no_frame += part.skipped_no_frame
        total.bad_lines += part.bad_lines
        total.unknown_receiver += part.unknown_receiver
        total.out_of_order += part.out_of_order
        total.bad_examples.extend(part.bad_examples)
        total.order_examples.extend(part.order_examples[: MAX_REPORTED - len(total.order_examples)])
    # the first few bad lines of the file ("path:line: why"), whichever worker met them
    total.bad_examples.sort(key=lambda e: int(e[len(src) + 1 :].split(":", 1)[0]))
    del total.bad_examples[MAX_REPORTED:]
