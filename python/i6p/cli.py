"""The ``i6p`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import I6PError
from .identity import Identity, default_identity_path

__all__ = ["main"]


def _identity(path: str | None) -> Identity:
    return Identity.load_or_generate(Path(path) if path else default_identity_path())


def _cmd_id(args: argparse.Namespace) -> int:
    print(_identity(args.identity).peer_id)
    return 0


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 256MiB)") from None


def _cmd_demo(args: argparse.Namespace) -> int:
    import asyncio

    from .demo import run_demo

    result = asyncio.run(run_demo(args.size, args.streams, show=not args.json))
    if args.json:
        import json

        print(
            json.dumps(
                {
                    "bytes": result.bytes,
                    "seconds": result.seconds,
                    "rate_bytes_per_s": result.rate,
                    "streams": result.streams,
                    "verified": result.verified,
                }
            )
        )
    else:
        state = "verified" if result.verified else "MISMATCH"
        print(
            f"\n{result.bytes / 2**20:.0f} MiB over {result.streams} streams in "
            f"{result.seconds:.2f} s: {result.rate / 2**20:.0f} MiB/s, {state}"
        )
    return 0 if result.verified else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="i6p", description="Peer-to-peer sessions and transfers on QUIC."
    )
    parser.add_argument("--version", action="version", version=f"i6p {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_id = sub.add_parser("id", help="print this machine's PeerId (creating the identity once)")
    p_id.add_argument(
        "--identity",
        metavar="PATH",
        help=f"identity key file (default: {default_identity_path()})",
    )
    p_id.set_defaults(func=_cmd_id)
    p_demo = sub.add_parser("demo", help="two nodes on this machine stream data over ::1")
    p_demo.add_argument("--size", type=_size, default=256 << 20, help="bytes (default 256MiB)")
    p_demo.add_argument("--streams", type=int, default=4, help="parallel streams (default 4)")
    p_demo.add_argument("--json", action="store_true", help="print the result as JSON")
    p_demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (I6PError, OSError) as e:
        print(f"i6p: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
