"""What the technician web app costs the daemon: memory and CPU with browsers connected.

    python -m benchmarks.web [--shoppers 500] [--clients 5] [--warmup 40] [--windows 6]
                             [--window 20]

Two real daemons (`shelfgate run`, each its own process and its own mosquitto) run side by side
on the same simulated store in real time (`sim:config/layout.toml?shoppers=N`: about N live
tags): one without the web app, one with `--web`, `--clients` live streams (server-sent events,
what the floor map opens; one of them also follows a tag's detail, as an open tag panel does)
and a Prometheus scrape of /metrics every 15 s. After `--warmup` seconds, each daemon's CPU time
(utime + stime) is read over `--windows` windows of `--window` seconds, the same windows for
both (other load on the machine hits both alike), and its peak RSS (/proc/PID/status VmRSS).
The difference is the web app's cost. Budget: +30 MB RSS, +10% of one core. The clients run in
this process, so their own work is not counted.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.mqtt_helpers import Broker, free_port

LAYOUT = Path("config/layout.toml")
PASSWORD = "bench-password"
AUTH = "Basic " + base64.b64encode(f"technician:{PASSWORD}".encode()).decode()
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def get(url: str) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": AUTH})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


class StreamClient(threading.Thread):
    """Reads /api/v1/stream as a browser's EventSource does; counts the messages."""

    def __init__(self, port: int, query: str = "") -> None:
        super().__init__(daemon=True)
        self.port, self.query = port, query
        self.messages = 0
        self.bytes = 0
        self.stop = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", "/api/v1/stream" + self.query, headers={"Authorization": AUTH})
        resp = conn.getresponse()
        assert resp.status == 200, resp.status
        while not self.stop.is_set():
            line = resp.readline()
            if not line:
                return
            self.bytes += len(line)
            if line.startswith(b"event:"):
                self.messages += 1


@dataclass
class Run:
    web: bool
    proc: subprocess.Popen[bytes]
    broker: Broker
    port: int
    cpu: list[float] = field(default_factory=list)  # share of one core, per window
    peak_rss: float = 0.0


def start(d: Path, shoppers: int, web: bool) -> Run:
    broker = Broker(d).start()
    port = free_port()
    (d / "pw").write_text(PASSWORD)
    cfg = d / "gateway.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw-bench"\ndata_dir = "{d / "data"}"\n'
        f'[privacy]\nsecret = "bench-secret-0123456789"\n'
        f'[mqtt]\nbroker = "{broker.url}"\nconnect_delay_max_s = 0.0\n'
        f'[web]\npassword_file = "{d / "pw"}"\n'
    )
    args = [sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg), "--layout", str(LAYOUT),
            "--source", f"sim:{LAYOUT}?shoppers={shoppers}&seed=1"]  # fmt: skip
    if web:
        args += ["--web", f"127.0.0.1:{port}"]
    env = dict(os.environ, SHELFGATE_CLOCK_SYNCED="1")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Run(web, proc, broker, port)


def wait_up(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            get(f"http://127.0.0.1:{port}/api/v1/state")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop(run: Run) -> None:
    run.proc.send_signal(signal.SIGTERM)
    run.proc.wait(30)
    run.broker.stop()


def measure(runs: list[Run], windows: int, window: float, port: int) -> None:
    """Both daemons over the same windows: load from elsewhere on the machine hits both."""
    next_scrape = 0.0
    for _ in range(windows):
        c0 = [cpu_s(r.proc.pid) for r in runs]
        t0 = time.monotonic()
        while time.monotonic() - t0 < window:
            for r in runs:
                r.peak_rss = max(r.peak_rss, rss_mb(r.proc.pid))
            if time.monotonic() >= next_scrape:  # Prometheus, every 15 s
                next_scrape = time.monotonic() + 15
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/metrics", headers={"Authorization": AUTH}
                )
                urllib.request.urlopen(req, timeout=10).read()
            time.sleep(0.5)
        dt = time.monotonic() - t0
        for r, c in zip(runs, c0, strict=True):
            r.cpu.append((cpu_s(r.proc.pid) - c) / dt)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shoppers", type=int, default=500)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--warmup", type=float, default=40.0)
    ap.add_argument("--windows", type=int, default=6)
    ap.add_argument("--window", type=float, default=20.0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        base, web = start(Path(d1), a.shoppers, False), start(Path(d2), a.shoppers, True)
        streams: list[StreamClient] = []
        try:
            wait_up(web.port)
            time.sleep(a.warmup / 2)  # the store fills (the simulation's time, not a result's)
            state = get(f"http://127.0.0.1:{web.port}/api/v1/state")
            follow = state["tags"][0]["tag"] if state["tags"] else ""
            streams = [StreamClient(web.port, f"?tag={follow}" if i == 0 and follow else "")
                       for i in range(a.clients)]  # fmt: skip
            for s in streams:
                s.start()
            time.sleep(a.warmup / 2)
            measure([base, web], a.windows, a.window, web.port)
            tags = len(get(f"http://127.0.0.1:{web.port}/api/v1/state")["tags"])
        finally:
            for s in streams:
                s.stop.set()
            stop(base)
            stop(web)
    diffs = sorted(w - b for w, b in zip(web.cpu, base.cpu, strict=True))
    for r in (base, web):
        print(json.dumps({"web": r.web, "peak_rss_mb": round(r.peak_rss, 1),
                          "cpu_core_per_window": [round(c, 3) for c in r.cpu]}))  # fmt: skip
    print(json.dumps({"stream_messages": [s.messages for s in streams],
                      "bytes_per_message": round(max(s.bytes / max(s.messages, 1) for s in streams))}))  # fmt: skip
    print(
        f"web app with {a.clients} streams, {tags} live tags: peak RSS {base.peak_rss:.1f} -> "
        f"{web.peak_rss:.1f} MB ({web.peak_rss - base.peak_rss:+.1f} MB, budget +30); CPU "
        f"{statistics.median(base.cpu):.1%} -> {statistics.median(web.cpu):.1%} of one core, "
        f"difference per window median {statistics.median(diffs) * 100:+.1f} points "
        f"(min {diffs[0] * 100:+.1f}, max {diffs[-1] * 100:+.1f}; budget +10)"
    )


if __name__ == "__main__":
    main()
