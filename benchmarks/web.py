"""What the technician web app costs the daemon: memory and CPU with browsers connected.

    python -m benchmarks.web [--shoppers 500] [--clients 5] [--warmup 40] [--window 60]

The real daemon (`shelfgate run`, its own process) runs on a simulated store in real time
(`sim:config/layout.toml?shoppers=N`: about N live tags) against a local mosquitto, twice:
without the web app, and with `--web` and `--clients` live streams (server-sent events, what
the floor map opens; one of them also follows a tag's detail, as an open tag panel does) plus
a Prometheus scrape of /metrics every 15 s. After `--warmup` seconds, the daemon's RSS
(/proc/PID/status VmRSS, peak over the window) and CPU time (utime + stime) over `--window`
seconds are read. The difference between the runs is the web app's cost. Budget: +30 MB RSS,
+10% of one core. The clients run in this process, so their own work is not counted.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
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


def measure(
    d: Path, shoppers: int, web: bool, clients: int, warmup: float, window: float
) -> dict[str, Any]:
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
    streams: list[StreamClient] = []
    try:
        if web:
            deadline = time.monotonic() + 30
            while True:
                try:
                    get(f"http://127.0.0.1:{port}/api/v1/state")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        time.sleep(warmup / 2)  # the store fills (a wait for the simulation, not for a result)
        tags = 0
        if web:
            state = get(f"http://127.0.0.1:{port}/api/v1/state")
            tags = len(state["tags"])
            follow = state["tags"][0]["tag"] if state["tags"] else ""
            for i in range(clients):
                q = f"?tag={follow}" if i == 0 and follow else ""
                streams.append(StreamClient(port, q))
            for s in streams:
                s.start()
        time.sleep(warmup / 2)
        c0, t0 = cpu_s(proc.pid), time.monotonic()
        peak = rss_mb(proc.pid)
        next_scrape = 0.0
        while time.monotonic() - t0 < window:
            peak = max(peak, rss_mb(proc.pid))
            if web and time.monotonic() >= next_scrape:
                next_scrape = time.monotonic() + 15
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/metrics", headers={"Authorization": AUTH}
                )
                urllib.request.urlopen(req, timeout=10).read()
            time.sleep(0.5)
        cpu = (cpu_s(proc.pid) - c0) / (time.monotonic() - t0)
        if web:
            tags = len(get(f"http://127.0.0.1:{port}/api/v1/state")["tags"])
        msgs = [s.messages for s in streams]
        sizes = [s.bytes / max(s.messages, 1) for s in streams]
        return {"web": web, "rss_mb": round(peak, 1), "cpu_core": round(cpu, 3), "tags": tags,
                "stream_messages": msgs, "bytes_per_message": round(max(sizes, default=0))}  # fmt: skip
    finally:
        for s in streams:
            s.stop.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shoppers", type=int, default=500)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--warmup", type=float, default=40.0)
    ap.add_argument("--window", type=float, default=60.0)
    a = ap.parse_args()
    runs = []
    for web in (False, True):
        with tempfile.TemporaryDirectory() as d:
            runs.append(measure(Path(d), a.shoppers, web, a.clients, a.warmup, a.window))
            print(json.dumps(runs[-1]), flush=True)
    base, with_web = runs
    d_rss = with_web["rss_mb"] - base["rss_mb"]
    d_cpu = with_web["cpu_core"] - base["cpu_core"]
    print(
        f"web app with {a.clients} streams, {with_web['tags']} live tags: "
        f"RSS {base['rss_mb']:.1f} -> {with_web['rss_mb']:.1f} MB ({d_rss:+.1f} MB, budget +30), "
        f"CPU {base['cpu_core']:.1%} -> {with_web['cpu_core']:.1%} of one core "
        f"({d_cpu * 100:+.1f} points, budget +10)"
    )


if __name__ == "__main__":
    main()
