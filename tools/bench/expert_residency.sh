#!/usr/bin/env bash
# Resident experts by index (experts 0..g-1 of each layer, the whole run) against by observed frequency
# (re-ranked between forwards from the routing so far), on an emulated L4 whose memory pins a few experts
# per layer and streams the rest, with demand fetch (what a resident expert saves is then a copy).
#   tools/bench/expert_residency.sh [BUILD_DIR] [WORK_DIR] [PROMPTS]
# Prints one row per (batch, residency): the hit rate on resident experts, experts streamed per generated
# token, the trades frequency residency made, the compute stream's stall, and whether the generated text
# equals the index run's. sim timings are emulation, not GPU timings.
set -euo pipefail
build=${1:-build}
work=${2:-$(mktemp -d)}
prompts=${3:-$(dirname "$0")/../data/prompts.txt}
ferry="$build/ferry"
mkdir -p "$work"
# MODEL=DIR SCALE=S run another model on sim:l4,scale=S (e.g. MODEL=tools/data/tiny_moe SCALE=0.0007, the
# bundled trained model: the auto policy pins 5 of its 8 experts per layer). The default, a random-weight
# model of 4 layers, 8 experts top-2 of 1.18 MB: at scale 0.004 the auto policy pins 3 per layer, streams 5.
model=${MODEL:-$work/m4}
scale=${SCALE:-0.004}
[ -n "${MODEL:-}" ] || [ -d "$work/m4" ] || "$build/make_model" --out "$work/m4" --layers 4 --hidden 256 --heads 8 \
  --kv-heads 2 --experts 8 --expert-width 768 --vocab 32000 --context 512 > /dev/null
head -16 "$prompts" > "$work/prompts.txt"
printf '%-6s %-10s %9s %9s %7s %9s %s\n' batch residency "hit rate" "MB/token" trades "stall s" text
for batch in 1 4 16; do
  for mode in index frequency; do
    "$ferry" run -m "$model" --prompts "$work/prompts.txt" -o "$work/out_$mode.jsonl" --target "sim:l4,scale=$scale" \
      --batch "$batch" -n 32 --no-progress --expert-fetch demand --expert-residency "$mode" \
      --metrics "$work/metrics.json" > /dev/null 2>&1
    same=-
    if [ "$mode" = frequency ]; then
      python3 "$(dirname "$0")/same_texts.py" "$work/out_index.jsonl" "$work/out_frequency.jsonl" && same=same || same=DIFFERENT
    fi
    python3 - "$work/metrics.json" "$batch" "$mode" "$same" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
p = m["pipeline"]
r, f = p["expert_residency"], p["expert_fetch"]
stall = p["compute_stall_seconds"]
print("%-6s %-10s %8.1f%% %9.2f %7d %9s %s" % (sys.argv[2], sys.argv[3], 100 * r["hit_rate"],
      f["streamed_bytes"] / m["generated_tokens"] / 1e6, r["trades"], "-" if stall is None else "%.3f" % stall,
      sys.argv[4]))
PY
  done
done
