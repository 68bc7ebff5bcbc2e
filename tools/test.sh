#!/usr/bin/env bash
# Installs the dependencies, builds, and runs the whole test suite (unit, golden, CLI, op harness).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
bash tools/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
