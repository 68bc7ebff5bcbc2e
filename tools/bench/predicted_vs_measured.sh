#!/usr/bin/env bash
# The planner's time model against the cpu target on this machine: `ferry probe` -> `ferry run --target cpu
# --hw probe.json`, for random-weight Mixtral-family models shaped like shipped models (their width, heads,
# experts, top-k and vocabulary; fewer layers, so they fit in DRAM) at several batch sizes.
#   tools/bench/predicted_vs_measured.sh [BUILD_DIR] [WORK_DIR] [PROMPTS]
# The machine is probed again before every run (DRAM bandwidth on a VM drifts between runs). Prints one row
# per (model, batch, round): predicted and measured tokens/s of the whole run, of decode and of prefill, and
# the ratio measured / predicted; with ROUNDS > 1 also the median ratios per cell. MODELS="olmoe qwen" runs a
# subset, BATCHES="1 16" other batches, DTYPE=int8|int4 the quantised experts.
set -euo pipefail
build=${1:-build}
work=${2:-$(mktemp -d)}
prompts=${3:-$(dirname "$0")/../data/tiny_moe/heldout.txt}
ferry="$build/ferry"
dtype=${DTYPE:-bf16}
gen=${GEN:-32}
mkdir -p "$work"

# name: make_model flags (the shipped config's shape, models/configs/<name>)
declare -A shape=(
  [mixtral]="--layers 1 --hidden 4096 --heads 32 --kv-heads 8 --experts 8 --top-k 2 --expert-width 14336 --vocab 32000"
  [phi]="--layers 1 --hidden 4096 --heads 32 --kv-heads 8 --experts 16 --top-k 2 --expert-width 6400 --vocab 32064"
  [olmoe]="--layers 2 --hidden 2048 --heads 16 --kv-heads 16 --experts 64 --top-k 8 --expert-width 1024 --vocab 50304"
  [qwen]="--layers 2 --hidden 2048 --heads 16 --kv-heads 16 --experts 60 --top-k 4 --expert-width 1408 --vocab 151936"
)
models=${MODELS:-"mixtral phi olmoe qwen"}
batches=${BATCHES:-"1 16 64"}

# Prompts of 48 words (about 64 tokens), cut from the held-out text.
python3 - "$prompts" "$work/prompts.txt" <<'PY'
import random, sys
words = open(sys.argv[1], encoding="utf-8").read().split()
random.seed(1)
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for _ in range(256):
        s = random.randrange(len(words) - 48)
        f.write(" ".join(words[s:s + 48]) + "\n")
PY

printf '%-8s %5s %6s | %9s %9s %5s | %9s %9s %5s | %9s %9s %5s\n' model batch dtype "pred tok/s" "meas" ratio \
  "pred dec" "meas" ratio "pred pre" "meas" ratio
rounds=${ROUNDS:-1}
for name in $models; do
  dir="$work/$name"
  [ -d "$dir" ] || "$build/make_model" --out "$dir" ${shape[$name]} --context 1024 > /dev/null
  for batch in $batches; do
   for round in $(seq 1 "$rounds"); do
    requests=$(( batch * 4 < 8 ? 8 : batch * 4 ))
    head -"$requests" "$work/prompts.txt" > "$work/p.txt"
    run="${name}_${batch}_${dtype}_$round"
    "$ferry" probe --out "$work/probe_$run.json" > /dev/null 2>&1
    "$ferry" run --target cpu -m "$dir" --prompts "$work/p.txt" -o "$work/out.jsonl" --batch "$batch" -n "$gen" \
      --ignore-eos --expert-dtype "$dtype" --hw "$work/probe_$run.json" --no-progress --metrics "$work/m_$run.json" \
      > "$work/run_$run.txt" 2>&1
    python3 - "$work/m_$run.json" "$name" "$batch" "$dtype" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
rows = {r["what"]: r for r in m["predicted_vs_measured"]["rows"]}
cells = []
for key in ("tokens/s (generated, whole run)", "decode tokens/s", "prefill tokens/s"):
    r = rows[key]
    cells.append("%9.1f %9.1f %5.2f" % (r["predicted"], r["measured"], r["ratio"]))
print("%-8s %5s %6s | %s" % (sys.argv[2], sys.argv[3], sys.argv[4], " | ".join(cells)))
PY
   done
  done
done
if [ "$rounds" -gt 1 ]; then
  python3 - "$work" "$dtype" "$rounds" $models -- $batches <<'PY'
import json, statistics, sys
work, dtype, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
rest = sys.argv[4:]
models, batches = rest[:rest.index("--")], rest[rest.index("--") + 1:]
keys = ("tokens/s (generated, whole run)", "decode tokens/s", "prefill tokens/s")
print("median ratio over %d rounds (measured / predicted): whole run, decode, prefill" % rounds)
for m in models:
    for b in batches:
        ratios = {k: [] for k in keys}
        for r in range(1, rounds + 1):
            rows = {x["what"]: x for x in json.load(open("%s/m_%s_%s_%s_%d.json" % (work, m, b, dtype, r)))
                    ["predicted_vs_measured"]["rows"]}
            for k in keys:
                ratios[k].append(rows[k]["ratio"])
        print("%-8s %5s  %s" % (m, b, "  ".join("%.2f" % statistics.median(ratios[k]) for k in keys)))
PY
fi
echo "per-part tables: $work/run_<model>_<batch>_<dtype>_<round>.txt; the profiles they were predicted on: probe_*.json"
