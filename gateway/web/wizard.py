"""The calibration wizard of the technician web app: a walk with a reference beacon, recorded as
the trace and labels files `shelfgate calibrate` reads (DESIGN.md formats), fitted by the same
function (`gateway.calibration_files.fit_walk`), compared with the calibration in use, and
applied to the running pipeline without a restart (and kept in the data dir for the next start).

    idle --start(beacon)--> walking --stand(zone)... --fit--> fitted --apply--> applied
                               ^---------- stand again / more zones ----------'

Each walk gets a folder `<data_dir>/calibrations/<UTC time>/` with `trace.jsonl` (every
advertisement of the reference beacon while the walk is on: nobody else's address is written),
`labels.jsonl` (one line per stand: the latest stand of each zone), and, once fitted,
`calibration.json` and `report.txt`. Stands run on the pipeline's clock; the files carry wall
times (the same offset for both), so `shelfgate calibrate --trace ... --labels ...` on that folder
gives the calibration the wizard applied.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import logging
import math
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from drivers.advertisement import RSSI_MAX, RSSI_MIN, Advertisement, Reading
from drivers.trace.writer import advert_json
from gateway.calibration_files import FittedWalk, fit_walk, write_calibration
from gateway.startup import APPLIED_CALIBRATION
from positioning.calibration import MIN_SAMPLES_PER_STAND as MIN_SAMPLES
from positioning.calibration_report import receiver_advice
from positioning.classifier import ZoneClassifier
from positioning.errors import ShelfgateError
from positioning.pathloss import RadioModel

from .state import LiveState

log = logging.getLogger(__name__)

STAND_S = 30.0
STAND_LIMITS = (2.0, 600.0)
CANDIDATES = 8
MAX_HEARD = 2_000_000  # 14 bytes each (28 MB): ~10 h of a beacon heard by 12 receivers at 4 Hz
WALKS_DIR = "calibrations"
WATCH_S = 600.0


class WizardError(Exception):
    """A request that does not fit the wizard's state (HTTP 409 with this text)."""


@dataclass(frozen=True, slots=True)
class StandDone:
    zone: str
    start: float  # wall time
    end: float
    samples: dict[str, int]  # receiver id -> advertisements heard during the stand


@dataclass(frozen=True, slots=True)
class Active:
    source: str  # "configured file ...", "applied in the web app", "generic model"
    path: str | None
    applied_at: float | None  # wall time, for one applied here


class Walk:
    """One walk being recorded."""

    def __init__(self, folder: Path, tag: str, pseudonym: str, stand_s: float) -> None:
        self.folder = folder
        self.tag = tag
        self.pseudonym = pseudonym
        self.stand_s = stand_s
        self.trace_path = folder / "trace.jsonl"
        self.labels_path = folder / "labels.jsonl"
        self.trace: IO[bytes] = self.trace_path.open("ab")
        # the beacon's sightings as compact columns: receiver index, rssi, wall time
        self.rx = array("h")
        self.rssi = array("f")
        self.t = array("d")
        self.stands: dict[str, StandDone] = {}  # zone -> its latest stand, in walk order
        self.current: tuple[str, float, float] | None = None  # zone, start, end (pipeline clock)
        self.fitted: FittedWalk | None = None
        self.report: dict[str, Any] | None = None
        self.fitting = False
        self.error: str | None = None
        self.seen = ""
        self.pending: list[bytes] = []  # trace lines held while a fit reads the file

    def close(self) -> None:
        self.trace.close()


