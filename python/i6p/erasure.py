"""Reed-Solomon erasure coding: split data into ``k`` data + ``m`` parity shards, any ``k`` of
which rebuild it.

The coding runs in the engine (GF(2^8), so ``k + m`` is at most 256) with the GIL released.
Shards carry no integrity check: drop the ones you cannot verify, and verify what comes back
(a blob's BLAKE3 hash, for instance).

>>> shards = encode(b"hello, world", 4, 2)
>>> shards[0] = shards[5] = None
>>> reconstruct(shards, 4, 2, size=12)
b'hello, world'
"""

from __future__ import annotations

from collections.abc import Sequence

from . import _core
from .errors import ErasureError

__all__ = ["KERNEL_ARCH", "ErasureError", "encode", "reconstruct"]

#: The ``-march`` the Reed-Solomon C kernels were compiled for: ``"haswell"`` (AVX2) in a
#: source build, ``"x86-64-v2"`` (SSSE3) in the release wheel. On a CPU without what it
#: allows, coding raises ``ErasureError`` ("unsupported CPU") instead of crashing.
KERNEL_ARCH: str = _core.RS_KERNEL_ARCH


def encode(data: bytes | bytearray | memoryview, k: int, m: int) -> list[bytes]:
    """Split ``data`` into ``k`` data shards and compute ``m`` parity shards.

    Every shard has ``ceil(len(data) / k)`` bytes (the last data shard is zero-padded); the
    list holds the ``k`` data shards, in order, then the ``m`` parity shards. Keep
    ``len(data)``: :func:`reconstruct` needs it to drop the padding.

    ``data`` may be any buffer-protocol object. Raises :class:`ErasureError` unless
    ``k >= 1``, ``m >= 1`` and ``k + m <= 256``.
    """
    return _core.erasure_encode(data, k, m)


def reconstruct(
    shards: Sequence[bytes | bytearray | memoryview | None], k: int, m: int, size: int
) -> bytes:
    """Rebuild the ``size`` bytes that :func:`encode` split into ``shards``.

    ``shards`` has the ``k + m`` shards in their original order, ``None`` for each one that
    was lost; any ``k`` present shards are enough. Raises :class:`ErasureError` when fewer
    than ``k`` are present, when the list does not have ``k + m`` entries, when the present
    shards differ in length, or when ``size`` is more than the ``k`` data shards hold.
    """
    return _core.erasure_reconstruct(shards, k, m, size)
