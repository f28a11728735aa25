"""What the gateway keeps of pushed configurations, in `<data_dir>/remote-config.json` (0600,
written atomically): the last good one, the one on trial (applied with a restart, not yet
confirmed by reaching the broker), the last rejected one, and the highest version seen (only a
higher version is taken: a rolled-back configuration still retained on the broker is not taken
again)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

STATE_FILE = "remote-config.json"


@dataclass(frozen=True, slots=True)
class Pushed:
    version: int
    config: dict[str, Any]  # the sections as pushed (merged over the file's)


@dataclass(frozen=True, slots=True)
class Trial:
    """Applied with a restart; confirmed once the broker is reached within `confirm_s`."""

    pushed: Pushed
    confirm_s: float
    boots: int = 0  # starts with it (a second start unconfirmed: the first one died)


@dataclass(frozen=True, slots=True)
class Rejected:
    version: int | None
    reason: str
    time: float


@dataclass(frozen=True, slots=True)
class RemoteState:
    good: Pushed | None = None
    trial: Trial | None = None
    rejected: Rejected | None = None
    highest: int = 0

    def active(self) -> Pushed | None:
        return self.trial.pushed if self.trial is not None else self.good

    def report(self) -> dict[str, Any]:
        """The status message's "config" (DESIGN.md), with whether the active one is on trial."""
        active = self.active()
        rej = self.rejected
        return {
            "version": active.version if active is not None else None,
            "rejected": None
            if rej is None
            else {"version": rej.version, "reason": rej.reason, "time": round(rej.time, 3)},
            "state": "trial" if self.trial else ("confirmed" if active else "file"),
        }

    def taken(self, pushed: Pushed) -> RemoteState:
        """The last good; an older rejection is history (a newer good one replaced it)."""
        rej = self.rejected
        if rej is not None and (rej.version is None or rej.version < pushed.version):
            rej = None
        return replace(
            self, good=pushed, trial=None, rejected=rej, highest=max(self.highest, pushed.version)
        )

    def trying(self, trial: Trial) -> RemoteState:
        return replace(self, trial=trial, highest=max(self.highest, trial.pushed.version))

    def refused(self, version: int | None, reason: str, t: float) -> RemoteState:
        top = max(self.highest, version) if version is not None else self.highest
        trial = self.trial
        if trial is not None and trial.pushed.version == version:
            trial = None
        return replace(self, trial=trial, rejected=Rejected(version, reason, t), highest=top)


def _pushed(obj: Any) -> Pushed | None:
    if not isinstance(obj, dict):
        return None
    return Pushed(int(obj["version"]), dict(obj["config"]))


def load_state(data_dir: str | Path) -> RemoteState:
    path = Path(data_dir) / STATE_FILE
    try:
        obj = orjson.loads(path.read_bytes())
        trial = obj.get("trial")
        rej = obj.get("rejected")
        return RemoteState(
            good=_pushed(obj.get("good")),
            trial=None
            if trial is None
            else Trial(_pushed(trial["pushed"]) or Pushed(0, {}), float(trial["confirm_s"]),
                       int(trial.get("boots", 0))),
            rejected=None
            if rej is None
            else Rejected(rej.get("version"), str(rej["reason"]), float(rej["time"])),
            highest=int(obj.get("highest", 0)),
        )  # fmt: skip
    except (FileNotFoundError, NotADirectoryError):  # none yet (a bad data dir: said elsewhere)
        return RemoteState()
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        log.error("%s is unreadable (%s): running on the file's configuration only", path, e)
        return RemoteState()


def save_state(data_dir: str | Path, st: RemoteState) -> None:
    """Atomically (a power cut leaves the old or the new state, never half of one)."""
    path = Path(data_dir) / STATE_FILE
    body: dict[str, Any] = {
        "good": None if st.good is None else _dump(st.good),
        "trial": None
        if st.trial is None
        else {"pushed": _dump(st.trial.pushed), "confirm_s": st.trial.confirm_s,
              "boots": st.trial.boots},
        "rejected": None
        if st.rejected is None
        else {"version": st.rejected.version, "reason": st.rejected.reason,
              "time": st.rejected.time},
        "highest": st.highest,
    }  # fmt: skip
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(body, option=orjson.OPT_INDENT_2))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _dump(p: Pushed) -> dict[str, Any]:
    return {"version": p.version, "config": p.config}
