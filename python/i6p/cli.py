"""The ``i6p`` command line: identity, sending and getting files, benchmarks, the demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from . import __version__
from .errors import I6PError, MissingExtra
from .identity import Identity, default_identity_path
from .node import Node
from .rendezvous import RendezvousLink, connect_through, hold_sessions
from .transfer import (
    Blob,
    Collection,
    CollectionResult,
    Contact,
    FetchOptions,
    FetchResult,
    Ticket,
)

__all__ = ["EXIT_MISSING_EXTRA", "main"]

# The exit code when a command needs an optional extra that is not installed.
EXIT_MISSING_EXTRA = 3


def _identity(path: str | None) -> Identity:
    return Identity.load_or_generate(Path(path) if path else default_identity_path())


def _state_dir(identity_path: str | None) -> Path:
    """Resumption state lives next to the identity file (the per-user default, or the file
    given with --identity)."""
    return (Path(identity_path) if identity_path else default_identity_path()).parent / "state"


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 256MiB)") from None


def _progress_bar(
    enabled: bool, label: str
) -> tuple[AbstractContextManager[Any], Callable[[int, int], None]]:
    """A rich progress bar on stderr (bytes, rate, ETA), and the callback that feeds it."""
    if not enabled:
        return nullcontext(), lambda done, total: None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn(label),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=False,
        console=Console(stderr=True),
    )
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total or None)

    return bar, update


# -- id ------------------------------------------------------------------------------------


def _cmd_id(args: argparse.Namespace) -> int:
    print(_identity(args.identity).peer_id)
    return 0


# -- join ----------------------------------------------------------------------------------


def _cmd_join(args: argparse.Namespace) -> int:
    print(Ticket.join([one for t in args.ticket for one in Ticket.parse_all(t)]))
    return 0


def _udp_payload(text: str) -> int | str:
    """``--max-udp-payload``: "auto" or a byte count (Node.bind checks its range)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not auto or a byte count: {text!r}") from None


# -- send ----------------------------------------------------------------------------------


async def _send(args: argparse.Namespace) -> int:
    identity = _identity(args.identity)
    async with await Node.bind(
        identity,
        args.addr,
        congestion=args.congestion,
        max_udp_payload=args.max_udp_payload,
        state_dir=_state_dir(args.identity),
        accept_sessions=False,  # it only serves: sessions never wait for an accept()
    ) as node:
        if args.allow is not None:
            node.allow_peers(args.allow)
        served: Blob | Collection
        if await asyncio.to_thread(Path(args.path).is_dir):
            served = await node.add_dir(args.path)
        else:
            served = await node.add_path(args.path)
        contacts = [Contact.parse(t) for t in args.rendezvous or []]
        async with contextlib.AsyncExitStack() as links:
            for contact in contacts:
                await links.enter_async_context(RendezvousLink(node, contact))
            return await _serve(args, node, served, node.ticket(served, rendezvous=contacts))


async def _serve(
    args: argparse.Namespace, node: Node, served: Blob | Collection, ticket: Ticket
) -> int:
    """Prints the ticket and serves until interrupted (or one complete transfer)."""
    size = _size_of(served)
    what = (
        f"{served.files} files, {served.bytes} bytes"
        if isinstance(served, Collection)
        else f"{served.size} bytes, blake3 {served.hash}"
    )
    show = (sys.stderr.isatty() and not args.json) or args.progress
    if args.json:
        info = {"ticket": str(ticket), "hash": served.hash, "size": served.size}
        if isinstance(served, Collection):
            info |= {"collection": True, "files": served.files, "bytes": served.bytes}
        print(json.dumps({**info, "peer_id": str(node.peer_id)}), flush=True)
    else:
        print(f"serving {served.path} ({what})", file=sys.stderr)
        print("fetch it with:  i6p get <ticket>", file=sys.stderr)
        print(ticket, flush=True)
    # The bar shows what the furthest peer has acknowledged, not what was queued.
    bar, update = _progress_bar(show, "acknowledged")
    with bar:
        while True:
            await asyncio.sleep(0.1)
            acked = _acknowledged(node, served)
            update(acked, size)
            if args.once and acked >= size:
                break
    if not args.json:
        print("one complete transfer done", file=sys.stderr)
    return 0


