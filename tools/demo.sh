#!/usr/bin/env bash
# Installs the dependencies, builds, and runs ferry's main job on the bundled default: an offline
# generation run over tools/data/prompts.txt with the bundled tiny Mixtral-family model
# (tools/data/tiny_moe: 5.9 M parameters, 8 experts top-2, its own SentencePiece vocabulary, trained by
# tools/train_tiny_moe.py on Python's documentation), printing tokens/s and the first results. Results go
# to results.jsonl.
#
# The job runs through the planner and the pipelined executor: --target sim:l4 (an emulated NVIDIA L4:
# its memory capacity and PCIe links, computed on this machine's CPU) with --policy auto, so it also
# prints the run's metrics (busy time per resource, overlap efficiency, bytes per link, expert cache
# hits) beside the planner's predicted tokens/s for a real L4. TARGET=cpu (the fast CPU engine) or
# TARGET=reference (the fp32 definition) run it on the other targets; POLICY=FILE uses a policy file
# written by `ferry plan --json`. It samples at TEMPERATURE (0.7) and TOP_P (0.9), seeded per prompt, so
# every run prints the same texts; TEMPERATURE=0 is greedy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
bash tools/build.sh
"${BUILD_DIR:-build}/ferry" run --target "${TARGET:-sim:l4}" --policy "${POLICY:-auto}" --out "${OUT:-results.jsonl}" \
  --temperature "${TEMPERATURE:-0.7}" --top-p "${TOP_P:-0.9}" --show 3 "$@"
