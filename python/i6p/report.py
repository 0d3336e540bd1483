"""The benchmark report: one self-contained HTML page of plots and the JSON behind it.

Two sources feed it, both reduced to the same list of *runs* (one per measurement session,
with its time): the output of ``i6p bench`` (each ``--report DIR`` run is added to
``DIR/runs.json``, so the page shows every run made into that directory) and the history
pytest-benchmark saves with ``--benchmark-autosave`` (``make bench-report`` reads
``.benchmarks/``). From the runs it draws: rate and CPU-seconds per GB per suite over time,
the streams x chunk-group sweep as a heatmap, and the rate against RTT and loss for plain and
FEC mode (``benches/bench_fec.py``).

Invariants: ``report.json`` holds exactly the numbers each plot draws (``plots[i].data``) next
to the runs they came from; the page needs no network and no script (plots are inline SVG).
This module imports nothing from the ``plot`` extra; ``write_report`` imports matplotlib only
when asked for a page and raises ``errors.MissingExtra`` when it is not installed.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import InvalidArgument, MissingExtra

__all__ = [
    "REPORT_VERSION",
    "load_runs",
    "plot_data",
    "require_plot_extra",
    "run_from_bench",
    "runs_from_history",
    "save_runs",
    "write_report",
]

REPORT_VERSION = 1
# A history or runs file larger than this is not one this module wrote or pytest-benchmark
# saved from these suites (theirs are tens of KiB); refused before reading it.
MAX_INPUT_BYTES = 64 << 20
# Keys of pytest-benchmark's extra_info (benches/) that hold a rate without saying so.
_RATE_KEYS = {"baseline", "python_stream", "fetch", "direct", "relayed"}
_SWEEP_KEY = re.compile(r"^streams(\d+)_group(\d+)k$")

Run = dict[str, Any]


def require_plot_extra() -> None:
    """Raises ``MissingExtra`` unless the ``plot`` extra (matplotlib) can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtra(
            "the benchmark report needs the plot extra: pip install 'i6p[plot]' (matplotlib)"
        ) from None


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _summary(values: Mapping[str, Any]) -> dict[str, float] | None:
    """median/min/max of a saved summary, or None when it is not one."""
    try:
        out = {k: float(values[k]) for k in ("median", "min", "max")}
    except (KeyError, TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out.values()) else None


def _figure(suite: str, name: str, unit: str, s: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "suite": suite,
        "name": name,
        "unit": unit,
        **{k: s[k] for k in ("median", "min", "max")},
    }


def _unit_of(key: str) -> str | None:
    if "cpu" in key:
        return "s/GB"
    if key.endswith("bytes_per_s") or key in _RATE_KEYS:
        return "B/s"
    return None


# -- runs from `i6p bench` ---------------------------------------------------------------


def run_from_bench(out: Mapping[str, Any], *, when: str | None = None) -> Run:
    """One run from the JSON ``i6p bench`` prints (``--json``): its figures and, with
    ``--tune`` or ``--grid``, the streams x group-size cells it tried (at the first window
    tried)."""
    figures = []
    suite = f"i6p bench {out.get('target', '')}".strip()  # local and remote runs apart
    for f in out.get("figures", []):
        s = _summary(f)
        if s is not None and f.get("unit") in ("B/s", "s/GB"):
            figures.append(_figure(suite, str(f["name"]), str(f["unit"]), s))
    sweep = None
    tune = out.get("tune")
    if tune and tune.get("tried"):
        window = tune["tried"][0]["settings"]["window"]
        cells = [
            {
                "streams": int(t["settings"]["streams"]),
                "group_size": int(t["settings"]["group_size"]),
                **(_summary(t["rate"]) or {}),
            }
            for t in tune["tried"]
            if t["settings"]["window"] == window and _summary(t["rate"]) is not None
        ]
        flag = "--grid" if tune.get("sweep") == "grid" else "--tune"
        sweep = {"label": f"i6p bench {flag}, window {window}", "cells": cells}
    return {
        "time": when or _now(),
        "label": suite,
        "figures": figures,
        "sweep": sweep,
        "impaired": [],
    }


def _read_json(path: Path) -> Any:
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES:
        raise InvalidArgument(f"{path}: {size} bytes, over the {MAX_INPUT_BYTES} a report reads")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidArgument(f"{path}: not JSON ({e})") from None


def _checked(run: Any) -> Run:
    """``run`` if it has the shape ``run_from_bench`` gives (a hand-edited or foreign
    runs.json must not fail half-way through drawing); raises ValueError otherwise."""
    if not isinstance(run, dict) or not isinstance(run.get("time"), str):
        raise ValueError("a run without a time")
    for f in run["figures"]:
        if not all(isinstance(f[k], str) for k in ("suite", "name", "unit")):
            raise ValueError("a figure without suite, name and unit")
        if _summary(f) is None:
            raise ValueError(f"figure {f['name']!r} without median, min and max")
    cells = run["sweep"]["cells"] if run.get("sweep") else []
    if any(not isinstance(c["streams"], int) or _summary(c) is None for c in cells):
        raise ValueError("a sweep cell without streams, median, min and max")
    if not isinstance(run["label"], str) or not isinstance(run["impaired"], list):
        raise ValueError("a run without label or impaired list")
    return run


