"""The report page: one HTML file with every plot embedded (data: URIs: it opens anywhere,
mailed or offline) and the numbers behind them as tables."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from positioning.layout import FloatArray

from .analysis import Classes


@dataclass(frozen=True, slots=True)
class Plot:
    key: str  # file name stem and the section's data-plot
    title: str
    png: bytes
    caption: str
    table: str = ""  # HTML: the numbers the plot draws


CSS = """
body { font-family: system-ui, sans-serif; color: #1f2937; margin: 1.5rem auto; max-width: 72rem; padding: 0 1rem; }
h1 { font-size: 1.3rem; } h2 { font-size: 1.05rem; margin-top: 2rem; }
img { max-width: 100%; height: auto; border: 1px solid #e5e7eb; }
table { border-collapse: collapse; font-size: .8rem; margin: .5rem 0; }
th, td { border: 1px solid #e5e7eb; padding: .2rem .4rem; text-align: right; }
th { background: #f3f4f6; } td.diag { background: #dcfce7; }
.muted { color: #6b7280; } dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; font-size: .85rem; }
dt { color: #6b7280; } dd { margin: 0; font-family: ui-monospace, monospace; }
"""


def render(title: str, inputs: Sequence[tuple[str, str]], plots: Sequence[Plot],
           notes: Sequence[str]) -> str:  # fmt: skip
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1><dl>",
        *(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in inputs),
        "</dl>",
        *(f"<p class='muted'>{escape(n)}</p>" for n in notes),
    ]
    for p in plots:
        data = base64.b64encode(p.png).decode()
        parts.append(
            f"<section data-plot='{escape(p.key)}'><h2>{escape(p.title)}</h2>"
            f"<img src='data:image/png;base64,{data}' alt='{escape(p.title)}'>"
            f"<p class='muted'>{escape(p.caption)}</p>{p.table}</section>"
        )
    parts.append("</body></html>\n")
    return "".join(parts)


def confusion_table(m: FloatArray, cls: Classes) -> str:
    """Seconds per (true, decided) zone; `data-true` / `data-decided` on each cell."""
    keep = [k for k in range(len(cls)) if m[k].sum() > 0 or m[:, k].sum() > 0]
    name = [("none" if z is None else z) for z in cls]
    head = "".join(f"<th>{escape(name[k])}</th>" for k in keep)
    rows = []
    for i in keep:
        cells = "".join(
            f"<td data-true='{escape(name[i])}' data-decided='{escape(name[j])}'"
            f"{' class=diag' if i == j else ''}>{m[i, j]:.0f}</td>"
            for j in keep
        )
        rows.append(f"<tr><th>{escape(name[i])}</th>{cells}</tr>")
    return (
        "<table class='confusion'><caption>seconds: rows true, columns decided</caption>"
        f"<tr><th></th>{head}</tr>{''.join(rows)}</table>"
    )


def dwell_table(decided: dict[str, list[float]], true: dict[str, list[float]] | None) -> str:
    rows = []
    for z, d in decided.items():
        med = sorted(d)[len(d) // 2] / 60 if d else None
        t = None if true is None else len(true.get(z, []))
        rows.append(
            f"<tr data-zone='{escape(z)}'><th>{escape(z)}</th><td class='n'>{len(d)}</td>"
            f"<td>{'' if med is None else f'{med:.1f}'}</td><td>{'' if t is None else t}</td></tr>"
        )
    return (
        "<table class='dwells'><tr><th>zone</th><th>dwells</th><th>median (min)</th>"
        f"<th>true stays</th></tr>{''.join(rows)}</table>"
    )


def residual_table(spots: list[tuple[float, float, float]]) -> str:
    """The calibration stands the heatmap is made of."""
    rows = "".join(
        f"<tr class='stand'><td>{x:.1f}</td><td>{y:.1f}</td><td>{v:.1f}</td></tr>"
        for x, y, v in spots
    )
    return (
        "<details><summary>the stands</summary><table class='residuals'><tr><th>x (m)</th>"
        f"<th>y (m)</th><th>rms residual (dB)</th></tr>{rows}</table></details>"
    )
