"""Runs of equal keys in an array (grouped, e.g. sorted): where each run starts. The pipeline
groups its decisions and sightings this way a few times per tick, on small arrays, where
np.unique and np.diff cost more in Python overhead than in work."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def run_starts(keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Indices where a run of equal `keys` starts: 0, then every i with keys[i] != keys[i-1]
    (what np.unique(keys, return_index=True) gives for sorted keys); empty for empty keys."""
    new = np.empty(len(keys), dtype=bool)
    new[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=new[1:])
    return np.flatnonzero(new)