def load_runs(directory: Path) -> list[Run]:
    """The runs saved in ``directory/runs.json`` by earlier ``--report`` runs (none if it
    does not exist); raises ``InvalidArgument`` for a file that is not one."""
    path = directory / "runs.json"
    if not path.exists():
        return []
    saved = _read_json(path)
    try:
        if saved.get("version") != REPORT_VERSION:
            raise ValueError(f"version {saved.get('version')!r}, not {REPORT_VERSION}")
        return [_checked(run) for run in saved["runs"]]
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise InvalidArgument(f"{path}: not a runs file of i6p bench --report ({e})") from None


def save_runs(directory: Path, runs: list[Run]) -> None:
    """Writes ``directory/runs.json`` atomically (a new file renamed over the old)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "runs.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"version": REPORT_VERSION, "runs": runs}, indent=1))
    tmp.replace(path)


# -- runs from pytest-benchmark's history ---------------------------------------------------


def _bench_suite(fullname: str) -> tuple[str, str]:
    """("bench_fec", "test_x[0.03]") from "benches/bench_fec.py::test_x[0.03]"."""
    path, _, test = fullname.partition("::")
    return Path(path).stem, test or path


def _impaired(test: str, info: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Plain and FEC points of one bench_fec lossy-link result (rate = bytes / seconds)."""
    points = []
    size = info.get("bytes")
    for mode in ("plain", "fec"):
        t = _summary(info.get(f"{mode}_seconds", {}))
        if t is None or not isinstance(size, int | float) or t["min"] <= 0:
            continue
        points.append(
            {
                "mode": mode,
                "rtt_ms": float(info.get("rtt_ms", 100.0)),
                "loss": float(info.get("loss", 0.0)),
                "bottleneck_bps": float(info.get("rate") or 0.0),
                "bytes": int(size),
                "median": size / t["median"],
                "min": size / t["max"],
                "max": size / t["min"],
                "wire_per_byte": _summary(info.get(f"{mode}_wire_per_byte", {})),
                "test": test,
            }
        )
    return points


def _run_from_saved(saved: Mapping[str, Any], name: str) -> Run:
    figures: list[dict[str, Any]] = []
    cells: list[dict[str, Any]] = []
    impaired: list[dict[str, Any]] = []
    for b in saved.get("benchmarks", []):
        suite, test = _bench_suite(str(b.get("fullname", b.get("name", "?"))))
        info = b.get("extra_info") or {}
        if suite == "bench_fec" and "plain_seconds" in info:
            impaired += _impaired(test, info)
        for key, value in info.items():
            s = _summary(value) if isinstance(value, dict) else None
            if s is None:
                continue
            m = _SWEEP_KEY.match(key)
            if m and suite == "bench_sweep":
                cells.append({"streams": int(m[1]), "group_size": int(m[2]) << 10, **s})
            elif (unit := _unit_of(key)) is not None:
                figures.append(_figure(suite, f"{test} {key}", unit, s))
    # Over time too: each plain/FEC point, and the sweep's best cell.
    for p in impaired:
        name = f"{p['mode']} {p['rtt_ms']:g} ms RTT {100 * p['loss']:g} % loss"
        figures.append(_figure("bench_fec", name, "B/s", p))
    if cells:
        best = max(cells, key=lambda c: c["median"])
        name = f"best sweep cell ({best['streams']} streams, {best['group_size'] >> 10} KiB)"
        figures.append(_figure("bench_sweep", name, "B/s", best))
    sweep = {"label": "bench_sweep.py", "cells": cells} if cells else None
    when = str(saved.get("datetime", ""))
    return {"time": when, "label": name, "figures": figures, "sweep": sweep, "impaired": impaired}


def runs_from_history(directory: Path) -> list[Run]:
    """Every run pytest-benchmark saved under ``directory`` (``--benchmark-autosave``
    writes ``.benchmarks/<machine>/<NNNN>_<commit>_<time>.json``), oldest first."""
    if not directory.is_dir():
        raise InvalidArgument(f"{directory}: no benchmark history there (run make bench first)")
    runs = []
    for path in sorted(directory.rglob("*.json")):
        saved = _read_json(path)
        if not isinstance(saved, dict) or not isinstance(saved.get("benchmarks"), list):
            raise InvalidArgument(f"{path}: not a pytest-benchmark result")
        try:
            runs.append(_run_from_saved(saved, path.stem))
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise InvalidArgument(f"{path}: unexpected content ({e!r})") from None
    if not runs:
        raise InvalidArgument(f"{directory}: no saved pytest-benchmark runs in it")
    return sorted(runs, key=lambda r: str(r["time"]))


# -- what each plot draws ------------------------------------------------------------------


