"""Store simulator physics: shoppers walking and stopping at shelves, and the radio they make.

Pure and deterministic for a seed: no IO, no clock. `StoreSimulation.chunk(t0, t1)` returns
every advertisement heard by every receiver in [t0, t1) (sim seconds), generated vectorised.

People
- shoppers with the store app (iBeacon, rotating random addresses every ~15 min) or carrying a
  store cart tag (Eddystone-UID / AltBeacon, fixed address); about `shoppers` are in the store at
  any time: the ones present at t=0 are mid-visit, new ones arrive as a Poisson process;
- a visit: enter, walk (0.8-1.4 m/s) to 2-6 shelves, stop at each (a mix of short glances,
  median ~12 s, and real interest, median ~80 s, log-normal), leave;
- unrelated devices (phones, watches, headphones of people without the app; static gadgets):
  Apple Continuity, Samsung, Microsoft Swift Pair, Google Fast Pair frames that are never tags.

Radio, per advertisement and receiver
- log-distance path loss (exponent ~2.1 with per-receiver variation) in 3-D;
- per-device transmit offset (phones differ, sd 3 dB) and per-receiver gain (sd 2.5 dB);
- spatially correlated log-normal shadowing per receiver (sd 4 dB, ~3 m correlation), so
  nearby positions look alike, as in real stores;
- body loss up to ~10 dB when the shopper's body is between phone and receiver;
- fast fading (Rician, K = 6: ~2.7 dB sd with deep fades);
- reception: a scanner hears one of three channels, collisions; the probability falls to zero
  around the receiver's sensitivity (-95 dBm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from . import frames
from .layout import TAG_HEIGHT, FloatArray, Layout, points_in_polygon
from .types import ZoneSegment

APP_UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"
CALIBRATION_UUID = "c0ffee00-5e1f-4a7e-9a7e-000000000001"
EDDYSTONE_NAMESPACE = "5368656c666761746521"  # "Shelfgate!"
ALTBEACON_ID1 = "a1b2c3d4-0000-4000-8000-5347a7e00001"
ADDR_ROTATION_S = 900.0


@dataclass(frozen=True, slots=True)
class RadioParams:
    ref_rssi: float = -59.0  # at 1 m
    exponent: float = 2.1
    exponent_sd: float = 0.15
    device_sd: float = 3.0
    receiver_gain_sd: float = 2.5
    shadow_sd: float = 4.0
    shadow_corr_m: float = 3.0
    body_loss_max: float = 10.0
    rician_k: float = 6.0
    sensitivity: float = -95.0
    sensitivity_width: float = 1.5
    base_loss: float = 0.15


@dataclass(frozen=True, slots=True)
class SimParams:
    shoppers: int = 20
    devices: int = 40  # unrelated advertisers
    seed: int = 1
    store_seed: int | None = None  # the store's radio environment; default: from the store id
    start_time: float = 1767261600.0  # trace time of sim second 0 (2026-01-01 10:00 UTC)
    app_uuid: str = APP_UUID
    major: int = 1
    cart_tag_share: float = 0.2
    tag_interval_s: tuple[float, float] = (0.25, 0.6)
    device_interval_s: tuple[float, float] = (0.3, 2.0)
    static_device_share: float = 0.3
    horizon_s: float = 3600.0  # how far ahead unrelated people's paths are generated
    radio: RadioParams = field(default_factory=RadioParams)


@dataclass(slots=True)
class _Person:
    pid: int
    kind: str  # "app", "eddystone", "altbeacon", "other", "static"
    tag: str | None
    payload: str  # JSON fragment: the "mfg"/"svc" members of a trace line
    keys_t: FloatArray
    keys_x: FloatArray
    keys_y: FloatArray
    heading: FloatArray  # heading (radians) from keys_t[i] to keys_t[i+1]
    interval: float
    phase: float
    tx_offset: float
    body_loss: float
    fixed_addr: str | None
    stops: list[tuple[float, float, str | None]]  # (start, end, zone) where the person stood

    @property
    def arrive(self) -> float:
        return float(self.keys_t[0])

    @property
    def leave(self) -> float:
        return float(self.keys_t[-1])


@dataclass(frozen=True, slots=True)
class Chunk:
    """Advertisements heard in one time window, sorted by time."""

    t: FloatArray
    rx: npt.NDArray[np.int64]
    person: npt.NDArray[np.int64]
    rssi: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.t)


class StoreSimulation:
    def __init__(self, layout: Layout, params: SimParams | None = None) -> None:
        if not layout.zones:
            raise ValueError("the layout has no zones: shoppers have nowhere to stop")
        if not layout.receivers:
            raise ValueError("the layout has no receivers")
        self.layout = layout
        self.p = p = params or SimParams()
        # the store's radio environment (receiver gains, shadowing) belongs to the store, not to
        # a run: a calibration walk and later shopper traces of one layout share it
        store_seed = p.store_seed if p.store_seed is not None else _stable_seed(layout.store_id)
        env = np.random.default_rng(store_seed)
        self.rng = np.random.default_rng(p.seed)
        self.bounds = layout.bounds()
        self.entrance = (self.bounds[0] + 0.5, (self.bounds[1] + self.bounds[3]) / 2)
        rxs = layout.receivers
        self.rx_xyz = np.array([[r.x, r.y, r.z] for r in rxs])
        self.rx_gain = np.clip(env.normal(0, p.radio.receiver_gain_sd, len(rxs)), -6, 6)
        self.rx_exp = p.radio.exponent + env.normal(0, p.radio.exponent_sd, len(rxs))
        # (receiver index, sim time, dB): a receiver's gain changes from that time on (a pallet
        # in front of it, shelves restocked, a knock): what reference beacons are there to catch
        self.gain_steps: list[tuple[int, float, float]] = []
        self._shadow_step = 0.5
        self._shadow = self._shadow_fields(env)
        self.persons: list[_Person] = []
        self._next_arrival = 0.0
        self._visit_mean = 0.0
        self._addr_cache: dict[tuple[int, int], str] = {}
        self._payload_cache: dict[tuple[int, int], str] = {}
        self._init_population()
        for ref in layout.references:  # the layout's fixed beacons are powered (those with a
            if not ref.tag.startswith("mac:"):  # frame: one known by its address has none here)
                self.add_fixed_beacon(ref.x, ref.y, ref.tag)

    # ---------------------------------------------------------------- population
    def _init_population(self) -> None:
        p = self.p
        for _ in range(p.shoppers):
            self._add_shopper(arrive=None)
        # arrivals keep about `shoppers` in the store: rate = N / mean visit length
        lengths = [x.leave - x.arrive for x in self.persons] or [600.0]
        self._visit_mean = float(np.mean(lengths))
        self._next_arrival = self._draw_interarrival(0.0)
        n_static = round(p.devices * p.static_device_share)
        for i in range(p.devices):
            self._add_device(static=i < n_static)

    def _draw_interarrival(self, t: float) -> float:
        if self.p.shoppers <= 0:
            return math.inf
        rate = self.p.shoppers / max(self._visit_mean, 60.0)
        return t + float(self.rng.exponential(1.0 / rate))

    def ensure_until(self, t: float) -> None:
        """Create the shoppers who arrive before sim time `t`."""
        while self._next_arrival < t:
            self._add_shopper(arrive=self._next_arrival)
            self._next_arrival = self._draw_interarrival(self._next_arrival)

    def _random_point_in_zone(self, zi: int) -> tuple[float, float]:
        zone = self.layout.zones[zi]
        pts = np.asarray(zone.polygon, dtype=float)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        # stand in the inner part of the zone (people stand at the shelf, not on its border)
        for _ in range(50):
            x, y = self.rng.uniform(lo, hi)
            if points_in_polygon(np.array([x]), np.array([y]), zone.polygon)[0]:
                cx, cy = zone.centroid
                return cx + 0.7 * (x - cx), cy + 0.7 * (y - cy)
        return zone.centroid

    def _dwell_time(self) -> float:
        if self.rng.random() < 0.35:
            return float(np.clip(self.rng.lognormal(math.log(12.0), 0.5), 3.0, 40.0))
        return float(np.clip(self.rng.lognormal(math.log(80.0), 0.6), 20.0, 600.0))

    def _visit(
        self, t0: float, n_stops: int, zones: list[int] | None = None
    ) -> tuple[
        list[float], list[float], list[float], list[float], list[tuple[float, float, str | None]]
    ]:
        rng = self.rng
        speed = float(rng.uniform(0.8, 1.4))
        x, y = self.entrance
        ts, xs, ys, hs = [t0], [x], [y], list[float]()
        stops: list[tuple[float, float, str | None]] = []
        t = t0
        order = (
            zones
            if zones is not None
            else list(
                rng.choice(
                    len(self.layout.zones), size=min(n_stops, len(self.layout.zones)), replace=False
                )
            )
        )
        for zi in order:
            nx, ny = self._random_point_in_zone(int(zi))
            t, x, y = self._walk(ts, xs, ys, hs, t, x, y, nx, ny, speed)
            dwell = self._dwell_time()
            stops.append((t, t + dwell, self.layout.zones[int(zi)].id))
            # at the shelf people turn and shuffle: a new facing and a small step every 5-20 s
            end = t + dwell
            sx, sy = nx, ny
            while True:
                hs.append(float(rng.uniform(-math.pi, math.pi)))
                t = min(end, t + float(rng.uniform(5.0, 20.0)))
                if t >= end:
                    break
                sx = nx + float(rng.uniform(-0.3, 0.3))
                sy = ny + float(rng.uniform(-0.3, 0.3))
                ts.append(t)
                xs.append(sx)
                ys.append(sy)
            ts.append(end)
            xs.append(sx)
            ys.append(sy)
            x, y = sx, sy
        ex, ey = self.entrance
        t, x, y = self._walk(ts, xs, ys, hs, t, x, y, ex, ey, speed)
        hs.append(0.0)
        return ts, xs, ys, hs, stops

    def _walk(
        self,
        ts: list[float],
        xs: list[float],
        ys: list[float],
        hs: list[float],
        t: float,
        x: float,
        y: float,
        nx: float,
        ny: float,
        speed: float,
    ) -> tuple[float, float, float]:
        """Append the keyframes of a walk from (x, y) to (nx, ny) along the layout's aisles."""
        for wx, wy in self.layout.route(x, y, nx, ny):
            hs.append(math.atan2(wy - y, wx - x))
            t += math.hypot(wx - x, wy - y) / speed
            ts.append(t)
            xs.append(wx)
            ys.append(wy)
            x, y = wx, wy
        return t, x, y

    def _add_shopper(self, arrive: float | None) -> None:
        rng, p = self.rng, self.p
        pid = len(self.persons)
        n_stops = int(rng.integers(2, 7))
        t0 = 0.0 if arrive is None else arrive
        ts, xs, ys, hs, stops = self._visit(t0, n_stops)
        if arrive is None:  # present at the start: shift so sim time 0 falls inside the visit
            shift = float(rng.uniform(0.0, ts[-1] - ts[0]))
            ts = [t - shift for t in ts]
            stops = [(a - shift, b - shift, z) for a, b, z in stops]
        u = rng.random()
        fixed: str | None = None
        if u < p.cart_tag_share / 2:
            kind = "eddystone"
            inst = f"{pid:012x}"
            data = frames.eddystone_uid_payload(EDDYSTONE_NAMESPACE, inst)
            payload = f'"svc": {{"{frames.EDDYSTONE_UUID}": "{data.hex()}"}}'
            tag = f"eddystone:{EDDYSTONE_NAMESPACE}:{inst}"
            fixed = _mac(rng, public=True)
        elif u < p.cart_tag_share:
            kind = "altbeacon"
            data = frames.altbeacon_payload(ALTBEACON_ID1, p.major, pid)
            payload = f'"mfg": {{"280": "{data.hex()}"}}'
            tag = f"altbeacon:{ALTBEACON_ID1}:{p.major}:{pid}"
            fixed = _mac(rng, public=True)
        else:
            kind = "app"
            minor = 1000 + pid
            data = frames.ibeacon_payload(p.app_uuid, p.major, minor)
            payload = f'"mfg": {{"76": "{data.hex()}"}}'
            tag = f"ibeacon:{p.app_uuid}:{p.major}:{minor}"
        lo, hi = p.tag_interval_s
        interval = float(rng.uniform(lo, hi))
        self.persons.append(
            _Person(
                pid,
                kind,
                tag,
                payload,
                np.array(ts),
                np.array(xs),
                np.array(ys),
                np.array(hs),
                interval,
                float(rng.uniform(0, interval)),
                float(rng.normal(0, p.radio.device_sd)),
                float(rng.uniform(3.0, p.radio.body_loss_max)),
                fixed,
                stops,
            )
        )

    def add_technician(
        self,
        stands: list[tuple[float, float, str | None]],
        t0: float,
        stand_s: float,
        uuid: str = CALIBRATION_UUID,
    ) -> tuple[str, list[tuple[float, float, float, float, str | None]]]:
        """A technician carrying a reference beacon stands at each (x, y) for `stand_s`, turning
        slowly on the spot. Returns the tag id and the stands as (start, end, x, y, zone)."""
        rng = self.rng
        speed = 1.0
        x, y = self.entrance
        ts, xs, ys, hs = [t0], [x], [y], list[float]()
        out: list[tuple[float, float, float, float, str | None]] = []
        t = t0
        for sx, sy, zone in stands:
            t, x, y = self._walk(ts, xs, ys, hs, t, x, y, sx, sy, speed)
            ts.pop()
            xs.pop()
            ys.pop()
            t += 2.0
            # four quarter turns while standing: body loss averages out, as technicians are told
            for q in range(4):
                ts.append(t + q * stand_s / 4)
                xs.append(sx)
                ys.append(sy)
                hs.append(float(rng.uniform(-math.pi, math.pi)) + q * math.pi / 2)
            out.append((t, t + stand_s, sx, sy, zone))
            t += stand_s
            ts.append(t)
            xs.append(sx)
            ys.append(sy)
            x, y = sx, sy
        hs.append(0.0)
        pid = len(self.persons)
        data = frames.ibeacon_payload(uuid, 0, 1)
        tag = f"ibeacon:{uuid}:0:1"
        self.persons.append(
            _Person(
                pid,
                "app",
                tag,
                f'"mfg": {{"76": "{data.hex()}"}}',
                np.array(ts),
                np.array(xs),
                np.array(ys),
                np.array(hs),
                0.3,
                0.0,
                0.0,
                3.0,
                _mac(rng, public=True),
                [],
            )
        )
        return tag, out

    def add_fixed_beacon(self, x: float, y: float, tag: str, interval: float = 1.0) -> None:
        """A beacon fixed at (x, y) for the whole run: a layout's reference beacon (`tag` an
        ibeacon, altbeacon or eddystone id; see `beacon_payload`)."""
        pid = len(self.persons)
        rng = np.random.default_rng([self.p.seed, _stable_seed(tag), 13])  # run's draws untouched
        self.persons.append(
            _Person(
                pid,
                "static",
                tag,
                beacon_payload(tag),
                np.array([-1e9, 1e12]),
                np.array([x, x]),
                np.array([y, y]),
                np.array([0.0, 0.0]),
                interval,
                float(rng.uniform(0, interval)),
                0.0,
                0.0,
                _mac(rng, public=True),
                [],
            )
        )

    def _add_device(self, static: bool) -> None:
        rng, p = self.rng, self.p
        pid = len(self.persons)
        if static:
            xmin, ymin, xmax, ymax = self.bounds
            x, y = float(rng.uniform(xmin, xmax)), float(rng.uniform(ymin, ymax))
            ts, xs, ys, hs = [-1e9, 1e12], [x, x], [y, y], [0.0, 0.0]
            kind = "static"
        else:
            # a person without the app wandering between shelves for the whole run, revisiting
            t, ts, xs, ys, hs = -float(rng.uniform(0, 600)), [], [], [], []
            while t < self.p.horizon_s:
                vts, vxs, vys, vhs, _ = self._visit(t, 6)
                ts += vts
                xs += vxs
                ys += vys
                hs += vhs
                t = vts[-1] + 1.0
            kind = "other"
        lo, hi = p.device_interval_s
        interval = float(rng.uniform(lo, hi))
        self.persons.append(
            _Person(
                pid,
                kind,
                None,
                "",
                np.array(ts),
                np.array(xs),
                np.array(ys),
                np.array(hs),
                interval,
                float(rng.uniform(0, interval)),
                float(rng.normal(0, p.radio.device_sd)),
                float(rng.uniform(3.0, p.radio.body_loss_max)),
                None,
                [],
            )
        )

    # ---------------------------------------------------------------- radio
    def _shadow_fields(self, env: np.random.Generator) -> FloatArray:
        xmin, ymin, xmax, ymax = self.bounds
        st = self._shadow_step
        nx = int((xmax - xmin) / st) + 8
        ny = int((ymax - ymin) / st) + 8
        r = self.p.radio
        out = np.empty((len(self.layout.receivers), nx, ny))
        kx = np.fft.fftfreq(nx, st)[:, None]
        ky = np.fft.fftfreq(ny, st)[None, :]
        # Gaussian low-pass: correlation ~exp(-d^2 / corr^2)
        filt = np.exp(-((np.pi * r.shadow_corr_m) ** 2) * (kx**2 + ky**2) / 2.0)
        for i in range(len(self.layout.receivers)):
            white = env.normal(size=(nx, ny))
            f = np.real(np.fft.ifft2(np.fft.fft2(white) * filt))
            out[i] = f / f.std() * r.shadow_sd
        return out

    def _shadow_at(self, xs: FloatArray, ys: FloatArray) -> FloatArray:
        xmin, ymin = self.bounds[0], self.bounds[1]
        st = self._shadow_step
        _, nx, ny = self._shadow.shape
        ix = np.clip(((xs - xmin) / st).astype(np.int64) + 4, 0, nx - 1)
        iy = np.clip(((ys - ymin) / st).astype(np.int64) + 4, 0, ny - 1)
        res: FloatArray = self._shadow[:, ix, iy].T  # points x receivers
        return res

    def _rssi(self, person: _Person, t: FloatArray, rng: np.random.Generator) -> FloatArray:
        r = self.p.radio
        x = np.interp(t, person.keys_t, person.keys_x)
        y = np.interp(t, person.keys_t, person.keys_y)
        seg = np.clip(
            np.searchsorted(person.keys_t, t, side="right") - 1, 0, len(person.heading) - 1
        )
        head = person.heading[seg]
        dx = self.rx_xyz[None, :, 0] - x[:, None]
        dy = self.rx_xyz[None, :, 1] - y[:, None]
        dz = self.rx_xyz[None, :, 2] - TAG_HEIGHT
        d = np.maximum(np.sqrt(dx * dx + dy * dy + dz * dz), 0.3)
        level = (
            r.ref_rssi
            + person.tx_offset
            + self.rx_gain[None, :]
            - 10.0 * self.rx_exp[None, :] * np.log10(d)
        )
        level += self._shadow_at(x, y)
        for i, t_from, db in self.gain_steps:
            level[:, i] += np.where(t >= t_from, db, 0.0)
        # body loss: largest when the receiver is behind the carrier
        horiz = np.maximum(np.hypot(dx, dy), 1e-6)
        cos_a = (np.cos(head)[:, None] * dx + np.sin(head)[:, None] * dy) / horiz
        # a receiver high above the carrier sees over the body: scale by the horizontal share
        level -= person.body_loss * (1.0 - cos_a) / 2.0 * (horiz / d)
        k = r.rician_k
        n = t.shape[0] * d.shape[1]
        h = math.sqrt(k / (k + 1)) + math.sqrt(1 / (2 * (k + 1))) * (
            rng.standard_normal(n) + 1j * rng.standard_normal(n)
        )
        level += (20.0 * np.log10(np.abs(h))).reshape(d.shape)
        return level

    def chunk(self, t0: float, t1: float) -> Chunk:
        """All advertisements heard in sim time [t0, t1)."""
        self.ensure_until(t1)
        rng = np.random.default_rng([self.p.seed, int(t0 * 1000) & 0x7FFFFFFF])
        r = self.p.radio
        ts, rxs, ps, rs = [], [], [], []
        for person in self.persons:
            a, b = max(t0, person.arrive), min(t1, person.leave)
            if a >= b:
                continue
            k0 = math.ceil((a - person.phase) / person.interval)
            k1 = math.ceil((b - person.phase) / person.interval)
            if k1 <= k0:
                continue
            t = person.phase + np.arange(k0, k1) * person.interval
            t = t + rng.uniform(0, 0.01, len(t))  # advDelay
            t = t[(t >= a) & (t < b)]
            if len(t) == 0:
                continue
            level = self._rssi(person, t, rng)
            p_rx = (1.0 - r.base_loss) / (
                1.0 + np.exp(-(level - r.sensitivity) / r.sensitivity_width)
            )
            heard = rng.random(level.shape) < p_rx
            ti, ri = np.nonzero(heard)
            ts.append(t[ti] + rng.uniform(0.0, 0.004, len(ti)))
            rxs.append(ri)
            ps.append(np.full(len(ti), person.pid))
            rs.append(np.clip(np.round(level[ti, ri]), -127, -1).astype(np.int64))
        if not ts:
            e = np.empty(0)
            return Chunk(e, e.astype(np.int64), e.astype(np.int64), e.astype(np.int64))
        t_all = np.concatenate(ts)
        order = np.argsort(t_all, kind="stable")
        return Chunk(
            t_all[order],
            np.concatenate(rxs)[order],
            np.concatenate(ps)[order],
            np.concatenate(rs)[order],
        )

    # ---------------------------------------------------------------- identities
    def address(self, pid: int, t: float) -> str:
        person = self.persons[pid]
        if person.fixed_addr is not None:
            return person.fixed_addr
        epoch = int((t + pid * 37.0) // ADDR_ROTATION_S)
        key = (pid, epoch)
        addr = self._addr_cache.get(key)
        if addr is None:
            if len(self._addr_cache) > 100_000:
                self._addr_cache.clear()
            g = np.random.default_rng([self.p.seed, pid, epoch, 7])
            addr = _mac(g, public=False)
            self._addr_cache[key] = addr
        return addr

    def payload(self, pid: int, t: float) -> str:
        """The JSON members carrying the frame ("mfg": {...} and/or "svc": {...})."""
        person = self.persons[pid]
        if person.payload:
            return person.payload
        epoch = int((t + pid * 37.0) // ADDR_ROTATION_S)
        key = (pid, epoch)
        pl = self._payload_cache.get(key)
        if pl is None:
            if len(self._payload_cache) > 100_000:
                self._payload_cache.clear()
            g = np.random.default_rng([self.p.seed, pid, epoch, 11])
            pl = _unrelated_payload(g)
            self._payload_cache[key] = pl
        return pl

    def truth(self, t0: float, t1: float, step: float = 0.25) -> list[ZoneSegment]:
        """Each tag's true zone (None: aisle) over [t0, t1), from its path sampled every `step`."""
        out: list[ZoneSegment] = []
        for person in self.persons:
            if person.tag is None:
                continue
            a, b = max(t0, person.arrive), min(t1, person.leave)
            if a >= b:
                continue
            ts = np.arange(a, b, step)
            xs = np.interp(ts, person.keys_t, person.keys_x)
            ys = np.interp(ts, person.keys_t, person.keys_y)
            zi = self.layout.zone_index_of_points(xs, ys)
            change = np.nonzero(np.diff(zi))[0] + 1
            starts = np.concatenate([[0], change])
            ends = np.concatenate([change, [len(ts)]])
            for s, e in zip(starts, ends, strict=True):
                z = int(zi[s])
                zone = self.layout.zones[z].id if z >= 0 else None
                end = float(ts[e]) if e < len(ts) else b
                out.append(ZoneSegment(person.tag, zone, float(ts[s]), end))
        out.sort(key=lambda s: (s.start, s.tag))
        return out


def beacon_payload(tag: str) -> str:
    """The trace line members ("mfg" / "svc") that carry the frame of tag id `tag`."""
    kind, _, rest = tag.partition(":")
    try:
        if kind == "ibeacon":
            uuid, major, minor = rest.rsplit(":", 2)
            return (
                f'"mfg": {{"76": "{frames.ibeacon_payload(uuid, int(major), int(minor)).hex()}"}}'
            )
        if kind == "altbeacon":
            id1, id2, id3 = rest.rsplit(":", 2)
            data = frames.altbeacon_payload(id1, int(id2), int(id3))
            return f'"mfg": {{"280": "{data.hex()}"}}'
        if kind == "eddystone":
            ns, inst = rest.split(":")
            data = frames.eddystone_uid_payload(ns, inst)
            return f'"svc": {{"{frames.EDDYSTONE_UUID}": "{data.hex()}"}}'
    except ValueError:
        pass
    raise ValueError(f"cannot simulate a beacon with the tag id {tag!r}")


def _stable_seed(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _mac(rng: np.random.Generator, public: bool) -> str:
    b = bytearray(rng.integers(0, 256, 6, dtype=np.uint8).tobytes())
    if public:
        b[0] &= 0x3F
    else:
        b[0] = (b[0] & 0x3F) | 0x40  # resolvable private address
    return ":".join(f"{x:02X}" for x in b)


def _unrelated_payload(rng: np.random.Generator) -> str:
    def rnd(n: int) -> str:
        return bytes(rng.integers(0, 256, n, dtype=np.uint8).tobytes()).hex()

    kind = int(rng.integers(0, 5))
    if kind == 0:  # Apple Continuity "nearby info"
        return f'"mfg": {{"76": "1005{rnd(6)}"}}'
    if kind == 1:  # Apple find-my / offline finding
        return f'"mfg": {{"76": "1219{rnd(25)}"}}'
    if kind == 2:  # Samsung
        return f'"mfg": {{"117": "42040180{rnd(20)}"}}'
    if kind == 3:  # Microsoft Swift Pair
        return f'"mfg": {{"6": "030980{rnd(8)}"}}'
    return f'"svc": {{"0000fe2c-0000-1000-8000-00805f9b34fb": "{rnd(3)}"}}'  # Google Fast Pair
