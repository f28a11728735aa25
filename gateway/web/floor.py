"""The store layout drawn to scale as inline SVG (one user unit = one metre, y down as on the
floor plan): shelves, zones and receivers, each with the `data-*` attribute DESIGN.md fixes.
Live tags are added by the page's script into `<g id="tags">`."""

from __future__ import annotations

from html import escape

from positioning.layout import Layout

MARGIN_M = 1.0


def _points(poly: tuple[tuple[float, float], ...]) -> str:
    return " ".join(f"{x:g},{y:g}" for x, y in poly)


def floor_svg(layout: Layout) -> str:
    x0, y0, x1, y1 = layout.bounds()
    vb = (
        f"{x0 - MARGIN_M:g} {y0 - MARGIN_M:g} {x1 - x0 + 2 * MARGIN_M:g} {y1 - y0 + 2 * MARGIN_M:g}"
    )
    out = [
        f'<svg id="floor" viewBox="{vb}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-label="floor plan of {escape(layout.store_id)}">',
        f'<rect class="floor" x="{x0:g}" y="{y0:g}" width="{x1 - x0:g}" height="{y1 - y0:g}"/>',
        '<g id="scale" class="scale">'
        f'<line x1="{x0:g}" y1="{y1 + 0.5:g}" x2="{x0 + 5:g}" y2="{y1 + 0.5:g}"/>'
        f'<text x="{x0 + 5.3:g}" y="{y1 + 0.75:g}">5 m</text></g>',
        '<g id="shelves">',
    ]
    out += [f'<polygon class="shelf" points="{_points(p)}"/>' for p in layout.shelves]
    out.append('</g><g id="zones">')
    for z in layout.zones:
        cx, _ = z.centroid
        top = min(y for _, y in z.polygon)
        out.append(
            f'<g class="zone" data-zone="{escape(z.id)}"><title>{escape(z.name)}</title>'
            f'<polygon points="{_points(z.polygon)}"/>'
            f'<text class="zone-name" x="{cx:.2f}" y="{top + 0.75:.2f}">{escape(z.name)}</text>'
            f'<text class="zone-count" x="{cx:.2f}" y="{top + 1.4:.2f}"></text></g>'
        )
    out.append('</g><g id="receivers">')
    for r in layout.receivers:
        out.append(
            f'<g class="receiver" data-receiver="{escape(r.id)}" transform="translate({r.x:g} {r.y:g})">'
            f"<title>{escape(r.id)}</title>"
            '<circle class="halo" r="1.1"/><circle class="dot" r="0.45"/>'
            f'<text y="1.05">{escape(r.id)}</text></g>'
        )
    out.append('</g><g id="references">')
    for ref in layout.references:
        if ref.receiver is None:  # one built into a receiver is drawn as that receiver
            out.append(
                f'<g class="reference" data-reference="{escape(ref.tag)}" '
                f'transform="translate({ref.x:g} {ref.y:g})"><title>reference beacon '
                f"{escape(ref.tag)}</title>"
                '<rect x="-0.3" y="-0.3" width="0.6" height="0.6" transform="rotate(45)"/></g>'
            )
    out.append('</g><g id="tags"></g></svg>')
    return "".join(out)
