#!/usr/bin/env bash
# Builds ferry without CUDA under AddressSanitizer + UndefinedBehaviorSanitizer (float-cast-overflow
# included, see cmake/FerrySanitizers.cmake) and runs the unit, golden and CLI tests and the bad-input
# matrix with every sanitizer report fatal; prints a summary (record it in docs/FUZZING.md).
#
#   bash tools/sanitize.sh                 # BUILD_DIR=build-asan, JOBS=$(nproc)
#   BUILD_DIR=/tmp/asan JOBS=2 bash tools/sanitize.sh
#
# The op harness (ctest label ops: minutes of SIMD kernels) is left out; run it by hand with
# `ctest --test-dir build-asan -L ops` when a change touches cpu/.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-asan}
JOBS=${JOBS:-$(nproc)}
LOG_DIR="$BUILD_DIR/sanitize-logs"
start=$(date +%s)

# Every report stops the process with a non-zero exit (halt_on_error), so a test that trips one fails.
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=0:detect_leaks=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

step() { echo "== $*"; }
elapsed() { echo $(( $(date +%s) - start )); }

step "configure $BUILD_DIR (ASan + UBSan, no CUDA, RelWithDebInfo)"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_CUDA=OFF \
  -DFERRY_ASAN=ON -DFERRY_UBSAN=ON ${CMAKE_ARGS:-} >/dev/null || { echo "sanitize: configure failed"; exit 2; }
step "build ferry, ferry_tests, ferry_bad_inputs (-j $JOBS)"
build_start=$(date +%s)
cmake --build "$BUILD_DIR" -j "$JOBS" --target ferry ferry_tests ferry_bad_inputs ||
  { echo "sanitize: build failed"; exit 2; }
build_s=$(( $(date +%s) - build_start ))
mkdir -p "$LOG_DIR"

step "ctest: unit, golden and cli tests (the matrix runs next, on its own)"
test_start=$(date +%s)
ctest --test-dir "$BUILD_DIR" -L 'unit|golden|cli' -E '^bad_inputs$' -j "$JOBS" --output-on-failure \
  >"$LOG_DIR/ctest.log" 2>&1
ctest_rc=$?
ctest_s=$(( $(date +%s) - test_start ))
grep -E "tests passed|tests failed|\*\*\*Failed|\*\*\*Exception|\*\*\*Timeout|Not Run" "$LOG_DIR/ctest.log" | tail -40
ctest_line=$(grep -E "tests passed, .* tests failed out of" "$LOG_DIR/ctest.log" | tail -1)
sanitizer_reports=$(grep -cE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$LOG_DIR/ctest.log")

step "bad-input matrix (tests/cli/bad_inputs.tsv)"
matrix_start=$(date +%s)
"$BUILD_DIR/tests/ferry_bad_inputs" --ferry "$BUILD_DIR/ferry" --root . --timeout 600 \
  >"$LOG_DIR/bad_inputs.log" 2>&1
matrix_rc=$?
matrix_s=$(( $(date +%s) - matrix_start ))
grep -vE "^PASS " "$LOG_DIR/bad_inputs.log"
matrix_line=$(grep -E "^[0-9]+ passed, [0-9]+ failed" "$LOG_DIR/bad_inputs.log" | tail -1)

total_s=$(elapsed)
echo
echo "== sanitize.sh summary: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(uname -m)"
echo "   compilers: $(c++ --version | head -1); ASAN_OPTIONS=$ASAN_OPTIONS; UBSAN_OPTIONS=$UBSAN_OPTIONS"
echo "   ctest (unit|golden|cli): ${ctest_line:-no result} [$ctest_s s]"
echo "   bad-input matrix:        ${matrix_line:-no result} [$matrix_s s]"
echo "   sanitizer reports in the ctest log: $sanitizer_reports"
echo "   build $build_s s, total $total_s s; logs in $LOG_DIR"
if [ "$ctest_rc" -ne 0 ] || [ "$matrix_rc" -ne 0 ]; then
  echo "sanitize: FAILED"
  exit 1
fi
echo "sanitize: OK"
