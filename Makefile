# SlowFastKit: the two commands a newcomer needs are `make demo` and `make test`.
# Both install what is missing (Debian packages, the validation virtualenv) first.

SHELL       := /bin/bash
SWIFT       ?= swift
VENV        ?= .venv
PYTHON      := $(VENV)/bin/python
BIN_DEBUG   := .build/debug/slowfast
BIN_RELEASE := .build/release/slowfast
APT_PACKAGES := libprotobuf-c-dev pkg-config

.PHONY: all deps venv build release install test test-quick test-swift test-proto test-python test-fuzz-replay fuzz demo bench clean

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

# `make install PREFIX=~/.local` puts a self-contained slowfast in PREFIX/bin: the adapters and
# schemas are compiled in, and a release build links the Swift runtime statically.
PREFIX ?= /usr/local
CONFIG ?= release
install: deps
	$(SWIFT) build -c $(CONFIG) --product slowfast $(if $(filter release,$(CONFIG)),--static-swift-stdlib)
	install -d "$(DESTDIR)$(PREFIX)/bin"
	install -m 755 .build/$(CONFIG)/slowfast "$(DESTDIR)$(PREFIX)/bin/slowfast"

test: deps venv build release test-proto test-swift test-python test-fuzz-replay
	@Scripts/test-counts.sh

# Each suite's own summary is kept under .build/test-logs for the counts `make test` prints last.
TEST_LOGS := .build/test-logs
test-swift:
	@mkdir -p $(TEST_LOGS)
	set -o pipefail; $(SWIFT) test 2>&1 | tee $(TEST_LOGS)/swift.txt

# For a contributor between changes: the Swift tests and the Python tests of what the change
# touches (Scripts/quick-tests.py says what and why; QUICK_BASE=REV to compare with another
# revision). `make test` still runs everything, and CI runs `make test`.
test-quick: deps venv build test-swift
	SLOWFAST_BIN=$(CURDIR)/$(BIN_DEBUG) PYTHON=$(CURDIR)/$(PYTHON) TEST_JOBS=$(TEST_JOBS) $(PYTHON) Scripts/quick-tests.py

# The committed generated C must equal a fresh protoc-c run, when protoc-c is installed.
test-proto:
	@if command -v protoc-c >/dev/null 2>&1; then Scripts/generate-proto.sh --check; \
	else echo "protoc-c not installed: skipping the generated-code check"; fi

# The validation suite over every core (pytest-xdist workers; TEST_JOBS=1 for one worker),
# run on the release build, the binary `make install` gives users (four times faster than the
# debug build, which only the tests of debug-only hooks run: SLOWFAST_DEBUG_BIN).
TEST_JOBS ?= auto
test-python: venv build release
	@mkdir -p $(TEST_LOGS)
	set -o pipefail; SLOWFAST_BIN=$(CURDIR)/$(BIN_RELEASE) SLOWFAST_DEBUG_BIN=$(CURDIR)/$(BIN_DEBUG) \
		$(PYTHON) -m pytest -q -n $(TEST_JOBS) --dist loadgroup Tests/Validation 2>&1 | tee $(TEST_LOGS)/python.txt

# Every input of every fuzz corpus (crafted hostile models and what fuzzing kept; safetensors
# files, indexes, weight maps, layouts, genai configs and checkpoints to import) run through
# its target under AddressSanitizer (leak checking on): no crash, no trap, no memory error.
# The replay binary is the fuzz target built without libFuzzer, with ASan, in its own scratch
# folder so the plain build is untouched.
ASAN_BIN := .build-asan/debug/slowfast-fuzz
# Targets replayed at once (each is one process); every core by default.
REPLAY_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# The longest replays first (import ~50 s, model ~45 s, weight-map ~25 s, the rest seconds), so none ends alone.
FUZZ_TARGETS := import model weight-map layout safetensors-index safetensors genai-config
fuzz-corpus = $(if $(filter model,$(1)),Tests/Fuzz/corpus,Tests/Fuzz/$(1))
test-fuzz-replay: deps
	$(SWIFT) build --scratch-path .build-asan --product slowfast-fuzz \
		-Xswiftc -sanitize=address -Xcc -fsanitize=address
	@mkdir -p $(TEST_LOGS)
	@printf '%s\n' $(FUZZ_TARGETS) | xargs -P $(REPLAY_JOBS) -I{} sh -c \
		'case {} in model) corpus=Tests/Fuzz/corpus;; *) corpus=Tests/Fuzz/{};; esac; \
		 ASAN_OPTIONS=detect_leaks=1 SLOWFAST_FUZZ_TARGET={} $(ASAN_BIN) $$corpus > $(TEST_LOGS)/replay-{}.txt 2>&1; \
		 status=$$?; cat $(TEST_LOGS)/replay-{}.txt; \
		 [ $$status = 0 ] || { echo "replay of {} ($$corpus) failed: SLOWFAST_FUZZ_TARGET={} $(ASAN_BIN) $$corpus"; exit 255; }'

