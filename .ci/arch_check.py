"""Architecture gates, run by `make lint` (see docs/ARCHITECTURE.md).

- no Rust source file under rust/ longer than MAX_FILE lines, no function longer than MAX_FN;
- no import cycle between the modules of the `net` crate;
- `core` does no I/O: no std::fs, sockets or clock reads outside its fuzzing and test code.

Function lengths are found by matching braces from each `fn` line, which is enough for
rustfmt-formatted code (strings with unbalanced braces are rare and would only over-count).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FILE = 700
MAX_FN = 80
# Files allowed past the bounds, each with the reason (keep this list short and shrinking).
EXEMPT: dict[str, str] = {}
CORE_FORBIDDEN = re.compile(r"std::fs|\bFile::|Instant::now|UdpSocket|TcpStream|SystemTime::now")
CORE_IO_ALLOWED = {"fuzzing.rs"}

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def rust_files(under: str) -> list[Path]:
    return sorted(p for p in (ROOT / under).rglob("*.rs") if "target" not in p.parts)


def strip_tests(lines: list[str]) -> list[str]:
    """Drops a trailing `#[cfg(test)] mod tests { ... }` block (tests may be long)."""
    for i, line in enumerate(lines):
        if line.strip() == "#[cfg(test)]" and i + 1 < len(lines) and "mod tests" in lines[i + 1]:
            return lines[:i]
    return lines


def long_functions(path: Path) -> list[str]:
    lines = strip_tests(path.read_text().splitlines())
    found = []
    i = 0
    while i < len(lines):
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        depth, start, opened = 0, i, False
        j = i
        while j < len(lines):
            code = lines[j].split("//", 1)[0]
            depth += code.count("{") - code.count("}")
            opened = opened or "{" in code
            if opened and depth <= 0:
                break
            if not opened and code.rstrip().endswith(";"):
                break  # a declaration without a body (trait method)
            j += 1
        length = j - start + 1
        if opened and length > MAX_FN:
            found.append(f"{path.relative_to(ROOT)}:{start + 1} fn {m.group(6)} is {length} lines")
        i = start + 1
    return found


def net_cycles() -> list[str]:
    src = ROOT / "rust/net/src"
    graph: dict[str, set[str]] = {}
    for path in rust_files("rust/net/src"):
        rel = path.relative_to(src).with_suffix("")
        parts = [p for p in rel.parts if p not in ("mod",)]
        if parts == ["lib"]:
            continue
        top = parts[0]
        text = path.read_text()
        deps = set(re.findall(r"crate::(\w+)", text))
        for group in re.findall(r"crate::\{([^}]*)\}", text):
            deps.update(re.findall(r"(?:^|,)\s*(\w+)", group))
        graph.setdefault(top, set()).update(d for d in deps if d != top)
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*stack[stack.index(dep) :], dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def core_io() -> list[str]:
    found = []
    for path in rust_files("rust/core/src"):
        if path.name in CORE_IO_ALLOWED:
            continue
        for n, line in enumerate(strip_tests(path.read_text().splitlines()), 1):
            if CORE_FORBIDDEN.search(line.split("//", 1)[0]):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    return found


def main() -> int:
    problems = []
    for path in rust_files("rust"):
        rel = str(path.relative_to(ROOT))
        if rel in EXEMPT or "/tests/" in rel or rel.startswith("rust/fuzz/"):
            continue
        n = len(path.read_text().splitlines())
        if n > MAX_FILE:
            problems.append(f"{rel} is {n} lines (> {MAX_FILE})")
        problems += long_functions(path)
    problems += [f"import cycle in net: {c}" for c in net_cycles()]
    problems += [f"I/O in core: {c}" for c in core_io()]
    for p in problems:
        print(p)
    print(f"arch_check: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
