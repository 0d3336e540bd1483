"""The benchmark report, made from real short benchmark runs and opened in headless Chromium.

`i6p bench --report DIR` twice into one directory (rate and CPU over two runs, the `--grid`
tuning sweep as a heatmap), and `i6p report` from a pytest-benchmark history that a short real
run of bench_fec (two RTTs, two loss rates, through the impairment relay), bench_sweep and
bench_transfer saved. Chromium (Debian's `chromium`, installed by .ci/run) loads each page
offline; a script added to a copy of the page reports each plot's SVG and its drawn data
elements, and a screenshot shows the plots' areas are painted. Also: the plot extra is only
imported when a report is asked for, and its absence is a typed error with its own exit code."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH = 1200

# Added to a copy of the page: what Chromium laid out for each plot, as JSON in the DOM.
CHECK_SCRIPT = """<script>
const out = {plots: [], height: document.documentElement.scrollHeight};
for (const fig of document.querySelectorAll('figure.plot')) {
  const svg = fig.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : {x: 0, y: 0, width: 0, height: 0};
  let data = 0;  // data artists (lines with markers, the heatmap's image) laid out non-empty
  if (svg) {
    for (const el of svg.querySelectorAll('[id^="i6p-data-"]')) {
      const b = el.getBBox();
      if (b.width > 0 && b.height > 0) data++;
    }
  }
  out.plots.push({id: fig.dataset.plot, svg: svg instanceof SVGSVGElement, data,
                  x: box.x + scrollX, y: box.y + scrollY, width: box.width, height: box.height});
}
const pre = document.createElement('pre');
pre.id = 'i6p-check';
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "i6p.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def chromium(profile: Path, *args: str, timeout: float = 60) -> str:
    assert CHROMIUM, "chromium is not installed (.ci/run installs it; apt-get install chromium)"
    # A profile of its own: no HOME needed, nothing shared with another Chromium.
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    out = subprocess.run(
        [CHROMIUM, *flags, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def render(page: Path, tmp: Path) -> dict[str, Any]:
    """Opens ``page`` in headless Chromium: each plot's layout, and the share of non-white
    pixels in each plot's area of a screenshot of the whole page."""
    text = page.read_text()
    # Self-contained: nothing loaded from elsewhere (data: URIs are inline).
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!data:|#)""", text)
    assert "<script" not in text
    probe = tmp / "probe.html"
    probe.write_text(text.replace("</body>", CHECK_SCRIPT + "</body>"))
    dom = chromium(tmp / "profile", f"--window-size={WIDTH},900", "--dump-dom", probe.as_uri())
    m = re.search(r'<pre id="i6p-check">(.*?)</pre>', dom, re.S)
    assert m, dom[-2000:]
    layout: dict[str, Any] = json.loads(m[1].replace("&quot;", '"').replace("&amp;", "&"))
    shot = tmp / "page.png"
    height = int(layout["height"]) + 10
    chromium(
        tmp / "profile", f"--window-size={WIDTH},{height}", f"--screenshot={shot}", page.as_uri()
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    for plot in layout["plots"]:
        x, y = int(plot["x"]), int(plot["y"])
        area = pixels[y : y + int(plot["height"]), x : x + int(plot["width"]), :3]
        plot["painted"] = float((area.min(axis=2) < 0.9).mean()) if area.size else 0.0
    return layout


def check_every_plot_rendered(page: Path, tmp: Path, expected: set[str]) -> dict[str, Any]:
    layout = render(page, tmp)
    report = json.loads((page.parent / "report.json").read_text())
    assert {p["id"] for p in report["plots"]} == expected
    assert {p["id"] for p in layout["plots"]} == expected
    for plot in layout["plots"]:
        assert plot["svg"], plot
        assert plot["width"] > 200 and plot["height"] > 150, plot
        # Every line of the JSON's series (or the heatmap's image) was drawn and laid out.
        assert plot["data"] == drawn_in(plotted(report, plot["id"]), plot["id"]), plot
        assert 0.02 < plot["painted"] < 0.95, plot  # painted, neither blank nor a solid block
    return report


def drawn_in(data: dict[str, Any], plot_id: str) -> int:
    """How many data artists a plot of ``data`` draws: a line per series, the heatmap's image,
    and for plain/FEC a line per mode and RTT (against loss) and per mode and loss (against
    RTT)."""
    if plot_id == "sweep":
        return 1
    if plot_id == "impaired":
        pts = data["points"]
        by_loss = {(p["mode"], p["rtt_ms"]) for p in pts}
        by_rtt = {(p["mode"], p["loss"]) for p in pts}
        return len(by_loss) + len(by_rtt)
    return len(data["series"])


def plotted(report: dict[str, Any], plot_id: str) -> dict[str, Any]:
    data: dict[str, Any] = next(p["data"] for p in report["plots"] if p["id"] == plot_id)
    return data


def test_bench_report_renders_every_plot_from_two_real_runs(tmp_path: Path) -> None:
    out_dir = tmp_path / "report"
    first = cli(
        "bench", "--size", "4MiB", "--rounds", "3", "--grid", "--tune-size", "2MiB",
        "--json", "--report", str(out_dir),
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    second = cli("bench", "--size", "4MiB", "--rounds", "3", "--json", "--report", str(out_dir))
    assert second.returncode == 0, second.stderr
    page = out_dir / "index.html"
    report = check_every_plot_rendered(page, tmp_path, {"rate", "cpu", "sweep"})
    assert 'id="missing-impaired"' in page.read_text()

    # The JSON beside the page holds the measured figures, run by run.
    runs = [json.loads(first.stdout), json.loads(second.stdout)]
    for unit, plot_id in (("B/s", "rate"), ("s/GB", "cpu")):
        for series in plotted(report, plot_id)["series"]:
            measured = [
                next(f["median"] for f in run["figures"] if f["name"] == series["name"])
                for run in runs
            ]
            assert [p["median"] for p in series["points"]] == measured
            assert all(f["unit"] == unit for r in runs for f in r["figures"]
                       if f["name"] == series["name"])  # fmt: skip
    tried = runs[0]["tune"]["tried"]
    cells = plotted(report, "sweep")["cells"]
    window = tried[0]["settings"]["window"]
    expected = {
        (t["settings"]["streams"], t["settings"]["group_size"]): t["rate"]["median"]
        for t in tried
        if t["settings"]["window"] == window
    }
    assert {(c["streams"], c["group_size"]): c["median"] for c in cells} == expected
    assert len(cells) == 20  # every streams x group-size pair: a full heatmap


def test_history_report_renders_every_plot_from_a_real_pytest_benchmark_run(
    tmp_path: Path,
) -> None:
    storage = tmp_path / "history"
    env = {
        "I6P_FEC_BYTES": str(1 << 20),
        "I6P_FEC_LOSS": "0,0.03",
        "I6P_FEC_RTT_MS": "20,100",
        "I6P_SWEEP_BYTES": str(1 << 20),
        "I6P_BENCH_BYTES": str(4 << 20),
        "I6P_BENCH_ROUNDS": "1",
    }
    bench = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
            "benches/bench_fec.py::test_fec_vs_plain_on_a_lossy_long_link",
            "benches/bench_sweep.py",
            "benches/bench_transfer.py::test_verified_fetch_vs_baseline",
            "--benchmark-only", "--benchmark-autosave", f"--benchmark-storage=file://{storage}",
        ],
        capture_output=True, text=True, timeout=240, cwd=ROOT, env={**os.environ, **env},
    )  # fmt: skip
    assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-2000:]
    out_dir = tmp_path / "report"
    made = cli("report", str(out_dir), "--history", str(storage))
    assert made.returncode == 0, made.stderr
    report = check_every_plot_rendered(
        out_dir / "index.html", tmp_path, {"rate", "cpu", "sweep", "impaired"}
    )

    saved = json.loads(next(storage.rglob("*.json")).read_text())
    fec = [b for b in saved["benchmarks"] if "bench_fec" in b["fullname"]]
    points = plotted(report, "impaired")["points"]
    assert len(points) == 2 * len(fec) == 8  # plain and FEC at 2 RTTs x 2 loss rates
    assert {(p["rtt_ms"], p["loss"]) for p in points} == {
        (20, 0),
        (20, 0.03),
        (100, 0),
        (100, 0.03),
    }
    for b in fec:
        info = b["extra_info"]
        for mode in ("plain", "fec"):
            (p,) = [
                p for p in points
                if p["mode"] == mode and p["loss"] == info["loss"] and p["rtt_ms"] == info["rtt_ms"]
            ]  # fmt: skip
            assert p["median"] == pytest.approx(info["bytes"] / info[f"{mode}_seconds"]["median"])
    assert len(plotted(report, "sweep")["cells"]) == 25
    names = {s["name"] for s in plotted(report, "cpu")["series"]}
    assert any("fetch_cpu_receiver" in n for n in names), names


def _without_plot_extra(*args: str) -> Any:
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None  # as if the plot extra were not installed\n"
        "from i6p.cli import main\n"
        f"sys.exit(main({list(args)!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_a_missing_plot_extra_is_a_typed_error_before_anything_runs(tmp_path: Path) -> None:
    from i6p.cli import EXIT_MISSING_EXTRA
    from i6p.errors import I6PError, MissingExtra

    assert issubclass(MissingExtra, I6PError) and issubclass(MissingExtra, ImportError)
    out_dir = tmp_path / "r"
    # 1 GiB and 100 rounds would take minutes: the error comes first.
    bench = _without_plot_extra(
        "bench", "--size", "1GiB", "--rounds", "100", "--report", str(out_dir)
    )
    assert bench.returncode == EXIT_MISSING_EXTRA, bench.stderr
    assert "pip install 'i6p[plot]'" in bench.stderr
    assert not out_dir.exists()
    hist = _without_plot_extra("report", str(out_dir), "--history", str(tmp_path))
    assert hist.returncode == EXIT_MISSING_EXTRA
    assert "i6p[plot]" in hist.stderr


def test_the_plot_extra_is_imported_only_for_a_report() -> None:
    code = (
        "import sys, i6p, i6p.cli, i6p.report, i6p.bench\n"
        "i6p.cli.build_parser()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_bad_history_is_a_clear_error(tmp_path: Path) -> None:
    out = cli("report", str(tmp_path / "r"), "--history", str(tmp_path / "none"))
    assert out.returncode == 1 and "no benchmark history" in out.stderr
    (tmp_path / "h").mkdir()
    assert (
        "no saved pytest-benchmark runs"
        in cli("report", str(tmp_path / "r"), "--history", str(tmp_path / "h")).stderr
    )
    (tmp_path / "h" / "0001_x.json").write_text("{not json")
    out = cli("report", str(tmp_path / "r"), "--history", str(tmp_path / "h"))
    assert out.returncode == 1 and "not JSON" in out.stderr
    (tmp_path / "h" / "0001_x.json").write_text('{"something": "else"}')
    out = cli("report", str(tmp_path / "r"), "--history", str(tmp_path / "h"))
    assert out.returncode == 1 and "not a pytest-benchmark result" in out.stderr
    assert not (tmp_path / "r").exists()


def test_a_bad_runs_file_is_refused_before_measuring(tmp_path: Path) -> None:
    out_dir = tmp_path / "r"
    out_dir.mkdir()
    runs = out_dir / "runs.json"
    for text, says in (
        ("[1, 2", "not JSON"),
        ('{"version": 1, "runs": [{"time": "t", "figures": [{"name": "x"}]}]}', "not a runs file"),
        ('{"version": 99, "runs": []}', "version 99"),
    ):
        runs.write_text(text)
        # 1 GiB and 100 rounds would take minutes: the refusal comes first.
        out = cli("bench", "--size", "1GiB", "--rounds", "100", "--report", str(out_dir))
        assert out.returncode == 1 and says in out.stderr, out.stderr
        assert runs.read_text() == text and not (out_dir / "index.html").exists()
