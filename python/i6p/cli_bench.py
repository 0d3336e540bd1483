"""The ``i6p bench`` and ``i6p report`` commands: throughput figures, tuning sweeps and the
benchmark report page."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .transfer import Ticket

__all__ = ["cmd_bench", "cmd_report"]


# -- bench ---------------------------------------------------------------------------------


def _figure_rows(figures: list[Any], baseline: Any | None) -> list[tuple[str, str, str]]:
    rows = []
    for f in figures:
        ratio = ""
        if baseline is not None and f is not baseline and f.unit == baseline.unit:
            ratio = f"{f.median / baseline.median:.2f}x baseline"
        rows.append((f.name, str(f).split(": ", 1)[1], ratio))
    return rows


def _print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("measurement", "median (min-max)", "ratio"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    from . import bench

    settings = bench.Settings(args.streams, args.group_size, args.window)

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr)

    ticket = Ticket.parse(args.ticket) if args.ticket else None
    target = f"against {ticket.peer_id.short()}" if ticket else "over ::1"
    out: dict[str, Any] = {"settings": settings.__dict__, "target": target, "figures": []}
    figures: list[Any] = []
    baseline = cpu_base = None
    if ticket is None:
        payload = out["max_udp_payload"] = await bench.node_payload()
        where = args.dir or bench.scratch_dir()
        say(
            f"bare quinn baseline and verified fetch (disk to disk in {where}) in turn, "
            f"{args.size >> 20} MiB over ::1, {payload}-byte packets ..."
        )
        baseline, cpu_base, rate, cpu = await bench.fetch_vs_baseline(
            args.size, args.rounds, settings, directory=args.dir, max_udp_payload=payload
        )
        figures += [baseline, rate, cpu_base, cpu]
    else:
        say(f"verified fetch of {ticket.size >> 20} MiB from {ticket.peer_id.short()} ...")
        rate = await bench.fetch_remote(ticket, args.rounds, settings, directory=args.dir)
        figures.append(rate)
    say("handshakes ...")
    latency, per_second = await bench.handshakes(30, peer=ticket)
    figures += [latency, per_second]
    rows = _figure_rows(figures, baseline)
    if cpu_base is not None:
        rows = [
            r
            if r[0] != "verified fetch CPU"
            else (r[0], r[1], f"{cpu.median / cpu_base.median:.2f}x baseline")
            for r in rows
        ]
    out["figures"] = [f.as_dict() for f in figures]
    if baseline is not None:
        out["ratio_fetch_to_baseline"] = rate.median / baseline.median
        out["ratio_cpu_to_baseline"] = cpu.median / cpu_base.median if cpu_base else None
    if not args.json:
        _print_table(f"i6p bench {target}", rows)
    if args.tune or args.grid:
        out["tune"] = await _tune(args, ticket, say)
    return out


async def _tune(
    args: argparse.Namespace, ticket: Ticket | None, say: Callable[[str], None]
) -> dict[str, Any]:
    from . import bench

    rounds = max(1, min(args.rounds, 3))
    directory = args.dir or bench.scratch_dir()
    say(f"tuning: {rounds} fetches per setting ...")
    async with contextlib.AsyncExitStack() as stack:
        # One local provider per window setting (windows apply to both ends).
        providers: dict[str, Ticket] = {}

        async def measure(s: Any) -> Any:
            if ticket is not None:
                return await bench.fetch_remote(ticket, rounds, s, directory=directory)
            if s.window not in providers:
                provider = bench.local_provider(args.tune_size, directory, s.window)
                providers[s.window] = (await stack.enter_async_context(provider))[1]
            rate = bench.Figure("verified fetch", "B/s")
            await bench.fetch_rounds(providers[s.window], rounds, directory, s, rate, None)
            return rate

        report = lambda s, f: say(f"  {s.describe()}: {f}")  # noqa: E731
        if args.grid:
            result = await bench.grid(measure, window=args.window, report=report)
        else:
            result = await bench.tune(measure, report=report)
    if not args.json:
        rows = [
            (s.describe(), str(f).split(": ", 1)[1], "best" if s == result.best else "")
            for s, f in result.tried
        ]
        how = (
            "every pair" if args.grid else "one setting at a time, the others at their best so far"
        )
        _print_table(f"tuning ({how})", rows)
        b = result.best
        print(
            f"best: --streams {b.streams} --group-size {b.group_size >> 10}KiB --window {b.window}"
            f"  ({result.best_rate.median / 2**20:.0f} MiB/s median)"
        )
    return {
        "sweep": "grid" if args.grid else "one at a time",
        "best": result.best.__dict__,
        "best_rate": result.best_rate.as_dict(),
        "tried": [{"settings": s.__dict__, "rate": f.as_dict()} for s, f in result.tried],
    }


def cmd_bench(args: argparse.Namespace) -> int:
    from . import report

    runs = []
    if args.report:  # before measuring, not after
        report.require_plot_extra()
        runs = report.load_runs(Path(args.report))
    out = asyncio.run(_bench(args))
    if args.json:
        print(json.dumps(out))
    if args.report:
        directory = Path(args.report)
        runs.append(report.run_from_bench(out))
        report.save_runs(directory, runs)
        page = report.write_report(runs, directory, title="i6p bench")
        print(f"report: {page}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from . import report

    report.require_plot_extra()
    runs = report.runs_from_history(Path(args.history))
    page = report.write_report(runs, Path(args.out), title="I6P benchmarks (pytest-benchmark)")
    print(f"report: {page} ({len(runs)} runs)", file=sys.stderr)
    return 0
