#!/usr/bin/env bash
# Bytes of experts moved per generated token: the pipelined executor copying every streamed expert one
# layer ahead (--expert-fetch prefetch) against copying ahead only what the last step routed and fetching
# the rest after the router (--expert-fetch demand), on an emulated L4 whose memory forces streaming.
#   tools/bench/expert_fetch.sh [BUILD_DIR] [WORK_DIR]
# Prints one row per (batch, mode): experts streamed per generated token, the demand counters, and whether
# the generated text equals the prefetch run's. sim timings are emulation, not GPU timings.
set -euo pipefail
build=${1:-build}
work=${2:-$(mktemp -d)}
ferry="$build/ferry"
mkdir -p "$work"
# 4 layers, 8 experts top-2 of 1.18 MB: at scale 0.003 the auto policy pins 1 expert per layer, streams 7
[ -d "$work/m4" ] || "$build/make_model" --out "$work/m4" --layers 4 --hidden 256 --heads 8 --kv-heads 2 \
  --experts 8 --expert-width 768 --vocab 32000 --context 512 > /dev/null
head -16 "$(dirname "$0")/../data/prompts.txt" > "$work/prompts.txt"
printf '%-6s %-9s %9s %11s %7s %12s %10s %s\n' batch mode "MB/token" prefetched unused "after router" "not moved" text
for batch in 1 4 16; do
  for mode in prefetch demand; do
    "$ferry" run -m "$work/m4" --prompts "$work/prompts.txt" -o "$work/out_$mode.jsonl" --target sim:l4,scale=0.003 \
      --batch "$batch" -n 32 --no-progress --expert-fetch "$mode" --metrics "$work/metrics.json" > /dev/null 2>&1
    same=-
    if [ "$mode" = demand ]; then
      python3 "$(dirname "$0")/same_texts.py" "$work/out_prefetch.jsonl" "$work/out_demand.jsonl" && same=same || same=DIFFERENT
    fi
    python3 - "$work/metrics.json" "$batch" "$mode" "$same" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
f = m["pipeline"]["expert_fetch"]
print("%-6s %-9s %9.2f %11d %7d %12d %10d %s" % (sys.argv[2], sys.argv[3], f["streamed_bytes"] / m["generated_tokens"] / 1e6,
      f["prefetched"], f["prefetched_unused"], f["fetched_after_router"], f["not_moved"], sys.argv[4]))
PY
  done
done
