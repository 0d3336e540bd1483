# One entry point for every check, used by people and CI alike.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test install lint rust-test py-test impair bench clean

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
	$(PY) -m pip install -q ".[test,dev]"
	touch $@

rust-test:
	cargo test --locked -p i6p-core -p i6p-net -p i6p-impair

# The UDP impairment relay (tests/impair) that tests and benches put between peers.
impair:
	cargo build --release --locked -p i6p-impair

py-test: impair
	$(PY) -m pytest tests

lint: install
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -p i6p-core -p i6p-net -p i6p-py -p i6p-impair -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest i6p._core

# Benchmarks: results saved under .benchmarks/ and compared with the previous saved run.
bench: install impair
	$(PY) -m pytest benches -p no:cacheprovider -s --benchmark-only --benchmark-autosave \
		$$(ls .benchmarks/*/*.json >/dev/null 2>&1 && echo --benchmark-compare)

clean:
	rm -rf $(VENV) target
