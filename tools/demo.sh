#!/usr/bin/env bash
# Installs the dependencies, builds, and runs ferry's main job on the bundled default: an offline
# generation run over tools/data/prompts.txt with the bundled tiny Mixtral-family model
# (real Mixtral tokenizer, random weights), printing tokens/s. Results go to results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
bash tools/build.sh
"${BUILD_DIR:-build}/ferry" run --out "${OUT:-results.jsonl}" "$@"