def _acknowledged(node: Node, served: Blob | Collection) -> int:
    """Bytes the furthest peer acknowledged: of the blob, or of each distinct file of a
    collection (``_size`` is the matching total)."""
    if isinstance(served, Blob):
        return node.served_bytes(served)
    return sum(node.served_bytes(h) for h in {h for _path, _size, h in served.entries})


def _size_of(served: Blob | Collection) -> int:
    if isinstance(served, Blob):
        return served.size
    return sum(dict((h, size) for _path, size, h in served.entries).values())


def _cmd_send(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_send(args))
    except KeyboardInterrupt:
        return 130


# -- get -----------------------------------------------------------------------------------


async def _get(args: argparse.Namespace) -> tuple[FetchResult | CollectionResult, str]:
    """The fetch's result, and the route of the session it rode on."""
    texts, output = list(args.ticket), args.output
    # `i6p get TICKET DEST`: a last word that is not a ticket is where to write.
    if len(texts) > 1 and not texts[-1].strip().lower().startswith("i6p") and output is None:
        output = texts.pop()
    tickets = [one for t in texts for one in Ticket.parse_all(t)]
    ticket = tickets[0]
    dest = Path(output) if output else Path.cwd() / ticket.hash
    identity = _identity(args.identity)
    show = not args.json and not args.quiet
    bar, update = _progress_bar((show and sys.stderr.isatty()) or args.progress, "fetching")
    async with await Node.bind(
        identity,
        args.addr,
        congestion=args.congestion,
        window=args.window,
        max_udp_payload=args.max_udp_payload,
        state_dir=_state_dir(args.identity),
    ) as node:
        route = "direct"
        session = None
        if ticket.rendezvous:
            # Through a rendezvous node when the provider's addresses do not answer; the
            # fetch then rides on this session.
            session = await connect_through(node, ticket)
            route = session.route
        with bar:
            result: FetchResult | CollectionResult
            if ticket.collection:
                result = await node.fetch_dir(
                    tickets, dest, progress=update, options=_fetch_options(args)
                )
            else:
                result = await node.fetch(
                    tickets, dest, progress=update, options=_fetch_options(args)
                )
        if session is not None:
            await session.close()
        return result, route


def _fetch_options(args: argparse.Namespace) -> FetchOptions:
    """The options given on the command line; the engine's defaults for the rest."""
    given = {
        "overwrite": args.overwrite or None,
        "group_size": args.group_size,
        "streams": args.streams,
        "mode": args.mode,
        "fec_combine": args.combine or None,
    }
    return FetchOptions(**{k: v for k, v in given.items() if v is not None})


def _cmd_get(args: argparse.Namespace) -> int:
    result, route = asyncio.run(_get(args))
    if isinstance(result, CollectionResult):
        if args.json:
            print(
                json.dumps(
                    {
                        "path": str(result.path),
                        "files": len(result.files),
                        "size": result.size,
                        "bytes_fetched": result.bytes_fetched,
                        "route": route,
                    }
                )
            )
        elif not args.quiet:
            print(
                f"{result.path}: {len(result.files)} files, {result.size} bytes verified, "
                f"{result.bytes_fetched} fetched"
            )
        return 0
    if args.json:
        print(json.dumps(result.as_dict() | {"route": route}))
    elif not args.quiet:
        rate = result.bytes_fetched / result.duration_s if result.duration_s > 0 else 0.0
        resumed = f", {result.bytes_reused} reused" if result.bytes_reused else ""
        print(
            f"{result.path}: {result.size} bytes verified (blake3 {result.hash}), "
            f"{result.bytes_fetched} fetched{resumed} in {result.duration_s:.2f} s "
            f"({rate / 2**20:.1f} MiB/s)"
        )
        if route != "direct":
            print(f"route: {route}", file=sys.stderr)
        for peer, why in result.dropped.items():
            print(f"provider {peer} dropped: {why}", file=sys.stderr)
    return 0


# -- rendezvous ----------------------------------------------------------------------------


