#!/usr/bin/env bash
# Configures and builds ferry. BUILD_DIR (default build), FERRY_CUDA (AUTO|ON|OFF, default AUTO),
# BUILD_TYPE (default Release) and extra CMake arguments in CMAKE_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" \
  -DFERRY_CUDA="${FERRY_CUDA:-AUTO}" ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"
