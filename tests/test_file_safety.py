"""Files planted beside a fetch's destination never turn the fetch against the user's own files.

A download folder may be writable by others: a symbolic link planted at ``DEST.i6p-part``,
``DEST.i6p-state`` or ``DEST.i6p-state.tmp`` must not be followed, written through or
truncated. The fetch refuses, naming the path, and the link's target is left as it was.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from i6p.errors import I6PError, PermissionDenied

from .conftest import NodeFactory


@pytest.mark.parametrize("suffix", [".i6p-part", ".i6p-state", ".i6p-state.tmp"])
async def test_a_planted_symlink_is_refused_and_its_target_untouched(
    make_node: NodeFactory, tmp_path: Path, suffix: str
) -> None:
    src, dest, victim = tmp_path / "src", tmp_path / "dest", tmp_path / "victim"
    src.write_bytes(os.urandom(300_000))
    victim.write_bytes(b"the user's own file")
    planted = tmp_path / f"dest{suffix}"
    planted.symlink_to(victim)
    provider, fetcher = await make_node(), await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    with pytest.raises(PermissionDenied, match="symbolic link") as refused:
        await fetcher.fetch(ticket, dest)
    assert isinstance(refused.value, I6PError) and isinstance(refused.value, PermissionError)
    assert refused.value.filename == str(planted)
    assert victim.read_bytes() == b"the user's own file"
    assert planted.is_symlink() and not dest.exists()
    # Once the link is gone, the same fetch goes through.
    planted.unlink()
    result = await fetcher.fetch(ticket, dest)
    assert dest.read_bytes() == src.read_bytes() and result.size == 300_000
    assert victim.read_bytes() == b"the user's own file"