async def _rendezvous(args: argparse.Namespace) -> int:
    identity = _identity(args.identity)
    async with await Node.bind(
        identity,
        args.listen,
        state_dir=_state_dir(args.identity),
        coordinate=True,
        relay=args.relay,
    ) as node:
        contact = Contact(node.peer_id, node.local_addrs[:16], relay=args.relay)
        if args.json:
            info = {"contact": str(contact), "peer_id": str(node.peer_id), "relay": args.relay}
            print(json.dumps(info | {"addrs": contact.addrs}), flush=True)
        else:
            role = "introduces and relays" if args.relay else "introduces"
            print(f"rendezvous on {node.local_addr}: {role} peers", file=sys.stderr)
            print("use it with:  i6p send PATH --rendezvous <contact>", file=sys.stderr)
            print(contact, flush=True)
        await hold_sessions(node)
    return 0


def _cmd_rendezvous(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_rendezvous(args))
    except KeyboardInterrupt:
        return 130


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


def _cmd_bench(args: argparse.Namespace) -> int:
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


def _cmd_report(args: argparse.Namespace) -> int:
    from . import report

    report.require_plot_extra()
    runs = report.runs_from_history(Path(args.history))
    page = report.write_report(runs, Path(args.out), title="I6P benchmarks (pytest-benchmark)")
    print(f"report: {page} ({len(runs)} runs)", file=sys.stderr)
    return 0


