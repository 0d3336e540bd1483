"""The ``i6p`` command line: identity, sending and getting files, the demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from . import __version__
from .errors import I6PError
from .identity import Identity, default_identity_path
from .node import Node
from .transfer import FetchResult, Ticket

__all__ = ["main"]


def _identity(path: str | None) -> Identity:
    return Identity.load_or_generate(Path(path) if path else default_identity_path())


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
    )
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total or None)

    return bar, update


# -- id ------------------------------------------------------------------------------------


def _cmd_id(args: argparse.Namespace) -> int:
    print(_identity(args.identity).peer_id)
    return 0


# -- send ----------------------------------------------------------------------------------


async def _send(args: argparse.Namespace) -> int:
    identity = _identity(args.identity)
    async with await Node.bind(identity, args.addr) as node:
        if args.allow:
            node.allow_peers(args.allow)
        blob = await node.add_path(args.path)
        ticket = node.ticket(blob)
        if args.json:
            info = {"ticket": str(ticket), "hash": blob.hash, "size": blob.size}
            print(json.dumps({**info, "peer_id": str(node.peer_id)}), flush=True)
        else:
            print(f"serving {blob.path} ({blob.size} bytes, blake3 {blob.hash})", file=sys.stderr)
            print("fetch it with:  i6p get <ticket>", file=sys.stderr)
            print(ticket, flush=True)
        while True:
            await asyncio.sleep(0.1)
            if args.once and node.served_bytes(blob) >= blob.size:
                if not args.json:
                    print("one complete transfer done", file=sys.stderr)
                return 0


def _cmd_send(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_send(args))
    except KeyboardInterrupt:
        return 130


# -- get -----------------------------------------------------------------------------------


async def _get(args: argparse.Namespace) -> FetchResult:
    ticket = Ticket.parse(args.ticket)
    dest = Path(args.output) if args.output else Path.cwd() / ticket.hash
    identity = _identity(args.identity)
    show = not args.json and not args.quiet
    bar, update = _progress_bar((show and sys.stderr.isatty()) or args.progress, "fetching")
    async with await Node.bind(identity, args.addr) as node:
        with bar:
            return await node.fetch(
                ticket,
                dest,
                progress=update,
                overwrite=args.overwrite,
                group_size=args.group_size,
                streams=args.streams,
            )


def _cmd_get(args: argparse.Namespace) -> int:
    result = asyncio.run(_get(args))
    if args.json:
        print(json.dumps(result.as_dict()))
    elif not args.quiet:
        rate = result.bytes_fetched / result.duration_s if result.duration_s > 0 else 0.0
        resumed = f", {result.bytes_reused} reused" if result.bytes_reused else ""
        print(
            f"{result.path}: {result.size} bytes verified (blake3 {result.hash}), "
            f"{result.bytes_fetched} fetched{resumed} in {result.duration_s:.2f} s "
            f"({rate / 2**20:.1f} MiB/s)"
        )
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

    p_send = sub.add_parser("send", help="serve a file and print its ticket")
    p_send.add_argument("path", help="the file to serve")
    with_identity(p_send)
    p_send.add_argument("--addr", default="[::]:0", help="listen address (default [::]:0)")
    p_send.add_argument("--once", action="store_true", help="exit after one complete transfer")
    p_send.add_argument("--allow", nargs="*", metavar="PEERID", help="only these peers may fetch")
    p_send.add_argument("--json", action="store_true", help="print the ticket as JSON")
    p_send.set_defaults(func=_cmd_send)

    p_get = sub.add_parser("get", help="fetch a file from a ticket (resumes automatically)")
    p_get.add_argument("ticket", help="the ticket printed by `i6p send`")
    p_get.add_argument("-o", "--output", metavar="PATH", help="where to write (default: ./HASH)")
    with_identity(p_get)
    p_get.add_argument("--addr", default="[::]:0", help="local address (default [::]:0)")
    p_get.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p_get.add_argument("--group-size", type=_size, default=256 << 10, help="chunk group size")
    p_get.add_argument("--streams", type=int, default=4, help="requests in flight (default 4)")
    p_get.add_argument("--json", action="store_true", help="print the result as JSON")
    p_get.add_argument("--progress", action="store_true", help="progress bar even when piped")
    p_get.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p_get.set_defaults(func=_cmd_get)

    p_demo = sub.add_parser("demo", help="send a generated file between two local nodes")
    p_demo.add_argument("--size", type=_size, default=256 << 20, help="bytes (default 256MiB)")
    p_demo.add_argument("--json", action="store_true", help="print the result as JSON")
    p_demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (I6PError, OSError, ValueError) as e:
        print(f"i6p: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("i6p: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
