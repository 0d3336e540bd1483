#!/usr/bin/env bash
# Installs the wheel from dist/ into a fresh virtualenv with no Rust toolchain on PATH, then
# runs it from outside the source tree: `i6p --version`, `i6p demo --size 32MiB`, and
# .ci/wheel_smoke.py. Prints the wheel's size, install time and `import i6p` time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
wheel=$(ls dist/i6p-*.whl)
[ "$(echo "$wheel" | wc -l)" = 1 ] || { echo "expected one wheel in dist/: $wheel"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# PATH without cargo, rustc or rustup (a user's machine): fail if one is still found.
norust=$(echo "$PATH" | tr ':' '\n' | grep -v -e '\.cargo' -e rustup | paste -sd: -)
if PATH="$norust" command -v cargo >/dev/null || PATH="$norust" command -v rustc >/dev/null; then
  echo "a Rust toolchain is still on PATH: $norust"; exit 1
fi
python3 -m venv "$work/venv"
start=$(date +%s%N)
PATH="$norust" "$work/venv/bin/pip" install -q --no-cache-dir "$wheel"
end=$(date +%s%N)
echo "wheel: $(basename "$wheel"), $(stat -c %s "$wheel") bytes; installed in $(( (end - start) / 1000000 )) ms"
cd "$work"  # never the source tree: `import i6p` must find the installed package
export PATH="$work/venv/bin:$norust"
python -c 'import i6p, pathlib, sys; p = pathlib.Path(i6p.__file__); sys.exit(0 if "site-packages" in str(p) else f"imported from {p}")'
python -X importtime -c 'import i6p' 2> importtime.txt
echo "import i6p: $(tail -1 importtime.txt | awk -F'|' '{print $2}' | tr -d ' ') us (cumulative)"
i6p --version
I6P_HOME="$work/home" i6p demo --size 32MiB
python "$root/.ci/wheel_smoke.py"
# A CPU without AVX2 (qemu-user's Nehalem: SSSE3, SSE4.2): the wheel's kernels must run there.
python -c 'import i6p.erasure as e, sys; sys.exit(0 if e.KERNEL_ARCH == "x86-64-v2" else e.KERNEL_ARCH)'
qemu-x86_64 -cpu Nehalem "$(command -v python)" "$root/.ci/wheel_smoke.py" erasure