# -- demo ----------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = asyncio.run(run_demo(args.size, show=not args.json))
    if args.json:
        print(json.dumps(result))
    return 0 if result["verified"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="i6p", description="Peer-to-peer sessions and verified transfers on QUIC."
    )
    parser.add_argument("--version", action="version", version=f"i6p {__version__}")
    defaults = FetchOptions()  # the engine's, shown in the help
    sub = parser.add_subparsers(dest="command", required=True)

    def with_identity(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--identity",
            metavar="PATH",
            help=f"identity key file (default: {default_identity_path()})",
        )

    p_id = sub.add_parser("id", help="print this machine's PeerId (creating the identity once)")
    with_identity(p_id)
    p_id.set_defaults(func=_cmd_id)

    def with_transport(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--congestion",
            choices=["cubic", "bbr", "bounded", "newreno"],
            default="cubic",
            help="congestion controller (default cubic)",
        )
        p.add_argument(
            "--max-udp-payload",
            type=_udp_payload,
            default="auto",
            metavar="BYTES",
            help="largest UDP payload path MTU discovery tries: auto (the default: the "
            "largest interface MTU less 48, and no more than the route's) or bytes "
            "(1452 is QUIC's usual bound)",
        )

    p_send = sub.add_parser("send", aliases=["serve"], help="serve a file and print its ticket")
    with_transport(p_send)
    p_send.add_argument("path", help="the file or directory to serve")
    with_identity(p_send)
    p_send.add_argument("--addr", default="[::]:0", help="listen address (default [::]:0)")
    p_send.add_argument("--once", action="store_true", help="exit after one complete transfer")
    p_send.add_argument(
        "--allow",
        nargs="+",
        action="extend",
        metavar="PEERID",
        help="only these peers may fetch (at least one)",
    )
    p_send.add_argument(
        "--rendezvous",
        action="append",
        metavar="CONTACT",
        help="keep a session to this rendezvous node (from `i6p rendezvous`) and name it in "
        "the ticket, so peers behind firewalls or NATs can reach this one (up to 4)",
    )
    p_send.add_argument("--json", action="store_true", help="print the ticket as JSON")
    p_send.add_argument(
        "--progress", action="store_true", help="acknowledged-bytes bar even when piped"
    )
    p_send.set_defaults(func=_cmd_send)

    p_get = sub.add_parser("get", help="fetch a file from a ticket (resumes automatically)")
    p_get.add_argument(
        "ticket",
        nargs="+",
        help="the ticket printed by `i6p send` (several: fetch from all); a last word that "
        "is not a ticket is where to write",
    )
    p_get.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="where to write: the file, or the directory of a collection (default: ./HASH)",
    )
    with_identity(p_get)
    p_get.add_argument("--addr", default="[::]:0", help="local address (default [::]:0)")
    p_get.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p_get.add_argument(
        "--group-size",
        type=_size,
        help=f"chunk group size (default {defaults.group_size >> 10}KiB)",
    )
    p_get.add_argument(
        "--streams", type=int, help=f"requests in flight (default {defaults.streams})"
    )
    p_get.add_argument(
        "--mode",
        choices=["plain", "fec"],
        help="fec: Reed-Solomon shards in datagrams, for lossy or long links "
        f"(default {defaults.mode})",
    )
    p_get.add_argument(
        "--combine",
        action="store_true",
        help="fec with several tickets: every provider sends a share of each stripe",
    )
    p_get.add_argument(
        "--window", default="auto", help="flow-control window: auto (default), quinn, or bytes"
    )
    with_transport(p_get)
    p_get.add_argument("--json", action="store_true", help="print the result as JSON")
    p_get.add_argument("--progress", action="store_true", help="progress bar even when piped")
    p_get.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p_get.set_defaults(func=_cmd_get)

    p_rdv = sub.add_parser(
        "rendezvous",
        help="run a node that introduces peers to each other (and relays, with --relay)",
    )
    with_identity(p_rdv)
    p_rdv.add_argument("--listen", default="[::]:6446", help="listen address (default [::]:6446)")
    p_rdv.add_argument(
        "--relay",
        action="store_true",
        help="also relay end-to-end encrypted traffic when no direct path forms",
    )
    p_rdv.add_argument("--json", action="store_true", help="print the contact as JSON")
    p_rdv.set_defaults(func=_cmd_rendezvous)

    p_bench = sub.add_parser(
        "bench",
        help="measure throughput over ::1, or from a remote provider given its ticket",
    )
    p_bench.add_argument("ticket", nargs="?", help="a ticket from `i6p send` on the other host")
    p_bench.add_argument("--size", type=_size, default=256 << 20, help="local blob (256MiB)")
    p_bench.add_argument("--rounds", type=int, default=3, help="rounds per figure (default 3)")
    p_bench.add_argument(
        "--streams",
        type=int,
        default=defaults.streams,
        help=f"requests in flight ({defaults.streams})",
    )
    p_bench.add_argument(
        "--group-size",
        type=_size,
        default=defaults.group_size,
        help=f"chunk group ({defaults.group_size >> 10}KiB)",
    )
    p_bench.add_argument("--window", default="auto", help="auto, quinn, or bytes")
    p_bench.add_argument("--dir", help="where blobs are written (default: a tmpfs if any)")
    p_bench.add_argument(
        "--tune", action="store_true", help="sweep streams, group size and windows"
    )
    p_bench.add_argument(
        "--tune-size", type=_size, default=128 << 20, help="local blob per tuning step"
    )
    p_bench.add_argument(
        "--grid",
        action="store_true",
        help="tune over every streams x group-size pair (20 settings) at --window, "
        "instead of one setting at a time",
    )
    p_bench.add_argument("--json", action="store_true", help="print the results as JSON")
    p_bench.add_argument(
        "--report",
        metavar="DIR",
        help="add this run to DIR/runs.json and write DIR/index.html (plots of every run "
        "there) and DIR/report.json; needs pip install 'i6p[plot]'",
    )
    p_bench.set_defaults(func=_cmd_bench)

    p_report = sub.add_parser(
        "report",
        help="an HTML page of plots from pytest-benchmark's saved runs (make bench-report)",
    )
    p_report.add_argument("out", metavar="DIR", help="where index.html and report.json go")
    p_report.add_argument(
        "--history", default=".benchmarks", help="pytest-benchmark's storage (.benchmarks)"
    )
    p_report.set_defaults(func=_cmd_report)

    p_join = sub.add_parser(
        "join", help="print one ticket listing the providers of several tickets for one blob"
    )
    p_join.add_argument("ticket", nargs="+", help="tickets for the same blob (2 to 8 providers)")
    p_join.set_defaults(func=_cmd_join)

    p_demo = sub.add_parser("demo", help="send a generated file between two local nodes")
    p_demo.add_argument("--size", type=_size, default=256 << 20, help="bytes (default 256MiB)")
    p_demo.add_argument("--json", action="store_true", help="print the result as JSON")
    p_demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MissingExtra as e:
        print(f"i6p: {e}", file=sys.stderr)
        return EXIT_MISSING_EXTRA
    except (I6PError, OSError, ValueError) as e:
        print(f"i6p: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("i6p: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
