"""Reed-Solomon erasure coding through the Python API (i6p.erasure)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from i6p import erasure
from i6p.errors import ErasureError, I6PError


def _blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _lose(shards: list[bytes], lost: set[int]) -> list[bytes | None]:
    return [None if i in lost else s for i, s in enumerate(shards)]


@pytest.mark.parametrize("k,m", [(1, 1), (3, 2), (4, 2), (10, 4)])
def test_round_trips_at_awkward_sizes(k: int, m: int) -> None:
    for size in sorted({0, 1, k - 1, k, k + 1, 2 * k + 1, 97, 1000, 65_537}):
        blob = _blob(size, size)
        shards = erasure.encode(blob, k, m)
        assert len(shards) == k + m
        shard_len = -(-size // k)
        assert all(isinstance(s, bytes) and len(s) == shard_len for s in shards)
        assert b"".join(shards[:k])[:size] == blob
        assert erasure.reconstruct(shards, k, m, size) == blob
        assert erasure.reconstruct(_lose(shards, set(range(m))), k, m, size) == blob


def test_every_pattern_of_m_losses() -> None:
    k, m = 4, 3
    blob = _blob(4 * 37 + 5)
    shards = erasure.encode(blob, k, m)
    for lost in itertools.combinations(range(k + m), m):
        assert erasure.reconstruct(_lose(shards, set(lost)), k, m, len(blob)) == blob


@pytest.mark.parametrize("k,m,size", [(10, 4, (1 << 20) + 12_345), (32, 8, (3 << 20) + 7)])
def test_random_losses_up_to_m(k: int, m: int, size: int) -> None:
    rng = random.Random(k * m)
    blob = _blob(size, 1)
    shards = erasure.encode(blob, k, m)
    for lost_count in range(m + 1):
        lost = set(rng.sample(range(k + m), lost_count))
        assert erasure.reconstruct(_lose(shards, lost), k, m, size) == blob


@st.composite
def _coded_with_losses(draw: st.DrawFn) -> tuple[int, int, bytes, set[int], bool]:
    """A shape, data, and a set of lost shards: up to m (recoverable) or m + 1 (not)."""
    k = draw(st.integers(1, 40))
    m = draw(st.integers(1, 16))
    data = draw(st.binary(min_size=0, max_size=4096))
    too_many = draw(st.booleans())
    count = m + 1 if too_many else draw(st.integers(0, m))
    lost = draw(st.sets(st.integers(0, k + m - 1), min_size=count, max_size=count))
    return k, m, data, lost, too_many


@settings(max_examples=300, deadline=None)
@given(_coded_with_losses())
def test_property_any_m_losses_rebuild_and_m_plus_1_is_an_error(
    case: tuple[int, int, bytes, set[int], bool],
) -> None:
    k, m, data, lost, too_many = case
    shards = _lose(erasure.encode(data, k, m), lost)
    if too_many:
        with pytest.raises(ErasureError, match="too few"):
            erasure.reconstruct(shards, k, m, len(data))
    else:
        assert erasure.reconstruct(shards, k, m, len(data)) == data


def test_any_buffer_is_accepted() -> None:
    blob = _blob(1001)
    expected = erasure.encode(blob, 5, 3)
    assert erasure.encode(bytearray(blob), 5, 3) == expected
    assert erasure.encode(memoryview(blob), 5, 3) == expected
    # A non-contiguous view is copied in order.
    doubled = bytes(b for byte in blob for b in (byte, 0))
    assert erasure.encode(memoryview(doubled)[::2], 5, 3) == expected
    mixed: list[bytes | bytearray | memoryview | None] = [
        bytearray(expected[0]),
        memoryview(expected[1]),
        None,
        *expected[3:7],
        None,
    ]
    assert erasure.reconstruct(mixed, 5, 3, 1001) == blob
    assert erasure.reconstruct(tuple(mixed), 5, 3, 1001) == blob


def test_too_few_shards() -> None:
    shards = erasure.encode(_blob(1000), 4, 2)
    with pytest.raises(ErasureError, match="too few shards: 3 present, 4 needed"):
        erasure.reconstruct(_lose(shards, {0, 2, 5}), 4, 2, 1000)
    with pytest.raises(ErasureError, match="0 present, 4 needed"):
        erasure.reconstruct([None] * 6, 4, 2, 0)


def test_wrong_sizes() -> None:
    shards: list[bytes | None] = list(erasure.encode(_blob(1000), 4, 2))
    shards[3] = shards[3][:-1]  # type: ignore[index]
    with pytest.raises(ErasureError, match="shard 3 has 249 bytes, expected 250"):
        erasure.reconstruct(shards, 4, 2, 1000)
    good = erasure.encode(_blob(1000), 4, 2)
    with pytest.raises(ErasureError, match="wrong shard count: 5, expected 6"):
        erasure.reconstruct(good[:5], 4, 2, 1000)
    with pytest.raises(ErasureError, match="wrong shard count: 7, expected 6"):
        erasure.reconstruct([*good, good[0]], 4, 2, 1000)
    with pytest.raises(ErasureError, match="size 1001 exceeds the stripe's 1000 data bytes"):
        erasure.reconstruct(_lose(good, {1}), 4, 2, 1001)
    # Shards coded with other parameters do not decode as these.
    with pytest.raises(ErasureError):
        erasure.reconstruct(good, 3, 2, 1000)


@pytest.mark.parametrize("k,m", [(0, 1), (1, 0), (200, 57), (256, 1)])
def test_invalid_parameters(k: int, m: int) -> None:
    with pytest.raises(ErasureError, match="invalid erasure parameters") as info:
        erasure.encode(b"abc", k, m)
    assert isinstance(info.value, I6PError) and isinstance(info.value, ValueError)
    with pytest.raises(ErasureError, match="invalid erasure parameters"):
        erasure.reconstruct([b"a"] * max(k + m, 1), k, m, 1)


def test_largest_shape() -> None:
    blob = _blob(10_000)
    shards = erasure.encode(blob, 200, 56)
    lost = set(random.Random(3).sample(range(256), 56))
    assert erasure.reconstruct(_lose(shards, lost), 200, 56, len(blob)) == blob


def test_non_buffers_are_type_errors() -> None:
    with pytest.raises(TypeError):
        erasure.encode("text", 2, 1)  # type: ignore[arg-type]
    shards: list[object] = list(erasure.encode(b"abcd", 2, 1))
    shards[1] = "text"
    with pytest.raises(TypeError):
        erasure.reconstruct(shards, 2, 1, 4)  # type: ignore[arg-type]
