"""Reed-Solomon on a CPU without what its C kernels were compiled for (issue 19): the crate
compiles them for one -march with no run-time dispatch, so the engine checks the CPU first
and raises a typed error instead of dying of SIGILL. The old CPU is emulated by qemu-user
(`qemu-x86_64 -cpu Nehalem`: SSSE3 and SSE4.2, no AVX), which .ci/run installs."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from i6p import erasure

QEMU = shutil.which("qemu-x86_64")
CODE = """
import sys
from i6p import erasure
data = bytes(range(256)) * 64
shards = erasure.encode(data, 8, 2)
shards[1] = shards[8] = None
assert erasure.reconstruct(shards, 8, 2, size=len(data)) == data
print("coded on", erasure.KERNEL_ARCH)
"""


def on_nehalem(code: str) -> subprocess.CompletedProcess[str]:
    assert QEMU, "qemu-x86_64 is missing (.ci/run installs qemu-user)"
    return subprocess.run(
        [QEMU, "-cpu", "Nehalem", sys.executable, "-c", code],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip


@pytest.mark.skipif(sys.platform != "linux", reason="qemu-user emulates Linux x86-64")
def test_coding_on_a_cpu_without_avx2_is_a_typed_error_or_works() -> None:
    out = on_nehalem(CODE)
    if erasure.KERNEL_ARCH == "haswell":  # a source build: the kernels use AVX2
        assert out.returncode == 1, (out.returncode, out.stderr[-2000:])  # not -4 (SIGILL)
        assert "ErasureError" in out.stderr and "unsupported CPU" in out.stderr, out.stderr
        assert "avx2" in out.stderr, out.stderr
    else:  # built for x86-64-v2 or the baseline: Nehalem has all they use
        assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
        assert out.stdout.strip() == f"coded on {erasure.KERNEL_ARCH}"


def test_the_same_code_runs_here() -> None:
    """The check above is not blind: on this CPU the same code codes."""
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
