"""Zone classifier: which shelf zone (or none) a tag is in, from all receivers' filtered RSSI.

How it decides
--------------
The floor is covered with candidate points (finer inside small zones). For each point the
calibrated path-loss model predicts the RSSI at every receiver. For an observation (the fresh
filtered levels of the receivers that hear the tag) each point gets a log-likelihood:

- heard receivers: Gaussian residuals after removing the tag's unknown transmit offset (phones
  differ by several dB; the offset is estimated per point, shrunk toward 0);
- receivers that do not hear the tag: the point is penalised where the model says they should
  hear it well above their sensitivity (a censored observation; quadratic up to
  `unheard_tail_sigma`, linear beyond: bodies, goods and dead receivers silence them too);

so zones lying between receivers, or outnumbering them, are still told apart by the pattern of
levels. A zone's likelihood sums its points (uniform prior over the floor); floor outside every
zone is the class "no zone" (aisles). Given a tag's stand memory (`stand.py`), a zone's points
are weighted by where the tag has been standing in it instead of uniformly.

Over time a per-tag belief filters the decisions, with a hysteresis rule against flapping
(`belief.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .layout import FloatArray, Layout, points_in_polygon
from .pathloss import RadioModel, predicted_rssi
from .runs import run_starts
from .stand import IntArray, StandMemory

BoolArray = npt.NDArray[np.bool_]
F32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class ClassifierParams:
    grid_step: float = 0.8
    max_points: int = 40_000  # a memory cap (~10 MB per receiver array), not a cost one
    # a decision scores the floor this close to its nearest receiver (by the model), with the
    # receivers that could hear some candidate point and hang this close to that receiver:
    # bounded work per decision whatever the floor; decides like the whole floor in 95-100% of
    # random spots of the three example layouts (tests/test_classifier_cost.py)
    candidate_radius_m: float = 18.0
    local_headroom_db: float = -25.0
    local_radius_m: float = 30.0
    min_points_per_zone: int = 16
    # motion model and decision rule (belief.py), chosen on the TUNE split (benchmarks/stores.py)
    evidence_weight: float = 0.5
    zone_leave_rate_per_s: float = 0.01  # stays at a shelf last a minute or two
    aisle_leave_rate_per_s: float = 0.1  # walks through an aisle last ~10 s
    zone_to_zone_share: float = 0.2  # of zone exits, straight into another zone
    smoothing_lag: int = 6  # decisions (~seconds) the reported zone waits for
    switch_ratio: float = 2.0
    confirm_s: float = 2.0
    sigma_floor_db: float = 3.0
    extra_sigma_db: float = 3.0  # body loss and orientation, which a calibration stand averages out
    aisle_prior: float = 0.3  # prior probability of "no zone", whatever the aisles' area
    # a phone's transmit offset is its own for good: learnt per tag from its decisions (their
    # mean, shrunk toward 0 as if `offset_prior_n` decisions had said 0), with an uncertainty
    # that narrows as decisions add up, never below `offset_floor_db` (orientation, bodies)
    offset_prior_n: float = 5.0
    offset_floor_db: float = 3.0
    # a receiver that does not hear the tag where the model says it would, by u sigmas above
    # its sensitivity, costs 0.5 u^2 up to this many sigmas and grows linearly beyond (a body,
    # goods or a dead receiver silence it too; inf: Gaussian throughout)
    unheard_tail_sigma: float = 1.0
    # in a zone a tag stands where it stood (stand.py): it steps to a fresh point of its zone
    # at this mean interval (0: every decision scores the zone's points afresh)
    stand_memory_s: float = 60.0


class ZoneClassifier:
    """Precomputed model of one layout; stateless; `belief.Beliefs` holds the per-tag state."""

    def __init__(
        self,
        layout: Layout,
        model: RadioModel,
        params: ClassifierParams | None = None,
        method: str = "model",
    ):
        if method not in ("model", "nearest"):
            raise ValueError(f"unknown classifier {method!r}; expected model or nearest")
        self.method = method
        self.layout = layout
        self.model = model
        self.params = p = params or ClassifierParams()
        self.zone_ids: tuple[str | None, ...] = (*[z.id for z in layout.zones], None)
        self.n_classes = len(self.zone_ids)
        xs, ys, cls, logw = _candidate_points(layout, p)
        order = np.argsort(cls, kind="stable")
        self.xs, self.ys, self.cls, self.logw = xs[order], ys[order], cls[order], logw[order]
        self.starts = np.searchsorted(self.cls, np.arange(self.n_classes))
        self._base_sigma = np.array(
            [max(model.for_receiver(r.id).sigma_db, p.sigma_floor_db) for r in layout.receivers]
        )
        rx = np.array([[r.x, r.y, r.z] for r in layout.receivers], dtype=float)
        self.sens = model.sensitivity_dbm
        self.shrink = 1.0 / (model.device_sigma_db**2)
        # the baseline's map: receiver -> the zone it hangs over (else the class "no zone")
        zi = {z.id: i for i, z in enumerate(layout.zones)}
        self._rx_class = [
            zi[z] if (z := layout.zone_at(r.x, r.y)) is not None else len(layout.zones)
            for r in layout.receivers
        ]
        # class prior: "no zone" gets `aisle_prior` of the mass however large the aisles are
        # (people pass through aisles, they stay at shelves); zones share the rest by area.
        # Within a class the point weights are normalised to an average.
        w = np.exp(self.logw)
        class_w = np.bincount(self.cls, weights=w, minlength=self.n_classes)
        self.logw = self.logw - np.log(np.maximum(class_w[self.cls], 1e-12))
        zone_area = class_w[:-1]
        prior = np.empty(self.n_classes)
        prior[:-1] = (1.0 - p.aisle_prior) * zone_area / max(zone_area.sum(), 1e-12)
        prior[-1] = p.aisle_prior if class_w[-1] > 0 else 0.0
        with np.errstate(divide="ignore"):
            self._log_prior = np.log(prior)
        self._rx_offset = np.array([model.for_receiver(r.id).offset_db for r in layout.receivers])
        self._areas = [self._area_of(a, rx, p) for a in range(len(layout.receivers))]
        self._zone_idx = [a.idx[: a.n_zone_points] for a in self._areas]
        self._max_zone_points = max((len(z) for z in self._zone_idx), default=0)

    def _area_of(self, a: int, rx: FloatArray, p: ClassifierParams) -> _Area:
        """The candidate points near receiver `a` and the receivers that matter there, with
        their predicted levels and uncertainties (computed per area: memory and set-up grow
        with the floor, never with floor x receivers)."""
        d = np.hypot(self.xs - rx[a, 0], self.ys - rx[a, 1])
        idx = np.flatnonzero(d <= p.candidate_radius_m)
        if len(idx) == 0:
            idx = np.argsort(d)[:1]
        pred = predicted_rssi(self.model, self.layout, self.xs[idx], self.ys[idx])
        headroom = pred - self.model.sensitivity_dbm
        # receivers farther off add a near-constant term over the whole area: left out
        near = np.hypot(rx[:, 0] - rx[a, 0], rx[:, 1] - rx[a, 1]) <= p.local_radius_m
        sel = near & (headroom.max(axis=0) > p.local_headroom_db)
        sel[a] = True
        local = np.flatnonzero(sel)
        pred, headroom = pred[:, local], headroom[:, local]
        # a shopper's body blocks near-horizontal paths, not the one to a receiver overhead:
        # the extra uncertainty grows with the horizontal share of the path
        rl = rx[local]
        horiz = np.hypot(self.xs[idx, None] - rl[None, :, 0], self.ys[idx, None] - rl[None, :, 1])
        d3 = np.sqrt(horiz**2 + (rl[None, :, 2] - self.model.tag_height) ** 2)
        share = horiz / np.maximum(d3, 1e-6)
        sig = np.sqrt(self._base_sigma[local][None, :] ** 2 + (p.extra_sigma_db * share) ** 2)
        iv = 1.0 / (sig * sig)
        ivp = iv * pred
        # -iv*pred: the sign the residual sums need, kept in the table (`_score`)
        wt = np.stack([iv, -ivp, ivp * pred], axis=2)  # points x local x 3
        cls = self.cls[idx]  # sorted: points are ordered by class
        # (not np.unique: its first call imports numpy.ma, ~0.1 s of every start-up)
        present = cls[np.flatnonzero(np.diff(cls, prepend=-1))]
        n_zones = int((present < len(self.layout.zones)).sum())
        starts = np.searchsorted(cls, present)
        return _Area(
            idx,
            local,
            present,
            starts,
            n_zones,
            nzp := int(starts[n_zones]) if n_zones < len(present) else len(idx),
            np.diff(np.append(starts[:n_zones], nzp)),
            np.exp(self.logw[idx[:nzp]]),
            # float32: half the memory (dB-scale sums lose nothing that matters)
            np.ascontiguousarray(wt.reshape(len(idx), -1).T, dtype=np.float32),
            np.ascontiguousarray(headroom.T, dtype=np.float32),
            np.ascontiguousarray((1.0 / sig).T, dtype=np.float32),
            self.logw[idx],
        )

    @property
    def nbytes(self) -> int:
        """Memory held by the precomputed candidate areas."""
        return sum(a.wt.nbytes + a.headroom.nbytes + a.inv_sigma.nbytes for a in self._areas)

    def log_likelihood(self, heard: list[int], levels: list[float]) -> FloatArray:
        """Per-class log-likelihood of `levels` (dBm) at receivers `heard` (indices)."""
        n_rx = len(self.layout.receivers)
        mask = np.zeros((1, n_rx), dtype=bool)
        lv = np.zeros((1, n_rx))
        mask[0, heard] = True
        lv[0, heard] = levels
        out: FloatArray = self.log_likelihood_batch(mask, lv)[0]
        return out

    def log_likelihood_batch(self, heard: BoolArray, levels: FloatArray) -> FloatArray:
        """Per-class log-likelihoods (decisions x classes) of many observations at once: row d
        holds the levels of decision d, used where `heard[d]` is true."""
        n = len(levels)
        return self.log_likelihood_offsets(heard, levels, np.zeros(n), np.full(n, self.shrink))[0]

    def log_likelihood_offsets(
        self,
        heard: BoolArray,
        levels: FloatArray,
        offset_mean: FloatArray,
        offset_prec: FloatArray,
        memory: tuple[StandMemory, IntArray, FloatArray] | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """As `log_likelihood_batch`, with each decision's prior on the tag's transmit offset
        (mean dB, precision 1/dB^2); also returns each decision's offset estimate (at its most
        likely floor point; 0 for the baseline)."""
        if self.method == "nearest":
            return self._nearest(heard, levels), np.zeros(len(levels))
        if self.params.stand_memory_s <= 0:
            memory = None
        return self._model(heard, levels, offset_mean, offset_prec, memory)

    def _nearest(self, heard: BoolArray, levels: FloatArray) -> FloatArray:
        """Baseline: the zone under the strongest receiver (its own zone, or none)."""
        best = np.where(heard, levels, -np.inf).argmax(axis=1)
        out = np.full((len(levels), self.n_classes), -5.0)
        out[np.arange(len(levels)), np.asarray(self._rx_class)[best]] = 0.0
        return out

    def _model(
        self,
        heard: BoolArray,
        levels: FloatArray,
        mean: FloatArray,
        prec: FloatArray,
        memory: tuple[StandMemory, IntArray, FloatArray] | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """Decisions grouped by their loudest receiver; each group scores only that receiver's
        candidate area (`_Area`) with its local receivers, so the cost of a decision depends on
        the density of points and receivers, not on the floor's size."""
        n = len(levels)
        if n == 0:
            return np.full((0, self.n_classes), -np.inf), np.zeros(0)
        # the anchor: the receiver the tag is nearest to by the model (level above its gain)
        anchor = np.where(heard, levels - self._rx_offset, -np.inf).argmax(axis=1)
        order = np.argsort(anchor, kind="stable")
        # the decisions sorted by anchor once: each group is then a slice (views, not copies)
        s_anchor, s_heard, s_levels = anchor[order], heard[order], levels[order]
        s_mean, s_prec = mean[order], prec[order]
        s_out = np.full((n, self.n_classes), -np.inf)
        s_off = np.zeros(n)
        bounds = run_starts(s_anchor).tolist()
        if memory is not None:
            mem, slots, ts = memory
            mem.reserve(slots, self._max_zone_points)
            s_slots, s_ts = slots[order], ts[order]
        with np.errstate(divide="ignore"):  # once: per group it cost more than some of its sums
            for lo, hi in zip(bounds, [*bounds[1:], n], strict=True):
                a = int(s_anchor[lo])
                area = self._areas[a]
                prior = None
                if memory is not None:
                    prior = mem.predictive(
                        s_slots[lo:hi],
                        s_ts[lo:hi],
                        a,
                        self._zone_idx,
                        area.w_zone,
                        self.params.stand_memory_s,
                    )
                s_out[lo:hi, area.present], s_off[lo:hi], post = self._score(
                    area,
                    s_heard[lo:hi, area.local],
                    s_levels[lo:hi, area.local],
                    s_mean[lo:hi],
                    s_prec[lo:hi],
                    prior,
                )
                if memory is not None and post is not None:
                    mem.store(s_slots[lo:hi], s_ts[lo:hi], a, post)
        out = np.empty_like(s_out)
        out[order] = s_out
        offsets = np.empty_like(s_off)
        offsets[order] = s_off
        return out, offsets

    def _score(
        self,
        area: _Area,
        heard: BoolArray,
        levels: FloatArray,
        mean: FloatArray,
        prec: FloatArray,
        prior: FloatArray | None = None,
    ) -> tuple[FloatArray, FloatArray, FloatArray | None]:
        """Per class present in `area`, the log-likelihood of each decision. For each point, with
        residuals d = z - pred over the heard receivers and weights iv:
        offset = (sum(iv d) + s m) / (sum(iv) + s) with the offset's prior mean m and precision
        s, and the Gaussian term with the prior's,
        sum(iv (d - offset)^2) + s (offset - m)^2 = sum(iv d^2) + s m^2 - offset (sum(iv d) + s m).
        The three sums expand into one matrix product of precomputed [iv, -iv*pred, iv*pred^2]
        with the decisions' [mask, z, z^2] columns: one BLAS call per group of decisions.
        (Called with numpy's divide warnings off: a zone whose evidence underflowed is -inf.)
        """
        n_dec, n_rx = heard.shape
        z = np.where(heard, levels, 0.0)
        # built in float32 directly: each value is rounded once, as a float64 copy cast would be
        v = np.zeros((3, n_dec, n_rx, 3), dtype=np.float32)
        v[0, :, :, 0] = heard
        v[1, :, :, 0] = z
        v[1, :, :, 1] = heard
        v[2, :, :, 0] = z * z
        v[2, :, :, 1] = z + z
        v[2, :, :, 2] = heard
        n_pts = len(area.idx)
        prod = v.reshape(3 * n_dec, 3 * n_rx) @ area.wt
        c, a, b = prod.astype(np.float64).reshape(3, n_dec, n_pts)
        # in place, operation for operation the formula of the docstring (a few small arrays
        # per group of decisions: their allocation was a good part of the cost)
        sm = (prec * mean)[:, None]
        a += sm
        c += prec[:, None]
        delta = a / c
        a *= delta
        b -= a
        b += sm * mean[:, None]
        ll = b
        ll *= -0.5
        # receivers that do not hear the tag where the model says they should (censored)
        p = self.params
        dec, rxu = np.nonzero(~heard)
        if len(dec):
            # the largest arrays of a decision (pairs x points): in float32, as the area's
            # tables are, for half the memory traffic (the penalty is summed over a few terms)
            ex = delta.astype(np.float32)[dec]
            ex += area.headroom[rxu]
            ex *= area.inv_sigma[rxu]
            np.maximum(ex, 0.0, out=ex)
            ex = _huber(ex, p.unheard_tail_sigma)
            first = run_starts(dec)
            # summed per decision over its rows: slice by slice (numpy's reduceat down the rows
            # of so large an array is 3-7x slower than this loop)
            pen = np.empty((len(first), ex.shape[1]), dtype=np.float32)
            ends = [*first[1:].tolist(), len(dec)]
            for k, (lo, hi) in enumerate(zip(first.tolist(), ends, strict=True)):
                ex[lo:hi].sum(axis=0, out=pen[k])
            ll[dec[first]] -= pen
        post = None
        if prior is not None:
            # zones (stand.py): this decision's likelihood times the predictive from the tag's
            # stand so far; a zone's evidence is its normaliser, the new posterior the product
            # over it. "No zone" (people walk through aisles) is scored afresh.
            nz = area.n_zone_points
            zs = area.starts[: area.n_zones]
            lz = ll[:, :nz]
            zm = lz.max(axis=1, keepdims=True) if nz else np.zeros((n_dec, 1))
            px = prior * np.exp(lz - zm)
            sums = np.add.reduceat(px, zs, axis=1)
            # (the predictive is >= move x the prior: its sums never vanish)
            stand = np.log(sums) + zm - np.log(np.add.reduceat(prior, zs, axis=1))
            # a zone far below the best one (its sum underflowed): its posterior is 0, so its
            # next predictive is its prior (a fresh start)
            post = px / np.repeat(np.where(sums > 0, sums, 1.0), area.zone_sizes, axis=1)
        ll += area.logw
        top = ll.argmax(axis=1)
        rows = np.arange(n_dec)
        mx = ll[rows, top][:, None]
        ll -= mx
        np.exp(ll, out=ll)
        out: FloatArray = np.log(np.add.reduceat(ll, area.starts, axis=1))
        out += mx
        if post is not None:
            out[:, : area.n_zones] = stand
        out += self._log_prior[area.present]
        return out, delta[rows, top], post


