# Thin wrapper over CMake. `make demo` and `make test` are the two commands a
# newcomer types on a fresh Debian 12 machine; both install missing packages
# first.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PYTHON ?= /usr/bin/python3
BUILD_TYPE ?= RelWithDebInfo

.PHONY: all deps build build-asan build-fuzz fuzz test test-unit test-system test-asan test-tsan coverage demo bench bench-cluster format check-format clean

all: build

deps:
	./deploy/install-deps.sh

build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DSHOAL_WERROR=ON >/dev/null
	cmake --build build -j $(JOBS)

build-asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSHOAL_WERROR=ON -DSHOAL_SANITIZE=ON >/dev/null
	cmake --build build-asan -j $(JOBS)

# The libFuzzer targets (clang), in build-fuzz/: tests/fuzz/CMakeLists.txt.
build-fuzz:
	cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
		-DSHOAL_WERROR=ON -DSHOAL_FUZZ=ON >/dev/null
	cmake --build build-fuzz -j $(JOBS) --target shoal_fuzz

# The long fuzzing run (docs/development.md, "Fuzzing"): FUZZ_SECONDS per
# target, keeping the corpus it grows in build-fuzz/corpus/.
FUZZ_SECONDS ?= 600
fuzz: build-fuzz
	FUZZ_CORPUS_DIR=build-fuzz/corpus ./tests/fuzz/run.sh $(FUZZ_SECONDS)

# Every test, in the normal build and in the ASan+UBSan build, and a
# bounded run of every fuzz target.
test: deps build build-asan build-fuzz
	./tests/run-all.sh

test-unit: build
	cd build && ctest --output-on-failure

test-system: build
	$(PYTHON) -m pytest -q tests/system

# ThreadSanitizer: build-tsan/, every unit test and the system tests that
# drive the agent's pool jobs (tests/tsan.sh; not part of `make test`).
test-tsan:
	JOBS=$(JOBS) ./tests/tsan.sh

# Unit tests in a --coverage build (build-cov), then gcov's line coverage of
# the swarm core, the ban table and the partial blob (tests/coverage.sh).
coverage:
	JOBS=$(JOBS) ./tests/coverage.sh

demo: deps build
	./deploy/demo.sh

bench: build
	./bench/pull-bench.sh

# The emulated-cluster benchmark (needs root for network namespaces; falls
# back to loopback without). Pass options with ARGS="--hosts 16 ...".
bench-cluster: build
	./bench/cluster-bench $(ARGS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# What `make test` runs first: fails listing the files clang-format would change.
check-format:
	./tests/check-format.sh

clean:
	rm -rf build build-asan build-cov
