"""The path report as a picture: zone traffic as a heatmap on the floor map (when a layout is
given), and the zone-to-zone transition matrix. Suppressed cells are simply absent (blank)."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from positioning.layout import Layout

    from .analytics import PathReport


def plot_report(rep: PathReport, layout: Layout | None, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.patches import Polygon

    visits: dict[str, int] = defaultdict(int)
    for _hour, zone, n, _tags in rep.tables["zones"]:
        visits[zone] += int(n)
    moves: dict[tuple[str, str], int] = defaultdict(int)
    for _hour, a, b, n, _tags in rep.tables["transitions"]:
        moves[(a, b)] += int(n)
    fig, (ax_map, ax_mat) = plt.subplots(1, 2, figsize=(15, 6.5))
    cmap = colormaps["YlOrRd"]
    norm = Normalize(vmin=0, vmax=max(visits.values(), default=1))
    if layout is not None:
        for z in layout.zones:
            n = visits.get(z.id)
            face: Any = cmap(norm(n)) if n is not None else "#dddddd"
            ax_map.add_patch(Polygon(z.polygon, closed=True, facecolor=face, edgecolor="#333333"))
            cx, cy = z.centroid
            label = f"{z.id}\n{n if n is not None else 'suppressed'}"
            dark = n is not None and norm(n) > 0.6
            ax_map.text(
                cx,
                cy,
                label,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else "black",
            )
        xmin, ymin, xmax, ymax = layout.bounds()
        ax_map.set_xlim(xmin - 1, xmax + 1)
        ax_map.set_ylim(ymin - 1, ymax + 1)
        ax_map.set_aspect("equal")
        ax_map.set_xlabel("m")
    else:
        names = sorted(visits)
        ax_map.barh(names, [visits[n] for n in names], color=[cmap(norm(visits[n])) for n in names])
    ax_map.set_title(
        f"{rep.store}: dwell visits per zone\n(sum of hourly cells; cells < k={rep.k} tags suppressed)"
    )
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax_map, label="visits")
    _matrix(ax_mat, moves, fig)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _matrix(ax: Any, moves: dict[tuple[str, str], int], fig: Any) -> None:
    import numpy as np

    zones = sorted({a for a, _ in moves} | {b for _, b in moves})
    idx = {z: i for i, z in enumerate(zones)}
    m = np.full((len(zones), len(zones)), np.nan)
    for (a, b), n in moves.items():
        m[idx[a], idx[b]] = n
    im = ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(zones)), zones, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(zones)), zones, fontsize=8)
    ax.set_xlabel("to zone")
    ax.set_ylabel("from zone")
    ax.set_title("zone-to-zone transitions (blank: none or < k tags)")
    fig.colorbar(im, ax=ax, label="moves")
