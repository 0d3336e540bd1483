# Type stubs for i6p._core.testing: test hooks and engine-only benchmarks, not public API.
import os
from collections.abc import Awaitable

from . import Identity, Limits, Node, PeerId, Session

__all__ = [
    "FLIPPED_DATA",
    "FORGED_SHARDS",
    "JUNK_ONLY",
    "SLOW",
    "WRONG_INDEX",
    "WRONG_PROOF",
    "WRONG_SIZE",
    "bench_engine_stream",
    "bench_erasure",
    "bench_erasure_stripes",
    "bench_hash",
    "bench_raw_quinn",
    "bench_session_stream",
    "bind_relay_testing",
    "connect_raw",
    "log_records_dropped",
    "send_datagram",
    "set_provider_faults",
    "set_stream_bell",
    "set_stream_fast_path",
    "signed_hello",
]

WRONG_PROOF: int
WRONG_INDEX: int
WRONG_SIZE: int
FLIPPED_DATA: int
SLOW: int
FORGED_SHARDS: int
JUNK_ONLY: int

def set_provider_faults(node: Node, faults: int) -> None: ...
def connect_raw(node: Node, peer_id: PeerId, addr: str) -> Awaitable[Session]: ...
def bind_relay_testing(
    identity: Identity,
    addr: str,
    *,
    relay: bool = True,
    flip_every: int | None = None,
    misroute_to: PeerId | None = None,
    stall_offers: bool = False,
    limits: Limits | None = None,
) -> Awaitable[Node]: ...
def signed_hello(session: Session, capabilities: list[tuple[str, str]] | None = None) -> bytes: ...
def send_datagram(session: Session, data: bytes) -> None: ...
def log_records_dropped() -> int: ...
def set_stream_bell(on: bool) -> None: ...
def set_stream_fast_path(on: bool) -> None: ...
def bench_engine_stream(
    total: int,
    block: int = ...,
    congestion: str = "cubic",
    window: str | None = None,
    max_udp_payload: int | None = None,
) -> Awaitable[float]: ...
def bench_raw_quinn(
    total: int,
    block: int = ...,
    congestion: str = "cubic",
    window: str | None = None,
    max_udp_payload: int | None = None,
) -> Awaitable[float]: ...
def bench_session_stream(
    sender: Session, receiver: Session, total: int, streams: int = 1, sample: float = 0.05
) -> Awaitable[list[tuple[float, int]]]: ...
def bench_hash(
    size: int, rounds: int, tmpdir: str | os.PathLike[str] | None = None
) -> dict[str, list[float]]: ...
def bench_erasure(k: int, m: int, size: int, rounds: int) -> dict[str, list[float]]: ...
def bench_erasure_stripes(
    k: int, m: int, shard_len: int, size: int, rounds: int
) -> dict[str, list[float]]: ...
