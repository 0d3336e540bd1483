"""The report's plots, drawn with matplotlib (the ``plot`` extra) as inline SVG.

Imported only by ``report.write_report`` once it has checked the extra is there. Figures are
made without pyplot, so a program that calls it keeps its own matplotlib backend and state. Each
``render`` takes exactly the data ``report.plot_data`` put in report.json for that plot.
Text stays text (``svg.fonttype = none``) and each plot salts the ids that SVG references
point to (clip paths, markers) with its own name, so no reference in one plot resolves to an
element of another on the same page.
"""

from __future__ import annotations

import datetime as _dt
import io
import itertools
import math
from collections.abc import Callable
from typing import Any

import matplotlib
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure

MiB = float(1 << 20)
_DATA_IDS = itertools.count()


def _svg(fig: Figure, salt: str) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    # Inline in HTML: the XML prolog and DOCTYPE belong to a standalone file only.
    return text[text.index("<svg") :]


def _scale(unit: str) -> tuple[float, str]:
    return (MiB, "MiB/s") if unit == "B/s" else (1.0, unit)


def _when(text: str) -> _dt.datetime:
    try:
        return _dt.datetime.fromisoformat(text)
    except ValueError:
        return _dt.datetime.fromtimestamp(0, _dt.UTC)


def _mark(artist: Artist) -> None:
    """Gives a data artist's SVG group the id ``i6p-data-N``: what a test looks for to see
    that the data itself was drawn (not only the axes)."""
    artist.set_gid(f"i6p-data-{next(_DATA_IDS)}")


def _errorbar(ax: Axes, x: list[Any], pts: list[dict[str, float]], div: float, label: str) -> None:
    med = [p["median"] / div for p in pts]
    lo = [max(0.0, (p["median"] - p["min"]) / div) for p in pts]
    hi = [max(0.0, (p["max"] - p["median"]) / div) for p in pts]
    line = ax.errorbar(x, med, yerr=[lo, hi], marker="o", capsize=3, label=label)[0]
    _mark(line)


def _over_time(data: dict[str, Any]) -> Figure:
    """One panel per suite, a line per measurement, runs evenly spaced in time order."""
    div, unit = _scale(data["unit"])
    suites = sorted({s["suite"] for s in data["series"]})
    times = sorted({p["time"] for s in data["series"] for p in s["points"]}, key=_when)
    fig = Figure(figsize=(9, 3.2 * len(suites)))
    axes = fig.subplots(len(suites), 1, squeeze=False)
    for ax, suite in zip(axes[:, 0], suites, strict=True):
        for s in (s for s in data["series"] if s["suite"] == suite):
            x = [times.index(p["time"]) for p in s["points"]]
            _errorbar(ax, x, s["points"], div, s["name"])
        ax.set_title(suite)
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.set_xlim(-0.5, len(times) - 0.5)
        ax.set_xticks(range(len(times)), [_label(t) for t in times], rotation=30, ha="right")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def _label(time: str) -> str:
    when = _when(time)
    return when.strftime("%Y-%m-%d %H:%M:%S") if when.year > 1970 else time


def _sweep(data: dict[str, Any]) -> Figure:
    """Streams down, group size across, median MiB/s in each cell; blank: not measured."""
    cells = data["cells"]
    streams = sorted({c["streams"] for c in cells})
    groups = sorted({c["group_size"] for c in cells})
    grid = [[math.nan] * len(groups) for _ in streams]
    for c in cells:
        grid[streams.index(c["streams"])][groups.index(c["group_size"])] = c["median"] / MiB
    fig = Figure(figsize=(1.6 * len(groups) + 2.5, 0.7 * len(streams) + 1.8))
    ax = fig.subplots()
    image = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
    _mark(image)
    ax.set_xticks(range(len(groups)), [_size(g) for g in groups])
    ax.set_yticks(range(len(streams)), [str(s) for s in streams])
    ax.set_xlabel("chunk-group size (blank: not measured)")
    ax.set_ylabel("streams")
    top = max((v for row in grid for v in row if not math.isnan(v)), default=0.0)
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if not math.isnan(v):
                color = "black" if v > 0.6 * top else "white"
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", color=color)
    fig.colorbar(image, ax=ax, label="verified fetch, MiB/s (median)")
    return fig


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n >> 10} KiB"


def _impaired(data: dict[str, Any]) -> Figure:
    """Rate against loss (a line per mode and RTT) and against RTT (per mode and loss)."""
    points = data["points"]
    fig = Figure(figsize=(11, 4))
    by_loss, by_rtt = fig.subplots(1, 2)
    for mode in ("plain", "fec"):
        mine = [p for p in points if p["mode"] == mode]
        for rtt in sorted({p["rtt_ms"] for p in mine}):
            pts = sorted((p for p in mine if p["rtt_ms"] == rtt), key=lambda p: p["loss"])
            x = [100 * p["loss"] for p in pts]
            _errorbar(by_loss, x, pts, MiB, f"{mode}, {rtt:g} ms RTT")
        for loss in sorted({p["loss"] for p in mine}):
            pts = sorted((p for p in mine if p["loss"] == loss), key=lambda p: p["rtt_ms"])
            x = [p["rtt_ms"] for p in pts]
            _errorbar(by_rtt, x, pts, MiB, f"{mode}, {100 * loss:g} % loss")
    for ax, xlabel in ((by_loss, "random loss, %"), (by_rtt, "round-trip time, ms")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("verified fetch, MiB/s")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig


_RENDER: dict[str, Callable[[dict[str, Any]], Figure]] = {
    "rate": _over_time,
    "cpu": _over_time,
    "sweep": _sweep,
    "impaired": _impaired,
}


def render(plot_id: str, data: dict[str, Any]) -> str:
    """The SVG text of plot ``plot_id`` drawn from ``data``."""
    return _svg(_RENDER[plot_id](data), plot_id)