# libFuzzer with AddressSanitizer over one target (FUZZ_TARGET, one of FUZZ_TARGETS; `model`
# is reading and the whole rewrite path), seeded with its corpus (and, for `model`, one
# fixture); new inputs go to Tests/Fuzz/found/<target> (copy the useful ones into the corpus),
# crashes to Tests/Fuzz/crashes/<target>-*. FUZZ_SECONDS=3600 for an hour.
# Every module is built with ASan and libFuzzer's coverage (inline 8-bit counters, PC table,
# comparisons); libFuzzer comes without its main (slowfast-fuzz's main.swift calls its
# driver), because -sanitize=fuzzer would also give the build tool embed-files a second main.
FUZZ_TARGET  ?= model
FUZZ_SECONDS ?= 600
# A unit past this many seconds is reported as a hang. The seed fixture takes about 5 s in the
# instrumented build alone, and over 30 s on a busy 2-core machine, so the bound is generous.
FUZZ_TIMEOUT ?= 120
FUZZ_BIN     := .build-fuzz/debug/slowfast-fuzz
FUZZ_RUNTIME := $(shell dirname $$(dirname $$(readlink -f $$(command -v $(SWIFT)))))/lib/swift/clang/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a
fuzz: deps
	$(SWIFT) build --scratch-path .build-fuzz --product slowfast-fuzz -Xswiftc -DFUZZING \
		-Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp \
		-Xcc -fsanitize=address -Xcc -fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp \
		-Xlinker $(FUZZ_RUNTIME) -Xlinker -lstdc++
	mkdir -p Tests/Fuzz/found/$(FUZZ_TARGET) Tests/Fuzz/crashes .build-fuzz/seeds/$(FUZZ_TARGET)
	$(if $(filter model,$(FUZZ_TARGET)),cp Tests/Fixtures/qwen2-torchscript/model.onnx .build-fuzz/seeds/model/qwen2-torchscript.onnx)
	SLOWFAST_FUZZ_TARGET=$(FUZZ_TARGET) $(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -timeout=$(FUZZ_TIMEOUT) \
		-max_len=1500000 -artifact_prefix=Tests/Fuzz/crashes/$(FUZZ_TARGET)- \
		Tests/Fuzz/found/$(FUZZ_TARGET) $(call fuzz-corpus,$(FUZZ_TARGET)) .build-fuzz/seeds/$(FUZZ_TARGET)

demo: deps venv build
	SLOWFAST_BIN=$(CURDIR)/$(BIN_DEBUG) PYTHON=$(CURDIR)/$(PYTHON) Examples/demo.sh

# The benchmark models: the 0.5B dynamo export and the genai export (bench_runtime.py) need
# torch (fixture tools only: the CPU wheel kept in /opt/wheels); the 7B- and 70B-shaped
# exports with sparse weights are grown from the committed fixtures in seconds, without torch.
# All are made once and kept under Benchmarks/out (git ignores it).
FIXTURE_VENV := .venv-fixtures
BENCH_MODEL  := Benchmarks/out/qwen2-0.5b
GENAI_MODEL  := Benchmarks/out/qwen2-0.5b-genai
GENAI_INT4   := Benchmarks/out/qwen2-0.5b-genai-int4
LARGE_MODELS := Benchmarks/out/qwen2-7b/model.onnx Benchmarks/out/llama-70b/model.onnx
# Extra arguments for bench.py, e.g. BENCH_ARGS="--runtime-output saved.txt" to fold in a
# saved bench_runtime.py output instead of running it (7 minutes), or "--only io,large".
BENCH_ARGS ?=
$(FIXTURE_VENV)/.installed: Scripts/requirements-fixtures.txt
	@test -x $(FIXTURE_VENV)/bin/python || python3 -m venv $(FIXTURE_VENV)
	$(FIXTURE_VENV)/bin/pip install -q --disable-pip-version-check /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
	$(FIXTURE_VENV)/bin/pip install -q --disable-pip-version-check -r Scripts/requirements-fixtures.txt
	@touch $@

$(BENCH_MODEL)/model.onnx: | $(FIXTURE_VENV)/.installed
	$(FIXTURE_VENV)/bin/python Scripts/make-bench-model.py $(BENCH_MODEL)

$(GENAI_MODEL)/model.onnx: | $(FIXTURE_VENV)/.installed
	$(FIXTURE_VENV)/bin/python Scripts/make-bench-model.py --genai $(GENAI_MODEL)

$(GENAI_INT4)/model.onnx: | $(FIXTURE_VENV)/.installed
	$(FIXTURE_VENV)/bin/python Scripts/make-bench-model.py --genai --int4 $(GENAI_INT4)

Benchmarks/out/%/model.onnx: Scripts/make-large-model.py | venv
	$(PYTHON) Scripts/make-large-model.py $* $(@D)

$(VENV)/.bench-installed: Benchmarks/requirements.txt $(VENV)/.installed
	$(PYTHON) -m pip install -q --disable-pip-version-check -r Benchmarks/requirements.txt
	@touch $@

# One command, one table: every benchmark beside its peers, written to Benchmarks/RESULTS.md
# (about 20 minutes, 7 of them bench_runtime.py).
bench: deps venv $(VENV)/.bench-installed release $(BENCH_MODEL)/model.onnx $(GENAI_MODEL)/model.onnx $(GENAI_INT4)/model.onnx $(LARGE_MODELS)
	@command -v /usr/bin/time >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get install -y -qq time; }
	SLOWFAST_BIN=$(CURDIR)/$(BIN_RELEASE) $(PYTHON) Benchmarks/bench.py $(BENCH_MODEL) $(BENCH_ARGS)

clean:
	rm -rf .build .build-fuzz .build-asan Examples/out Benchmarks/out
