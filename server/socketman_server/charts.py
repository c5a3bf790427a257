"""Small line charts drawn on the server as inline SVG: no JavaScript, no
library loaded from anywhere. Values are escaped by markupsafe."""
import time

from markupsafe import Markup, escape

W, H = 560, 150
PAD_L, PAD_R, PAD_T, PAD_B = 52, 10, 18, 22
COLORS = ("#1f6feb", "#d4582a", "#2da44e")


def series_from_samples(rows, min_dt=1):
    """Sample rows (db.Store.samples) -> {name: [(ts, value)]} for the device
    page: load, memory used (MiB), WAN rx/tx (kbit/s, from counter
    differences over at least min_dt seconds, so a chart of hours is not a
    saw of one-second steps; a counter that went back, a reboot, starts
    over) and stations."""
    out = {"load": [], "mem_used": [], "rx": [], "tx": [], "stations": []}
    prev = None
    for ts, load, total, free, rx, tx, stations, _status in rows:
        if load is not None:
            out["load"].append((ts, load))
        if total is not None and free is not None:
            out["mem_used"].append((ts, (total - free) / 1048576.0))
        if stations is not None:
            out["stations"].append((ts, stations))
        if rx is None or tx is None:
            continue
        if prev is None or rx < prev[1] or tx < prev[2]:
            prev = (ts, rx, tx)
        elif ts - prev[0] >= min_dt:
            dt = ts - prev[0]
            out["rx"].append((ts, (rx - prev[1]) * 8 / 1000.0 / dt))
            out["tx"].append((ts, (tx - prev[2]) * 8 / 1000.0 / dt))
            prev = (ts, rx, tx)
    return out


def _fmt(v):
    if abs(v) >= 100:
        return "%d" % round(v)
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


def line_chart(title, unit, lines, since, until):
    """An SVG chart. lines: [(label, [(ts, value)])] over [since, until]
    (Unix seconds). A chart with no point says so instead of drawing."""
    pts = [p for _, ps in lines for p in ps]
    parts = ['<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">' % (W, H, escape(title)),
             '<text x="4" y="12" class="t">%s</text>' % escape("%s (%s)" % (title, unit) if unit else title)]
    if not pts:
        parts.append('<text x="%d" y="%d" class="e">no data yet</text></svg>' % (W // 2 - 30, H // 2))
        return Markup("".join(parts))
    lo = min(0.0, min(v for _, v in pts))
    hi = max(v for _, v in pts)
    if hi - lo < 1e-9:
        hi = lo + 1.0
    hi *= 1.1 if hi > 0 else 1
    span = max(1, until - since)

    def x(ts):
        return PAD_L + (ts - since) * (W - PAD_L - PAD_R) / span

    def y(v):
        return H - PAD_B - (v - lo) * (H - PAD_T - PAD_B) / (hi - lo)

    for frac in (0, 0.5, 1):
        v = lo + (hi - lo) * frac
        parts.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" class="g"/>' % (PAD_L, W - PAD_R, y(v), y(v)))
        parts.append('<text x="%d" y="%.1f" class="a" text-anchor="end">%s</text>' % (PAD_L - 4, y(v) + 4, _fmt(v)))
    for ts in (since, since + span // 2, until):
        parts.append('<text x="%.1f" y="%d" class="a" text-anchor="middle">%s</text>'
                     % (min(max(x(ts), PAD_L + 20), W - 30), H - 6, time.strftime("%H:%M", time.localtime(ts))))
    for i, (label, ps) in enumerate(lines):
        color = COLORS[i % len(COLORS)]
        if ps:
            coords = " ".join("%.1f,%.1f" % (x(t), y(v)) for t, v in ps)
            parts.append('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>' % (color, coords))
        if len(lines) > 1:
            parts.append('<text x="%d" y="12" class="l" fill="%s">%s</text>' % (W - 120 + 60 * i, color,
                                                                               escape(label)))
    parts.append("</svg>")
    return Markup("".join(parts))