def _over_time(runs: Iterable[Run], unit: str) -> dict[str, Any]:
    series: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        for f in run["figures"]:
            if f["unit"] != unit:
                continue
            key = (f["suite"], f["name"])
            entry = series.setdefault(key, {"suite": key[0], "name": key[1], "points": []})
            point = {"time": run["time"], "run": run["label"]}
            entry["points"].append(point | {k: f[k] for k in ("median", "min", "max")})
    return {"unit": unit, "series": list(series.values())}


def _latest(runs: list[Run], field: str) -> tuple[Run | None, Any]:
    for run in reversed(runs):
        if run.get(field):
            return run, run[field]
    return None, None


def plot_data(runs: list[Run]) -> list[dict[str, Any]]:
    """The plots of a report, each with its id, title and the exact numbers it draws; a plot
    whose data no run has is left out (the page says which)."""
    plots = []
    rate = _over_time(runs, "B/s")
    if rate["series"]:
        plots.append({"id": "rate", "title": "Rate per suite over time", "data": rate})
    cpu = _over_time(runs, "s/GB")
    if cpu["series"]:
        plots.append({"id": "cpu", "title": "CPU-seconds per GB over time", "data": cpu})
    run, sweep = _latest(runs, "sweep")
    if run is not None:
        title = f"Streams x chunk-group size ({sweep['label']}, {run['time']})"
        data = {"time": run["time"], "unit": "B/s", "cells": sweep["cells"]}
        plots.append({"id": "sweep", "title": title, "data": data})
    run, points = _latest(runs, "impaired")
    if run is not None:
        title = f"Plain and FEC mode against RTT and loss ({run['time']})"
        plots.append({"id": "impaired", "title": title, "data": {"points": points}})
    return plots


# -- the page ------------------------------------------------------------------------------

_ALL_PLOTS = {
    "rate": "no rates in these runs",
    "cpu": "no CPU-seconds per GB in these runs",
    "sweep": "no sweep: i6p bench --tune, or benches/bench_sweep.py",
    "impaired": "no lossy-link runs: benches/bench_fec.py (make bench)",
}

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
figure.plot { margin: 2em 0; } figure.plot svg { max-width: 100%; height: auto; }
figcaption { font-weight: bold; margin-bottom: .5em; } p.missing { color: #777; }
table { border-collapse: collapse; } td, th { padding: .2em .8em; text-align: left; }
"""


def _table(run: Run) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(f['suite'])}</td><td>{html.escape(f['name'])}</td>"
        f"<td>{_fmt(f['median'], f['unit'])}</td>"
        f"<td>{_fmt(f['min'], f['unit'])} - {_fmt(f['max'], f['unit'])}</td></tr>"
        for f in run["figures"]
    )
    head = "<tr><th>suite</th><th>measurement</th><th>median</th><th>min - max</th></tr>"
    return f"<table>{head}{rows}</table>"


def _fmt(value: float, unit: str) -> str:
    if unit == "B/s":
        return f"{value / 2**20:.4g} MiB/s"
    return f"{value:.4g} {html.escape(unit)}"


def _page(title: str, runs: list[Run], plots: list[dict[str, Any]], svgs: list[str]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(runs)} run(s), {html.escape(runs[0]['time'])} to "
        f"{html.escape(runs[-1]['time'])}; generated {_now()}. Medians, with min-max bars; "
        "the numbers are in report.json beside this page.</p>",
    ]
    for plot, svg in zip(plots, svgs, strict=True):
        parts.append(
            f'<figure class="plot" id="plot-{plot["id"]}" data-plot="{plot["id"]}">'
            f"<figcaption>{html.escape(plot['title'])}</figcaption>{svg}</figure>"
        )
    shown = {p["id"] for p in plots}
    for pid, why in _ALL_PLOTS.items():
        if pid not in shown:
            parts.append(f'<p class="missing" id="missing-{pid}">{html.escape(why)}</p>')
    parts += [f"<h2>Latest run: {html.escape(runs[-1]['label'])}</h2>", _table(runs[-1])]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(runs: list[Run], directory: Path, *, title: str = "I6P benchmarks") -> Path:
    """Writes ``directory/index.html`` (plots as inline SVG, no external resource) and
    ``directory/report.json`` (the runs and each plot's numbers); returns the page's path.
    Raises ``MissingExtra`` without the ``plot`` extra, ``InvalidArgument`` without runs."""
    require_plot_extra()
    if not runs:
        raise InvalidArgument("a report needs at least one run")
    from . import _plots

    plots = plot_data(runs)
    svgs = [_plots.render(p["id"], p["data"]) for p in plots]
    directory.mkdir(parents=True, exist_ok=True)
    doc = {
        "version": REPORT_VERSION,
        "title": title,
        "generated": _now(),
        "plots": plots,
        "runs": runs,
    }
    (directory / "report.json").write_text(json.dumps(doc, indent=1))
    page = directory / "index.html"
    page.write_text(_page(title, runs, plots, svgs))
    return page
