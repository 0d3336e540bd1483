"""The lab cleans up after itself: namespaces go even when building fails, agents die with
the lab, stale namespaces of a killed run are removed, and a wedged snippet is cut off at its
timeout with a typed error."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .lab import AgentError, AgentTimeout, Lab
from .netns import sh


def lab_namespaces(prefix: str) -> list[str]:
    return [line.split()[0] for line in sh("ip", "netns", "list").splitlines() if prefix in line]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_agents_die_and_namespaces_go_when_the_lab_closes() -> None:
    async with Lab(2) as lab:
        assert set(lab_namespaces(lab.prefix)) == {
            lab.ns(r) for r in ("inet", "c", "a", "b", "ra", "rb")
        }
        with pytest.raises(RuntimeError, match="already open"), Lab(1):
            pass  # a second lab would clash with this one's namespace names
        pid = await lab.agent("a").run("import os\nos.getpid()")
        assert alive(pid)
    assert not alive(pid)  # killed and reaped
    assert lab_namespaces(lab.prefix) == []


def test_a_build_that_fails_halfway_leaves_no_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Lab, side: str, kind: str) -> None:
        raise RuntimeError("router exploded")

    monkeypatch.setattr(Lab, "_build_side", broken)
    lab = Lab(4)
    with pytest.raises(RuntimeError, match="router exploded"), lab:
        pass
    assert lab_namespaces(lab.prefix) == []


def test_namespaces_of_a_killed_run_are_removed() -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = f"i6p-lab{int(gone.stdout)}-inet"
    leftover = Path(tempfile.gettempdir()) / f"i6p-lab{int(gone.stdout)}-files"
    sh("ip", "netns", "add", stale)
    leftover.mkdir()
    try:
        with Lab(1):
            assert stale not in lab_namespaces("i6p-lab")
            assert not leftover.exists()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)
        shutil.rmtree(leftover, ignore_errors=True)


async def test_a_snippet_past_its_timeout_is_cancelled_and_reported() -> None:
    async with Lab(1) as lab:
        agent = lab.agent("a")
        with pytest.raises(AgentTimeout):
            await agent.run("await asyncio.sleep(30)", timeout=0.5)
        # The agent lives on, with its globals, and says what a failing snippet raised.
        await agent.run("x = 41")
        assert await agent.run("x + 1") == 42
        with pytest.raises(AgentError) as failed:
            await agent.run("i6p.PeerId.parse('nope')")
        assert failed.value.is_a("InvalidPeerId") and failed.value.is_a("ValueError")
        assert not isinstance(failed.value, AgentTimeout)