def _huber(u: F32Array, c: float) -> F32Array:
    """0.5 u^2 up to `c`, c u - 0.5 c^2 beyond (u >= 0), in place: m (u - m / 2), m = min(u, c)."""
    m = np.minimum(u, c)
    m *= 0.5
    u -= m
    m *= 2.0
    u *= m
    return u


@dataclass(frozen=True, slots=True)
class _Area:
    idx: npt.NDArray[np.int64]  # candidate points (sorted by class)
    local: npt.NDArray[np.int64]  # receivers scored there
    present: npt.NDArray[np.int64]  # classes with candidate points
    starts: npt.NDArray[np.int64]  # first candidate of each present class
    n_zones: int  # present classes that are zones (the first ones; "no zone" is last)
    n_zone_points: int  # candidates in zones (the first ones)
    zone_sizes: npt.NDArray[np.int64]  # candidates per present zone
    w_zone: FloatArray  # prior weight of each zone candidate within its zone
    wt: F32Array  # (local x 3) x candidates: [iv, -iv*pred, iv*pred^2]
    headroom: F32Array  # local x candidates: predicted level above sensitivity
    inv_sigma: F32Array  # local x candidates
    logw: FloatArray  # candidates


def _candidate_points(
    layout: Layout, p: ClassifierParams
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64], FloatArray]:
    """Floor points (x, y), their class (zone index, or len(zones) for no zone) and log area.

    A regular grid of at most `max_points` over the walkable floor (shelves excluded); a zone
    holding fewer than `min_points_per_zone` grid points gets a finer grid of its own instead.
    """
    xmin, ymin, xmax, ymax = layout.bounds()
    step = p.grid_step
    while ((xmax - xmin) / step + 1) * ((ymax - ymin) / step + 1) > p.max_points:
        step *= 1.25
    gx, gy = np.meshgrid(
        np.arange(xmin + step / 2, xmax, step), np.arange(ymin + step / 2, ymax, step)
    )
    xs, ys = gx.ravel(), gy.ravel()
    if layout.shelves:
        walkable = ~layout.on_shelf(xs, ys)
        xs, ys = xs[walkable], ys[walkable]
    zi = layout.zone_index_of_points(xs, ys)
    cls = np.where(zi < 0, len(layout.zones), zi)
    sparse = [i for i in range(len(layout.zones)) if int((cls == i).sum()) < p.min_points_per_zone]
    keep = ~np.isin(cls, sparse)
    parts = [(xs[keep], ys[keep], cls[keep], np.full(int(keep.sum()), 2.0 * math.log(step)))]
    for i in sparse:
        zone = layout.zones[i]
        pts = np.asarray(zone.polygon, dtype=float)
        (zx0, zy0), (zx1, zy1) = pts.min(axis=0), pts.max(axis=0)
        fine = max(min(zx1 - zx0, zy1 - zy0) / 5.0, 0.05)
        mx, my = np.meshgrid(
            np.arange(zx0 + fine / 2, zx1, fine), np.arange(zy0 + fine / 2, zy1, fine)
        )
        fx, fy = mx.ravel(), my.ravel()
        inside = points_in_polygon(fx, fy, zone.polygon)
        fx, fy = fx[inside], fy[inside]
        if len(fx) == 0:
            cx, cy = zone.centroid
            fx, fy = np.array([cx]), np.array([cy])
        w = math.log(max(zone.area, 1e-6) / len(fx))
        parts.append((fx, fy, np.full(len(fx), i, dtype=np.int64), np.full(len(fx), w)))
    return (
        np.concatenate([q[0] for q in parts]),
        np.concatenate([q[1] for q in parts]),
        np.concatenate([q[2] for q in parts]).astype(np.int64),
        np.concatenate([q[3] for q in parts]),
    )
