"""Plain SVG charts for the dashboard: numbers in, geometry out (the template draws it).

Each function returns a chart model (a dict of pixel coordinates, our own CSS class names,
tick labels we format, and hrefs we build from integer program ids); ``templates/svg.html``
renders any model. No text from a run ever becomes an attribute other than an escaped label.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from markupsafe import Markup

W, H = 760, 300
ML, MR, MT, MB = 64, 12, 12, 34
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
#: island lines: none of the status colours
ISLAND_PALETTE = ("#1f77b4", "#17becf", "#e377c2", "#8c564b", "#bcbd22", "#393b79", "#637939",
                  "#7b4173", "#843c39", "#3182bd")
STATUS_COLOR = {"ok": "#2a9d4b", "failed": "#d62728", "invalid": "#8c8c8c",
                "timeout": "#ff7f0e", "crashed": "#9467bd", "pending": "#bbbbbb"}


def fmt(v: float | None) -> str:
    """A number for a label: ``-`` for None, else up to 6 significant digits."""
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.6g}"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    out = []
    k = 0
    while start + k * step <= hi + step * 1e-9 and k < 50:
        out.append(start + k * step)
        k += 1
    return out


class Frame:
    """Maps data coordinates to the plot area of a ``w`` x ``h`` chart."""

    def __init__(self, x0: float, x1: float, y0: float, y1: float, *, w: int = W, h: int = H,
                 pad: float = 0.04) -> None:
        if not x1 > x0:
            x1 = x0 + 1
        if not y1 > y0:
            y0, y1 = y0 - 0.5, y1 + 0.5
        dy = (y1 - y0) * pad
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0 - dy, y1 + dy
        self.w, self.h = w, h
        self.pw, self.ph = w - ML - MR, h - MT - MB

    def x(self, v: float) -> float:
        return round(ML + (v - self.x0) / (self.x1 - self.x0) * self.pw, 1)

    def y(self, v: float) -> float:
        return round(MT + self.ph - (v - self.y0) / (self.y1 - self.y0) * self.ph, 1)

    def model(self, *, x_label: str, y_label: str = "",
              x_fmt: Callable[[float], str] = fmt) -> dict[str, Any]:
        xt = [{"x": self.x(v), "label": x_fmt(v)} for v in _ticks(self.x0, self.x1)]
        yt = [{"y": self.y(v), "label": fmt(v)} for v in _ticks(self.y0, self.y1)]
        return {"w": self.w, "h": self.h, "plot": {"x": ML, "y": MT, "w": self.pw, "h": self.ph},
                "xticks": xt, "yticks": yt, "x_label": x_label, "y_label": y_label,
                "paths": [], "circles": [], "rects": [], "hlines": [], "legend": [],
                "links": [], "raw": ""}


def _step_path(frame: Frame, pts: Sequence[tuple[float, float]], x_end: float) -> str:
    if not pts:
        return ""
    d = [f"M{frame.x(pts[0][0])},{frame.y(pts[0][1])}"]
    for (x1, y1) in pts[1:]:
        d.append(f"H{frame.x(x1)}V{frame.y(y1)}")
    d.append(f"H{frame.x(max(x_end, pts[-1][0]))}")
    return "".join(d)


def score_chart(data: dict[str, Any], *, href: Callable[[int], str]) -> dict[str, Any]:
    """Every program as a point by status, the best-so-far line (records clickable), one
    best-so-far line per island, reference lines (initial score, best known)."""
    frame = Frame(0, max(data["x_max"], 1), data["y_min"], data["y_max"])
    m = frame.model(x_label="programs evaluated (commit order)", y_label="score")
    gw, gh = data["width"], data["height"]
    xs = max(data["x_max"], 1)
    span = data["y_max"] - data["y_min"]
    # thousands of points: drawn here, from numbers and our own class names only
    parts = []
    if data["points"]:
        pts = data["points"]
        px = ML + (np.array([p["x"] for p in pts]) + 0.5) / gw * frame.pw * (xs / (frame.x1 - frame.x0))
        yv = data["y_min"] + (np.array([p["y"] for p in pts]) + 0.5) / gh * span
        py = MT + frame.ph - (yv - frame.y0) / (frame.y1 - frame.y0) * frame.ph
        parts = [f'<circle class="pt st-{_status(p["status"])}" cx="{x:.1f}" cy="{y:.1f}" '
                 'r="1.8"/>' for p, x, y in zip(pts, px.tolist(), py.tolist(), strict=True)]
    rug_y = MT + frame.ph + 2
    for u in data["unscored"]:
        x = frame.x((u["x"] + 0.5) / gw * xs) - 1
        st = _status(u["status"])
        y = rug_y + 4 * _RUG.index(st) if st in _RUG else rug_y
        parts.append(f'<rect class="st-{st}" x="{x}" y="{y}" width="2" height="3"/>')
    m["raw"] = Markup("".join(parts))
    for i, (isl, recs) in enumerate(sorted(data["islands"].items())):
        pts = [(r["x"], r["score"]) for r in recs]
        color = ISLAND_PALETTE[i % len(ISLAND_PALETTE)]
        m["paths"].append({"d": _step_path(frame, pts, data["x_max"]), "cls": "island",
                           "stroke": color})
        m["legend"].append({"label": f"island {isl}", "color": color})
    best = [(r["x"], r["score"]) for r in data["best"]]
    m["paths"].append({"d": _step_path(frame, best, data["x_max"]), "cls": "best",
                       "stroke": "#000000"})
    m["legend"].insert(0, {"label": "best so far", "color": "#000000"})
    for r in data["best"][-60:]:  # the latest records: links to those programs
        m["links"].append({"href": href(r["id"]), "cx": frame.x(r["x"]),
                           "cy": frame.y(r["score"]), "title": f"#{r['id']}: {fmt(r['score'])}"})
    for ref in data["refs"]:
        m["hlines"].append({"y": frame.y(ref["value"]), "label": f"{ref['label']} "
                            f"{fmt(ref['value'])}", "cls": "ref"})
    for s in _RUG:
        m["legend"].append({"label": s, "color": STATUS_COLOR[s]})
    return m


_RUG = ("ok", "failed", "invalid", "timeout", "crashed")


def _status(name: str) -> str:
    """A status as a CSS class name: one of ours, never text from elsewhere."""
    return name if name in STATUS_COLOR else "crashed"


def bars_chart(buckets: Sequence[dict[str, Any]], span: float, *, x_label: str) -> dict[str, Any]:
    """Programs per minute per span of wall time, stacked by status."""
    top = max((b["per_minute"] for b in buckets), default=0.0)
    frame = Frame(0, max(span, 1e-6) / 60, 0, max(top, 1e-9), pad=0.0)
    m = frame.model(x_label=x_label, y_label="programs / min")
    n = max(len(buckets), 1)
    bw = frame.pw / n
    for k, b in enumerate(buckets):
        total = sum(b["counts"].values())
        if not total:
            continue
        y = 0.0
        for s, c in b["counts"].items():
            if not c:
                continue
            h = b["per_minute"] * c / total
            y0, y1 = frame.y(y), frame.y(y + h)
            m["rects"].append({"x": round(ML + k * bw, 1), "y": y1, "w": round(max(bw - 1, 1), 1),
                               "h": round(max(y0 - y1, 0.5), 1), "cls": f"st-{s}", "fill": None})
            y += h
    for s in STATUS_COLOR:
        if s != "pending":
            m["legend"].append({"label": s, "color": STATUS_COLOR[s]})
    return m


def lines_chart(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], *, x_label: str,
                y_label: str, refs: Sequence[tuple[str, float]] = (),
                x_fmt: Callable[[float], str] = fmt) -> dict[str, Any]:
    """Several polylines on one plot (each ``(label, [(x, y), ...])``), with reference lines."""
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts] + [v for _, v in refs]
    frame = Frame(min(xs, default=0), max(xs, default=1), min(ys, default=0), max(ys, default=1))
    m = frame.model(x_label=x_label, y_label=y_label, x_fmt=x_fmt)
    for i, (label, pts) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        if pts:
            d = "M" + "L".join(f"{frame.x(x)},{frame.y(y)}" for x, y in pts)
            m["paths"].append({"d": d, "cls": "series", "stroke": color})
        m["legend"].append({"label": label, "color": color})
    for label, v in refs:
        m["hlines"].append({"y": frame.y(v), "label": f"{label} {fmt(v)}", "cls": "ref"})
    return m


def steps_chart(series: Sequence[tuple[str, Sequence[tuple[float, float]], float]], *,
                x_label: str, y_label: str, refs: Sequence[tuple[str, float]] = ()
                ) -> dict[str, Any]:
    """Best-so-far step lines (each ``(label, [(x, best), ...], x_end)``) on one plot."""
    xs = [x for _, pts, end in series for x, _ in pts] + [end for _, _, end in series]
    ys = [y for _, pts, _ in series for _, y in pts] + [v for _, v in refs]
    frame = Frame(0, max(xs, default=1), min(ys, default=0), max(ys, default=1))
    m = frame.model(x_label=x_label, y_label=y_label)
    for i, (label, pts, end) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        m["paths"].append({"d": _step_path(frame, list(pts), end), "cls": "series",
                           "stroke": color})
        m["legend"].append({"label": label, "color": color})
    for label, v in refs:
        m["hlines"].append({"y": frame.y(v), "label": f"{label} {fmt(v)}", "cls": "ref"})
    return m


def arms_chart(data: dict[str, Any]) -> dict[str, Any]:
    """The bandit's choices per span of commit order, as stacked shares."""
    n = data["n_buckets"]
    frame = Frame(0, data["x_max"], 0, 1, pad=0.0)
    m = frame.model(x_label="programs evaluated (commit order)", y_label="share of choices")
    bw = frame.pw / n
    totals = [sum(b["counts"][k] for b in data["buckets"]) for k in range(n)]
    base = [0.0] * n
    for i, b in enumerate(data["buckets"]):
        color = PALETTE[i % len(PALETTE)]
        for k in range(n):
            if not totals[k] or not b["counts"][k]:
                continue
            h = b["counts"][k] / totals[k]
            y0, y1 = frame.y(base[k]), frame.y(base[k] + h)
            m["rects"].append({"x": round(ML + k * bw, 1), "y": y1, "w": round(max(bw - 1, 1), 1),
                               "h": round(max(y0 - y1, 0.5), 1), "cls": "arm", "fill": color})
            base[k] += h
        m["legend"].append({"label": b["arm"], "color": color})
    return m


