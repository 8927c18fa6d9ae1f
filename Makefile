# SlowFastKit: the two commands a newcomer needs are `make demo` and `make test`.
# Both install what is missing (Debian packages, the validation virtualenv) first.

SWIFT       ?= swift
VENV        ?= .venv
PYTHON      := $(VENV)/bin/python
BIN_DEBUG   := .build/debug/slowfast
BIN_RELEASE := .build/release/slowfast
APT_PACKAGES := libprotobuf-c-dev pkg-config

.PHONY: all deps venv build release test test-swift test-proto test-python demo bench clean

all: build

# Debian packages the build needs (libprotobuf-c via pkg-config).
deps:
	@if ! pkg-config --exists libprotobuf-c 2>/dev/null; then \
		echo "installing $(APT_PACKAGES)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi

# The Python tools that validate our output (onnx.checker, onnxruntime).
venv: $(VENV)/.installed
$(VENV)/.installed: Tests/Validation/requirements.txt
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r Tests/Validation/requirements.txt
	@touch $@

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product slowfast

test: deps venv build test-proto test-swift test-python

test-swift:
	$(SWIFT) test

# The committed generated C must equal a fresh protoc-c run, when protoc-c is installed.
test-proto:
	@if command -v protoc-c >/dev/null 2>&1; then Scripts/generate-proto.sh --check; \
	else echo "protoc-c not installed: skipping the generated-code check"; fi

test-python: venv build
	SLOWFAST_BIN=$(CURDIR)/$(BIN_DEBUG) $(PYTHON) -m pytest -q Tests/Validation

demo: deps venv build
	SLOWFAST_BIN=$(CURDIR)/$(BIN_DEBUG) PYTHON=$(CURDIR)/$(PYTHON) Examples/demo.sh

bench: deps venv release
	SLOWFAST_BIN=$(CURDIR)/$(BIN_RELEASE) $(PYTHON) Benchmarks/bench_io.py

clean:
	rm -rf .build Examples/out Benchmarks/out
