"""The ``i6p`` command line: identity, sending and getting files, benchmarks, the demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from . import __version__
from .cli_bench import cmd_bench, cmd_report
from .errors import I6PError, MissingExtra
from .forward import add_commands as add_forward_commands
from .identity import Identity, PeerId, PublicKey, default_identity_path
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


def _discovery(args: argparse.Namespace) -> dict[str, Any]:
    """Node.bind's discovery options from the command line."""
    return {
        "mdns": args.mdns,
        "dht": args.dht,
        "dht_bootstrap": args.dht_bootstrap,
        "publish_addrs": args.publish_addrs,
        "dht_timeout": args.dht_timeout,
    }


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
    contacts = [Contact.parse(t) for t in args.rendezvous or []]
    async with await Node.bind(
        identity,
        args.addr,
        congestion=args.congestion,
        max_udp_payload=args.max_udp_payload,
        state_dir=_state_dir(args.identity),
        accept_sessions=False,  # it only serves: sessions never wait for an accept()
        # With --dht, the record names the rendezvous nodes, so a key ticket reaches them.
        dht_contacts=contacts if args.dht else (),
        **_discovery(args),
    ) as node:
        if args.allow is not None:
            node.allow_peers(args.allow)
        served: Blob | Collection
        if await asyncio.to_thread(Path(args.path).is_dir):
            served = await node.add_dir(args.path)
        else:
            served = await node.add_path(args.path)
        async with contextlib.AsyncExitStack() as links:
            for contact in contacts:
                await links.enter_async_context(RendezvousLink(node, contact))
            by_key = args.by_key or args.dht
            ticket = node.ticket(served, rendezvous=contacts, by_key=by_key)
            return await _serve(args, node, served, ticket)


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
        key = str(node.identity.key)
        print(json.dumps({**info, "peer_id": str(node.peer_id), "key": key}), flush=True)
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
    if args.once:
        # Everything is acknowledged, but the getter may still be finishing (its last
        # requests' ends): let it close first, for up to 10 s.
        for _ in range(100):
            if node.load.connections == 0:
                break
            await asyncio.sleep(0.1)
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
        **_discovery(args),
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


# -- resolve -------------------------------------------------------------------------------


async def _resolve(args: argparse.Namespace) -> dict[str, list[str]]:
    """What each discovery source knows of the peer: the address book in the state directory,
    and mDNS (listening up to --wait seconds for it to announce itself)."""
    peer = _peer_of(args.peer)
    async with await Node.bind(
        _identity(args.identity),
        "[::]:0",
        state_dir=_state_dir(args.identity),
        accept_sessions=False,
        **_discovery(args),
    ) as node:
        deadline = asyncio.get_running_loop().time() + args.wait
        while args.mdns and not node.lookup(peer)["mdns"]:
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.1)
        found = node.lookup(peer)
        key = args.peer.strip()
        if args.dht and len(key) == 52:
            record = await node.dht_lookup(key)
            found["dht"] = [] if record is None else record.addrs
            found["dht contacts"] = [] if record is None else [str(c) for c in record.contacts]
        return found


def _peer_of(text: str) -> PeerId:
    """A PeerId from its text or a public key's (52 characters)."""
    text = text.strip()
    return PublicKey.parse(text).peer_id if len(text) == 52 else PeerId.parse(text)


def _cmd_resolve(args: argparse.Namespace) -> int:
    found = asyncio.run(_resolve(args))
    if args.json:
        print(json.dumps(found))
    else:
        for source, addrs in found.items():
            print(f"{source}: {', '.join(addrs) if addrs else '(nothing)'}")
    return 0 if any(found.values()) else 1


def _cmd_dht_testnet(args: argparse.Namespace) -> int:
    """Runs a DHT of its own on 127.0.0.1 until interrupted, for trying discovery offline."""
    from . import DhtTestnet

    testnet = DhtTestnet(args.nodes)
    print(",".join(testnet.bootstrap), flush=True)
    print(
        f"{args.nodes} DHT nodes on 127.0.0.1; use them with --dht --dht-bootstrap <the line "
        "above> (or I6P_DHT_BOOTSTRAP); Ctrl-C stops them",
        file=sys.stderr,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
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

    def with_discovery(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--no-mdns",
            dest="mdns",
            action="store_false",
            default=os.environ.get("I6P_MDNS", "1") != "0",
            help="do not announce this node on the LAN nor look peers up there (mDNS is on "
            "unless this is given or I6P_MDNS=0)",
        )
        p.add_argument(
            "--dht",
            action="store_true",
            default=os.environ.get("I6P_DHT", "0") == "1",
            help="publish this node's record in the Mainline DHT and look peers up there "
            "(or I6P_DHT=1)",
        )
        p.add_argument(
            "--dht-bootstrap",
            type=lambda t: [a for a in t.split(",") if a],
            default=[a for a in os.environ.get("I6P_DHT_BOOTSTRAP", "").split(",") if a],
            metavar="HOST:PORT,...",
            help="DHT nodes to join through (a private DHT, `i6p dht-testnet`; or "
            "I6P_DHT_BOOTSTRAP); default: the public DHT",
        )
        p.add_argument(
            "--dht-timeout",
            type=float,
            default=float(os.environ["I6P_DHT_TIMEOUT"])
            if "I6P_DHT_TIMEOUT" in os.environ
            else None,
            metavar="SECONDS",
            help="how long each DHT request waits for its answer (0.05 to 10; default 2): a "
            "lookup lasts at least this when a DHT node is silent (or I6P_DHT_TIMEOUT)",
        )
        p.add_argument(
            "--publish-addrs",
            action="store_true",
            help="list this node's addresses in its DHT record (anyone who knows its key "
            "then sees where it is)",
        )

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
        with_discovery(p)

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
    p_send.add_argument(
        "--by-key",
        action="store_true",
        help="print a short ticket naming this node by its public key alone (no address): "
        "the fetching side finds it by discovery (its address book, mDNS on the LAN)",
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

    p_resolve = sub.add_parser(
        "resolve", help="print what each discovery source knows of a peer (key or PeerId)"
    )
    p_resolve.add_argument("peer", help="the peer's public key (52 characters) or PeerId")
    with_identity(p_resolve)
    p_resolve.add_argument(
        "--wait", type=float, default=3.0, help="seconds to listen on the LAN (default 3)"
    )
    with_discovery(p_resolve)
    p_resolve.add_argument("--json", action="store_true", help="print the result as JSON")
    p_resolve.set_defaults(func=_cmd_resolve)

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
    p_bench.set_defaults(func=cmd_bench)

    p_report = sub.add_parser(
        "report",
        help="an HTML page of plots from pytest-benchmark's saved runs (make bench-report)",
    )
    p_report.add_argument("out", metavar="DIR", help="where index.html and report.json go")
    p_report.add_argument(
        "--history", default=".benchmarks", help="pytest-benchmark's storage (.benchmarks)"
    )
    p_report.set_defaults(func=cmd_report)

    p_testnet = sub.add_parser(
        "dht-testnet", help="run a Mainline DHT of N nodes on 127.0.0.1 and print its bootstrap"
    )
    p_testnet.add_argument("nodes", type=int, nargs="?", default=20, help="nodes (default 20)")
    p_testnet.set_defaults(func=_cmd_dht_testnet)

    p_join = sub.add_parser(
        "join", help="print one ticket listing the providers of several tickets for one blob"
    )
    p_join.add_argument("ticket", nargs="+", help="tickets for the same blob (2 to 8 providers)")
    p_join.set_defaults(func=_cmd_join)

    add_forward_commands(sub, with_identity, with_discovery)
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
