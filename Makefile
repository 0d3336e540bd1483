# One entry point for every check, used by people and CI alike.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test install lint rust-test py-test impair bench bench-report fuzz clean wheel wheel-check

# The README's test command: build and install the extension, run the engine's Rust tests,
# then the pytest suites over real sockets.
test: install rust-test py-test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Reinstall only when a source of the package changed.
STAMP := $(VENV)/.i6p-installed
SOURCES := pyproject.toml Cargo.toml Cargo.lock $(shell find rust python -type f -not -path '*/__pycache__/*' 2>/dev/null)

install: $(STAMP)

$(STAMP): $(PY) $(SOURCES)
	$(PY) -m pip install -q ".[test,dev,plot]"
	touch $@

# Release: an abi3 wheel (CPython >= 3.11) for x86-64 Linux, manylinux_2_28 (linked by zig
# against glibc 2.28's symbols), and an sdist, into dist/; `auditwheel show` reports its tag.
# The Reed-Solomon C kernels are compiled for WHEEL_ARCH (x86-64-v2: SSSE3, no AVX2), so the
# wheel runs on any x86-64 CPU since about 2009; a source build keeps the crate's haswell
# (AVX2) kernels. The build keeps its own cache (target/wheel): zig's flags differ. Symbols
# are stripped (the release profile keeps line tables for profiling: 4x the size).
WHEEL_ARCH ?= x86-64-v2
WHEEL_TOOLS := $(VENV)/.wheel-tools

$(WHEEL_TOOLS): $(PY)
	$(PY) -m pip install -q "maturin==1.16.0" "ziglang==0.13.0" "auditwheel==6.8.2"
	touch $@

wheel: $(WHEEL_TOOLS)
	rm -rf dist
	# The venv first on PATH: maturin finds zig as `python3 -m ziglang`.
	PATH="$(abspath $(VENV))/bin:$$PATH" RUST_REED_SOLOMON_ERASURE_ARCH=$(WHEEL_ARCH) \
		$(VENV)/bin/maturin build --release --locked \
		--zig --compatibility manylinux_2_28 --target x86_64-unknown-linux-gnu \
		--target-dir target/wheel --strip --out dist
	$(VENV)/bin/maturin sdist --out dist
	$(VENV)/bin/auditwheel show dist/i6p-*.whl

# The wheel installed into a fresh virtualenv without Rust on PATH, run from outside the tree.
wheel-check: wheel
	bash .ci/wheel_check.sh

rust-test:
	cargo test --locked -p i6p-core -p i6p-net -p i6p-py -p i6p-impair

# The UDP impairment relay (tests/impair) that tests and benches put between peers.
impair:
	cargo build --release --locked -p i6p-impair

py-test: impair
	$(PY) -m pytest tests

lint: install
	$(PY) .ci/arch_check.py
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -p i6p-core -p i6p-net -p i6p-py -p i6p-impair -- -D warnings
	$(VENV)/bin/ruff check python tests benches examples
	$(VENV)/bin/ruff format --check python tests benches examples
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest i6p._core

# Benchmarks: results saved under .benchmarks/ and compared with the previous saved run.
bench: install impair
	$(PY) -m pytest benches -p no:cacheprovider -s --benchmark-only --benchmark-autosave \
		$$(ls .benchmarks/*/*.json >/dev/null 2>&1 && echo --benchmark-compare)

# The benchmark report: bench-report/index.html (plots of every run saved under .benchmarks/,
# inline SVG, opens offline) and bench-report/report.json (the numbers plotted).
bench-report: install
	$(VENV)/bin/i6p report bench-report --history .benchmarks

# Coverage-guided fuzzing of every decoder of peer or file input (rust/fuzz, bodies in
# i6p_core::fuzzing and i6p_net::fuzzing): each target for FUZZ_SECONDS, one at a time (a fuzzer
# takes a whole core), niced. Run on purpose, not in CI; CI runs the committed seeds and past
# crashes as plain tests (rust/{core,net}/tests/fuzz_corpus.rs). Needs `cargo install cargo-fuzz`.
# `provider` drives a live provider on [::1] (milliseconds per input, a few hundred per second).
# Stable Rust is enough with `--sanitizer none`: the coverage instrumentation cargo-fuzz asks
# for (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*) is made of stable codegen
# options; only its default AddressSanitizer needs nightly's -Zsanitizer. The engine forbids
# unsafe code, so a bug shows as a panic, which libFuzzer catches without a sanitizer. Debug
# assertions and overflow checks stay on (cargo-fuzz's default without -O).
# A crash leaves its input in rust/fuzz/artifacts/<target>/: fix the decoder and copy the input
# to rust/fuzz/regressions/<target>/. Each target's -max_len is about its largest valid input.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= frame:8192 hello:4096 control:2048 transfer:17000 group:8192 fec:17100 \
	shard:4096 ticket:5000 state:4096 collection:65536 journal:8192 provider:2048 dialback:512
FUZZ := nice -n 10 cargo fuzz
FUZZ_FLAGS := --fuzz-dir rust/fuzz --sanitizer none

fuzz:
	$(FUZZ) build $(FUZZ_FLAGS)
	@for spec in $(FUZZ_TARGETS); do \
		t=$${spec%%:*}; len=$${spec#*:}; \
		mkdir -p rust/fuzz/corpus/$$t rust/fuzz/regressions/$$t; \
		echo "== fuzz $$t for $(FUZZ_SECONDS) s (-max_len=$$len)"; \
		$(FUZZ) run $(FUZZ_FLAGS) $$t rust/fuzz/corpus/$$t rust/fuzz/corpus-seed/$$t \
			rust/fuzz/regressions/$$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=$$len \
			-timeout=10 -print_final_stats=1 || exit 1; \
	done

clean:
	rm -rf $(VENV) target rust/fuzz/target
