"""I6P: peer-to-peer sessions and bulk transfer on QUIC, IPv6 first.

The transport runs in a Rust engine (``i6p._core``); this package is its typed asyncio API.
"""

from __future__ import annotations

import atexit
import logging

from . import _core, erasure, errors
from ._core import DhtRecord, DhtTestnet
from .identity import Identity, PeerId, PublicKey, default_identity_path
from .node import Limits, Node, NodeLoad, Progress, Reachability
from .session import Session, SessionStats, Stream
from .streams import open_connection, start_server
from .transfer import (
    Blob,
    Collection,
    CollectionResult,
    Contact,
    FecStats,
    FetchOptions,
    FetchResult,
    Ticket,
)

__version__: str = _core.__version__
PROTOCOL_VERSION: int = _core.PROTOCOL_VERSION

__all__ = [
    "PROTOCOL_VERSION",
    "Blob",
    "Collection",
    "CollectionResult",
    "Contact",
    "DhtRecord",
    "DhtTestnet",
    "FecStats",
    "FetchOptions",
    "FetchResult",
    "Identity",
    "Limits",
    "Node",
    "NodeLoad",
    "PeerId",
    "Progress",
    "PublicKey",
    "Reachability",
    "Session",
    "SessionStats",
    "Stream",
    "Ticket",
    "__version__",
    "default_identity_path",
    "erasure",
    "errors",
    "open_connection",
    "start_server",
]

# The engine logs under "i6p" (i6p.net.fetch, i6p.net.node, ...); like any library, it leaves
# where records go to the application, and stays silent if the application configures nothing.
logging.getLogger("i6p").addHandler(logging.NullHandler())

# Stop the engine's threads before the interpreter tears down, without holding the GIL.
atexit.register(_core.shutdown)
