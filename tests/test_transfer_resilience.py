"""Transfers under hostile conditions: a killed receiver, a full disk, a 2 GiB file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from i6p import Identity

from .abuse import Provider
from .conftest import NodeFactory
from .test_transfer import b3_file, write_random

STATE_HEADER = 8 + 32 + 8 + 1  # magic, root, size, group_log (docs/PROTOCOL.md)


def durable_bytes(state_file: Path, size: int) -> int:
    """Bytes the state file records as verified on disk (0 if it is absent or mid-write)."""
    try:
        raw = state_file.read_bytes()
    except FileNotFoundError:
        return 0
    if len(raw) < STATE_HEADER + 8 or raw[:8] != b"I6PSTAT1":
        return 0
    group = 1 << raw[48]
    bits = raw[STATE_HEADER:-8]
    done = 0
    for i in range(-(-size // group)):
        if bits[i // 8] >> (i % 8) & 1:
            done += min(group, size - i * group)
    return done


@pytest.mark.parametrize("restart", [False, True], ids=["same-provider", "provider-new-port"])
async def test_sigkill_at_half_then_resume(
    make_node: NodeFactory, tmp_path: Path, restart: bool
) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 256 << 20
    expected = write_random(src, size)
    identity = Identity.generate()
    provider = await make_node(identity)
    ticket = str(provider.ticket(await provider.add_path(src)))
    home = {**os.environ, "I6P_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "i6p.cli", "get", "-o", str(dest), "--json"]
    slow = ["--group-size", "16KiB", "--streams", "1"]
    proc = await asyncio.create_subprocess_exec(*cmd, ticket, *slow, env=home)
    state = tmp_path / "dest.i6p-state"
    at_kill = 0
    for _ in range(6000):
        at_kill = durable_bytes(state, size)
        if at_kill >= size // 2 or proc.returncode is not None:
            break
        await asyncio.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert size // 2 <= at_kill < size and not dest.exists()
    if restart:  # the provider goes away and comes back elsewhere, with a new ticket
        await provider.close()
        provider = await make_node(identity)
        ticket = str(provider.ticket(await provider.add_path(src)))
    again = await asyncio.create_subprocess_exec(
        *cmd, ticket, env=home, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await again.communicate()
    assert again.returncode == 0
    result = json.loads(out)
    assert set(result) >= {"hash", "size", "bytes_fetched", "bytes_reused", "duration_s"}
    assert result["hash"] == expected == b3_file(dest)
    assert result["bytes_reused"] >= at_kill
    assert result["bytes_fetched"] <= size // 2
    assert result["bytes_fetched"] + result["bytes_reused"] == size


FULL_DISK = textwrap.dedent(
    """
    import asyncio, json, os, subprocess, sys
    from i6p import Identity, Node
    from i6p.errors import DiskFull

    src, mnt = sys.argv[1], sys.argv[2]
    async def main():
        provider = await Node.bind(Identity.generate())
        fetcher = await Node.bind(Identity.generate())
        ticket = provider.ticket(await provider.add_path(src))
        dest = os.path.join(mnt, "dest")
        out = {}
        try:
            await fetcher.fetch(ticket, dest)
            out["first"] = "completed"
        except DiskFull as e:
            out["first"] = "DiskFull"
            out["message"] = str(e)
        out["state_left"] = os.path.exists(dest + ".i6p-state")
        out["dest_exists"] = os.path.exists(dest)
        subprocess.run(["mount", "-o", "remount,size=64m", mnt], check=True)
        result = await fetcher.fetch(ticket, dest)
        out.update(hash=result.hash, reused=result.bytes_reused, fetched=result.bytes_fetched)
        await provider.close(); await fetcher.close()
        print(json.dumps(out))
    asyncio.run(main())
    """
)


def test_full_disk_is_a_clear_error_and_resumable(tmp_path: Path) -> None:
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    mnt.mkdir()
    size = 24 << 20
    expected = write_random(src, size)
    # A private mount namespace with a 8 MiB tmpfs: the host's mounts are untouched.
    script = (
        f"mount -t tmpfs -o size=8m i6p-test {mnt} && {sys.executable} -c '{FULL_DISK}' {src} {mnt}"
    )
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["first"] == "DiskFull", result
    assert "disk full" in result["message"]
    assert result["state_left"] and not result["dest_exists"]
    assert result["hash"] == expected
    assert result["reused"] > 0 and result["reused"] + result["fetched"] == size


RSS_FETCH = textwrap.dedent(
    """
    import asyncio, json, sys
    from i6p import Identity, Node

    def peak_rss():
        # VmHWM, not getrusage's ru_maxrss: on Linux a process's ru_maxrss starts from the
        # peak of the process it was forked from (the pytest process here), kept across exec.
        with open("/proc/self/status") as status:
            line = next(l for l in status if l.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024

    async def main():
        node = await Node.bind(Identity.generate())
        result = await node.fetch(sys.argv[1], sys.argv[2])
        peak = peak_rss()
        print(json.dumps({"hash": result.hash, "peak_rss": peak}))
        await node.close()
    asyncio.run(main())
    """
)


async def test_2_gib_fetch_keeps_receiver_memory_bounded(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 2 << 30
    with src.open("wb") as f:  # sparse: fast to make, and still 2 GiB to hash and send
        f.truncate(size)
        f.seek(size // 2)
        f.write(os.urandom(1 << 20))
    # The provider runs in a fresh process too: the receiver's peak depends on how fast it is
    # sent to.
    async with Provider(src) as provider:
        ticket = provider.loopback_ticket()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            RSS_FETCH,
            str(ticket),
            str(dest),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0
    result = json.loads(out)
    assert result["hash"] == ticket.hash
    # Bounded, far below the 2 GiB moved: the receiver peaks at 60-75 MiB, alone, with the
    # disk busy or with every core taken (2 cores). The quinn windows (64 MiB at most) and the
    # disk queue are the bounds that matter.
    assert result["peak_rss"] < 192 << 20, result["peak_rss"] >> 20
    assert dest.stat().st_size == size