class CalibrationWizard:
    def __init__(self, state: LiveState, data_dir: Path, calibration_from: str | None) -> None:
        self.state = state
        self.layout = state.layout
        self.pipeline = state.pipeline
        self.data_dir = data_dir
        self.walk: Walk | None = None
        self.applied: str | None = None  # the walk folder last applied
        self.on_change: Callable[[], None] | None = None  # a step the app should see at once
        self.watch_until = -math.inf  # the app's wizard was opened recently (pipeline clock)
        self._fingerprint: tuple[RadioModel, str] | None = None
        self._index = self.layout.receiver_index()
        applied = str(data_dir / APPLIED_CALIBRATION)
        if calibration_from is None:
            self.active = Active("the generic radio model (not calibrated)", None, None)
        elif calibration_from == applied:
            self.active = Active("applied in the web app", applied, Path(applied).stat().st_mtime)
        else:
            self.active = Active("configured file", calibration_from, None)

    # ------------------------------------------------------------------ the walk
    def start(self, beacon: str | None, stand_s: float) -> None:
        """Record a walk with the reference beacon `beacon` (a pseudonym; None: the tag heard
        loudest now)."""
        if self.walk is not None and not self._finished():
            raise WizardError("a walk is already on: finish or discard it first")
        if not STAND_LIMITS[0] <= stand_s <= STAND_LIMITS[1]:
            raise WizardError(
                f"stand_s: expected {STAND_LIMITS[0]:g} to {STAND_LIMITS[1]:g} seconds"
            )
        if beacon is None:
            near = self.candidates()
            if not near:
                raise WizardError("no tag is heard right now: switch the reference beacon on")
            beacon = str(near[0]["tag"])
        tag = self.state.by_pseudonym.get(beacon)
        if tag is None:
            raise WizardError("that tag is not heard now: choose one from the list")
        seen = next((c for c in self.candidates() if c["tag"] == beacon), None)
        self._drop_walk()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.pipeline.to_wall(self._now())))
        folder = self.data_dir / WALKS_DIR / stamp
        n = 1
        while folder.exists():
            n += 1
            folder = self.data_dir / WALKS_DIR / f"{stamp}-{n}"
        folder.mkdir(parents=True)
        self.walk = Walk(folder, tag, beacon, stand_s)
        if seen is not None:  # shown during the walk: a wrong pick is noticed at once
            self.walk.seen = f"{seen['level_dbm']} dBm at {seen['receiver']} when chosen"
        self.state.recorder.also = self.readings
        log.info("calibration walk started (%s), recording in %s", beacon, folder)

    def stand(self, zone: str) -> None:
        w = self._walking()
        if zone not in {z.id for z in self.layout.zones}:
            raise WizardError(f"zone: {zone!r} is not a zone of the layout")
        if w.current is not None:
            raise WizardError("a stand is on: wait for it to end or stop it")
        now = self._now()
        w.current = (zone, now, now + w.stand_s)
        w.error = None
        asyncio.get_running_loop().call_later(w.stand_s, self._due, w, w.current)

    def _due(self, w: Walk, stand: tuple[str, float, float]) -> None:
        """A stand's time is up (on time, not at the next second's tick)."""
        if self.walk is w and w.current == stand:
            self._end_stand(w, stand[2])
            if self.on_change is not None:
                self.on_change()

    def stop_stand(self, keep: bool) -> None:
        """End the stand now (`keep`: it counts, shorter; else it is thrown away)."""
        w = self._walking()
        if w.current is None:
            raise WizardError("no stand is on")
        if keep:
            self._end_stand(w, self._now())
        else:
            w.current = None

    def tick(self) -> None:
        """Once a second: a stand that has run its time ends."""
        w = self.walk
        if w is not None and w.current is not None and self._now() >= w.current[2]:
            self._end_stand(w, w.current[2])

    def _end_stand(self, w: Walk, end: float) -> None:
        assert w.current is not None
        zone, start, _ = w.current
        w.current = None
        ws, we = self.pipeline.to_wall(start), self.pipeline.to_wall(end)
        if we - ws < 1.0:
            w.error = f"the stand in {zone} was shorter than a second: not kept"
            return
        w.stands.pop(zone, None)  # a zone stood again: the latest stand counts
        w.stands[zone] = StandDone(zone, round(ws, 3), round(we, 3), self._samples(w, ws, we))
        w.fitted = w.report = None
        self._write_labels(w)

    def readings(self, batch: Sequence[Reading]) -> None:
        """The pipeline's live input (through the web app's tap): the reference beacon's
        advertisements go to the walk's trace."""
        w = self.walk
        if w is None or self._finished():
            return
        resolve = self.pipeline.resolver.resolve
        lines = []
        off = self.pipeline.to_wall(0.0)
        for r in batch:
            if type(r) is not Advertisement or not RSSI_MIN <= r.rssi <= RSSI_MAX:
                continue
            i = self._index.get(r.receiver)
            if i is None or resolve(r.mfg, r.svc, r.address) != w.tag:
                continue
            t = r.t + off
            lines.append(orjson.dumps(advert_json(r, t)) + b"\n")
            w.rx.append(i)
            w.rssi.append(r.rssi)
            w.t.append(t)
        if not lines:
            return
        w.pending += lines
        if not w.fitting:  # the fit is reading the file: whole lines only, after it
            w.trace.write(b"".join(w.pending))
            w.trace.flush()  # a few lines a second: on disk even if the daemon is killed
            w.pending.clear()
        if len(w.t) > MAX_HEARD:
            w.error = "this walk has run for hours: fit it or discard it (recording stopped)"
            self.state.recorder.also = None

    # ------------------------------------------------------------------ fit and apply
    async def fit(self) -> None:
        w = self._walking()
        if w.current is not None:
            raise WizardError("a stand is on: wait for it to end")
        if len(w.stands) < 2:
            raise WizardError("stand in at least 2 zones before fitting")
        w.trace.flush()
        w.fitting, w.error = True, None
        loop = asyncio.get_running_loop()
        active = self.pipeline.radio_model
        try:
            fitted = await loop.run_in_executor(
                None, fit_walk, self.layout, w.trace_path, w.labels_path
            )
            report = await loop.run_in_executor(None, self._report, w, fitted, active)
        except ShelfgateError as e:
            w.error = str(e)
            return
        finally:
            w.fitting = False
            if w.pending and self.walk is w:
                w.trace.write(b"".join(w.pending))
                w.trace.flush()
                w.pending.clear()
        if self.walk is not w:  # discarded meanwhile
            return
        write_calibration(w.folder / "calibration.json", fitted.calibration_json(self._store()))
        (w.folder / "report.txt").write_text(fitted.result.report() + "\n", encoding="utf-8")
        w.fitted, w.report = fitted, report

    def apply(self) -> None:
        w = self.walk
        if w is None or w.fitted is None:
            raise WizardError("nothing fitted to apply")
        model = w.fitted.result.model
        path = self.data_dir / APPLIED_CALIBRATION
        write_calibration(path, w.fitted.calibration_json(self._store()))
        self.pipeline.set_radio_model(model)
        self.applied = str(w.folder)
        self.active = Active("applied in the web app", str(path), round(self._wall(), 3))
        self.state.recorder.also = None
        log.info("calibration from %s applied (kept in %s)", w.folder, path)

    def discard(self) -> None:
        self._drop_walk()

    def _drop_walk(self) -> None:
        if self.walk is not None:
            self.walk.close()
        self.walk = None
        self.state.recorder.also = None

    # ------------------------------------------------------------------ views
    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": "idle",
            "active": {
                "source": self.active.source,
                "path": self.active.path,
                "applied_at": self.active.applied_at,
                "fingerprint": self.fingerprint(),
            },
        }
        w = self.walk
        if w is None:
            # the list costs a pass over every live tag: only while someone has the wizard open
            watching = self._now() < self.watch_until
            out["candidates"] = self.candidates() if watching else []
            return out
        if self._finished():
            out["state"] = "applied"
        elif w.fitting:
            out["state"] = "fitting"
        elif w.current is None and w.fitted is not None:
            out["state"] = "fitted"
        else:
            out["state"] = "walking"
        now = self._now()
        names = {z.id: z.name for z in self.layout.zones}
        cur = None
        if w.current is not None:
            zone, start, end = w.current
            ws = self.pipeline.to_wall(start)
            cur = {
                "zone": zone,
                "name": names[zone],
                "elapsed": round(max(0.0, now - start), 1),
                "remaining": round(max(0.0, end - now), 1),
                "samples": self._samples(w, ws, math.inf),
                "levels": self._levels(w, ws),
            }
        done = [z for z in names if z in w.stands]
        out.update(
            beacon=w.pseudonym,
            beacon_seen=w.seen,
            folder=str(w.folder),
            stand_s=w.stand_s,
            stand=cur,
            zones=[
                {
                    "id": z,
                    "name": names[z],
                    "done": z in w.stands,
                    "heard_by": sum(n >= MIN_SAMPLES for n in w.stands[z].samples.values())
                    if z in w.stands
                    else 0,
                }
                for z in names
            ],
            next=next((z for z in names if z not in w.stands), None),
            progress={"done": len(done), "total": len(names)},
            coverage=self._coverage(w),
            error=w.error,
            report=w.report,
        )
        return out

    def watch(self) -> None:
        """Someone opened the wizard: push the tags to choose from for the next 10 minutes."""
        self.watch_until = self._now() + WATCH_S

    def candidates(self) -> list[dict[str, Any]]:
        """Live tags, loudest first: the reference beacon is the one next to the technician."""
        out: list[tuple[float, dict[str, Any]]] = []
        ids = self.layout.receiver_ids
        pseudonyms = {p: t for t, p in self.state.by_pseudonym.items()}
        for v in self.state.views:
            if v.lost or np.isnan(v.level).all() or v.tag not in pseudonyms:
                continue
            i = int(np.nanargmax(v.level))
            level = float(v.level[i])
            out.append(
                (
                    level,
                    {
                        "tag": pseudonyms[v.tag],
                        "receiver": ids[i],
                        "level_dbm": round(level, 1),
                        "zone": v.zone,
                    },
                )
            )
        out.sort(key=lambda c: -c[0])
        return [c for _, c in out[:CANDIDATES]]

    def fingerprint(self) -> str:
        """Of the radio model the running pipeline decides with (not of what was written)."""
        model = self.pipeline.radio_model
        if self._fingerprint is None or self._fingerprint[0] is not model:
            self._fingerprint = (model, model_fingerprint(model.to_json()))
        return self._fingerprint[1]

    # ------------------------------------------------------------------ helpers
    def _walking(self) -> Walk:
        if self.walk is None or self._finished():
            raise WizardError("no walk is on: start one")
        if self.walk.fitting:
            raise WizardError("fitting: wait a moment")
        return self.walk

    def _finished(self) -> bool:
        return self.walk is not None and self.applied == str(self.walk.folder)

    def _now(self) -> float:
        return self.pipeline.now()

    def _wall(self) -> float:
        return self.pipeline.to_wall(self._now())

    def _store(self) -> str:
        return self.layout.store_id

    def _levels(self, w: Walk, ws: float) -> dict[str, float]:
        """Mean RSSI per receiver since `ws` (the stand under way)."""
        sums = [0.0] * len(self.layout.receivers)
        counts = [0] * len(self.layout.receivers)
        for k in range(_since(w, ws), len(w.t)):
            sums[w.rx[k]] += w.rssi[k]
            counts[w.rx[k]] += 1
        return {
            r.id: round(sums[k] / counts[k], 1)
            for k, r in enumerate(self.layout.receivers)
            if counts[k]
        }

    def _samples(self, w: Walk, ws: float, we: float) -> dict[str, int]:
        counts = [0] * len(self.layout.receivers)
        for k in range(_since(w, ws), len(w.t)):
            if w.t[k] <= we:
                counts[w.rx[k]] += 1
        return {r.id: counts[k] for k, r in enumerate(self.layout.receivers)}

    def _coverage(self, w: Walk) -> list[dict[str, Any]]:
        """Per receiver: at how many of the stands it heard the beacon (MIN_SAMPLES or more)."""
        return [
            {
                "id": r.id,
                "stands": sum(s.samples.get(r.id, 0) >= MIN_SAMPLES for s in w.stands.values()),
                "samples": sum(s.samples.get(r.id, 0) for s in w.stands.values()),
            }
            for r in self.layout.receivers
        ]

    def _write_labels(self, w: Walk) -> None:
        body = b"".join(
            orjson.dumps({"tag": w.tag, "zone": s.zone, "start": s.start, "end": s.end}) + b"\n"
            for s in sorted(w.stands.values(), key=lambda s: s.start)
        )
        tmp = w.labels_path.with_name("labels.jsonl.tmp")
        tmp.write_bytes(body)
        tmp.replace(w.labels_path)

    def _report(self, w: Walk, fitted: FittedWalk, active: RadioModel) -> dict[str, Any]:
        """What the wizard shows of a fit (from the same result `calibrate` prints)."""
        res = fitted.result
        names = {z.id: z.name for z in self.layout.zones}
        moved = {m.id: m for m in res.moved}
        receivers = [
            {**r, "advice": receiver_advice(r, moved, float(r.get("heard_share", 1.0))).strip()}
            for r in res.per_receiver
        ]
        t0 = min((s.start for s in res.stands), default=0.0)
        verdicts = {v.zone: v for v in res.stands if v.zone is not None}
        zones = []
        for z in self.layout.zones:
            v = verdicts.get(z.id)
            zones.append(
                {
                    "id": z.id,
                    "name": z.name,
                    "stood": v is not None,
                    "decided": None if v is None else v.decided,
                    "p": None if v is None else v.probability,
                    "correct": None if v is None else v.correct,
                    "confusable_with": sorted(
                        {str(c["b"]) for c in res.confusable if c["a"] == z.id}
                        | {str(c["a"]) for c in res.confusable if c["b"] == z.id}
                    ),
                }
            )
        labels: list[str | None] = [z.id for z in self.layout.zones]
        labels.append(None)
        pos = {z: k for k, z in enumerate(labels)}
        matrix = [[0] * len(labels) for _ in labels]
        for v in res.stands:
            if v.zone in pos and v.decided in pos:
                matrix[pos[v.zone]][pos[v.decided]] += 1
        text = res.report()
        verdict = next((ln for ln in reversed(text.splitlines()) if ln.startswith("Verdict")), "")
        judged = [v for v in res.stands if v.zone is not None]
        before = self._stands_right(active, fitted)
        return {
            "text": text,
            "verdict": verdict,
            "good": verdict.startswith("Verdict: good"),
            "fit": fitted.calibration_json(self._store())["fit"],
            "receivers": receivers,
            "zones": zones,
            "confusion": {"labels": labels, "names": names, "matrix": matrix},
            "confusable": res.confusable,
            "misclassified": [
                {
                    "zone": v.zone,
                    "decided": v.decided,
                    "p": v.probability,
                    "from_s": round(v.start - t0, 1),
                    "to_s": round(v.end - t0, 1),
                }
                for v in judged
                if not v.correct
            ],
            "compare": {
                "active": {"source": self.active.source, **before},
                "new": {"right": sum(v.correct for v in judged), "of": len(judged)},
            },
        }

    def _stands_right(self, model: RadioModel, fitted: FittedWalk) -> dict[str, int]:
        """How many of this walk's zone stands the calibration in use puts in their zone (the
        new one is judged leaving each stand out of its own fit: the same footing)."""
        clf = ZoneClassifier(self.layout, model)
        arr = np.array(fitted.sightings, dtype=float).reshape(-1, 3)
        right = of = 0
        w = self.walk
        stands = list(w.stands.values()) if w is not None else []
        for s in stands:
            seg = arr[(arr[:, 2] >= s.start) & (arr[:, 2] <= s.end)]
            if not len(seg):
                continue
            counts = np.bincount(seg[:, 0].astype(np.int64), minlength=len(self.layout.receivers))
            keep = [i for i in range(len(counts)) if counts[i] >= MIN_SAMPLES]  # as calibrate
            if not keep:
                continue
            means = [float(seg[seg[:, 0] == i, 1].mean()) for i in keep]
            ll = clf.log_likelihood(keep, means)
            of += 1
            right += clf.zone_ids[int(np.argmax(ll))] == s.zone
        return {"right": right, "of": of}


def _since(w: Walk, ws: float) -> int:
    """The first sighting at or after `ws` (times arrive in order, give or take a batch)."""
    k = bisect.bisect_left(w.t, ws)
    while k > 0 and w.t[k - 1] >= ws:
        k -= 1
    return k


def model_fingerprint(radio_model_json: dict[str, Any]) -> str:
    """A short hash of a calibration's `radio_model` object (equal models, equal hashes)."""
    body = orjson.dumps(radio_model_json, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()[:16]