def heat_color(t: float) -> str:
    """A colour from pale yellow (0, worst) to dark blue (1, best)."""
    t = min(max(t, 0.0), 1.0)
    stops = ((255, 255, 204), (161, 218, 180), (65, 182, 196), (44, 127, 184), (37, 52, 148))
    pos = t * (len(stops) - 1)
    i = min(int(pos), len(stops) - 2)
    f = pos - i
    r, g, b = (round(a + (c - a) * f) for a, c in zip(stops[i], stops[i + 1], strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(island: dict[str, Any], *, lo: float, hi: float, minimize: bool,
            href: Callable[[int], str], size: int = 320) -> dict[str, Any]:
    """One island's MAP-Elites grid: a cell per bin pair (one row for a single feature),
    coloured by its best score on the run's scale, linking to its elite."""
    axes = island["axes"]
    nx = axes[0]["bins"] if axes else 1
    ny = axes[1]["bins"] if len(axes) > 1 else 1
    cw = size / nx
    ch = (size / ny) if ny > 1 else 28.0
    w, h = int(size + 56), int(ny * ch + 40)
    drawn: dict[tuple[int, int], dict[str, Any]] = {}  # beyond two features: the best shown
    for c in island["cells"]:
        at = (c["cell"][0], c["cell"][1] if len(c["cell"]) > 1 else 0)
        have = drawn.get(at)
        if have is None or (c["best"] < have["best"] if minimize else c["best"] > have["best"]):
            drawn[at] = c
    cells = []
    for (cx, cy), c in drawn.items():
        t = (c["best"] - lo) / (hi - lo) if hi > lo else 1.0
        if minimize:
            t = 1.0 - t
        cells.append({"x": round(48 + cx * cw, 1), "y": round(4 + (ny - 1 - cy) * ch, 1),
                      "w": round(cw - 1, 1), "h": round(ch - 1, 1), "fill": heat_color(t),
                      "href": href(c["id"]),
                      "title": f"cell {tuple(c['cell'])}: best {fmt(c['best'])} (#{c['id']}), "
                               f"{c['count']} programs"})
    return {"w": w, "h": h, "cells": cells, "nx": nx, "ny": ny,
            "x_label": f"{axes[0]['name']} [{fmt(axes[0]['lo'])}, {fmt(axes[0]['hi'])}]"
            if axes else "",
            "y_label": f"{axes[1]['name']} [{fmt(axes[1]['lo'])}, {fmt(axes[1]['hi'])}]"
            if len(axes) > 1 else "",
            "label_y": round(4 + ny * ch + 16, 1),
            "bg": {"x": 48, "y": 4, "w": round(nx * cw - 1, 1), "h": round(ny * ch - 1, 1)}}
