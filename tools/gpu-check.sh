#!/usr/bin/env bash
# gpu-check.sh: one prepared check of ferry's CUDA backend on a machine with an NVIDIA GPU (docs/CUDA.md).
#
#   bash tools/gpu-check.sh                 # every step in order: gpu deps build ops generate pipeline probe report
#   bash tools/gpu-check.sh ops generate    # only these steps; each appends its result to the results file
#   bash tools/gpu-check.sh report          # write the report from the results recorded so far
#
# Steps:
#   gpu       nvidia-smi lists a GPU. With none: one line, the report, exit 0 (nothing installed or built).
#   deps      bash tools/install-deps.sh, and nvcc on PATH (or in /usr/local/cuda*/bin)
#   build     $BUILD_DIR with FERRY_CUDA=ON for this GPU's arch (tools/build.sh)
#   ops       $BUILD_DIR/tests/ferry_ops --check --backend cuda: every op's CUDA version vs its reference
#   generate  every oracle model with a tokenizer: 16 greedy tokens on --target cuda vs --target cpu
#   pipeline  a ~0.86 GB Mixtral-shaped model (make_model) on a device capacity too small to hold its experts
#             (they stream over PCIe): ferry run --metrics; H2D GB/s, overlap efficiency, tokens/s beside the
#             planner's prediction; the same on sim:l4 (an emulated L4 of that capacity) for comparison
#   memcheck  compute-sanitizer memcheck over a small streaming run (1 expert per layer resident, the rest
#             streamed) and over generate on one oracle model: no invalid access, no CUDA API error
#   probe     ferry probe --quick: the GPU's measured PCIe, memory bandwidth and bf16 GEMM figures
#   report    gpu-check-report.md (repo root; $OUT/gpu-check-report.md when OUT is set)
#
# Environment:
#   OUT                 where the report, results and logs go (the GPU runner collects $OUT); default: the
#                       report in the repo root, results and logs in $BUILD_DIR/gpu-check/
#   BUILD_DIR           build-gpu
#   CUDA_ARCH           CMAKE_CUDA_ARCHITECTURES (default: compute_cap from nvidia-smi, else native)
#   GPU_CHECK_BUDGET_S  480: seconds for the whole run; each step's timeout is cut to what is left
#   GPU_CHECK_TARGET    cuda. sim:l4 runs generate and pipeline on the emulated device, no GPU needed
#                       (a dry run of the script: BUILD_DIR=build GPU_CHECK_TARGET=sim:l4 ... generate pipeline)
#   PIPELINE_TARGET     the pipeline step's device target (default: cuda,capacity=<bytes computed below>)
#   PIPELINE_SIM        1: the pipeline step also runs the sim:l4 comparison; 0 skips it (saves GPU-machine time)
#   PROBE_ARGS          --quick (set it empty for the full, minute-long probe)
# Exit status: 0 when no step failed (and when there is no GPU), 1 when one did, 2 for a bad argument.
# shellcheck disable=SC2317  # the steps are called as "step_$name", which shellcheck cannot follow
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)
BUILD_DIR=${BUILD_DIR:-build-gpu}
TARGET=${GPU_CHECK_TARGET:-cuda}
BUDGET_S=${GPU_CHECK_BUDGET_S:-480}
PROBE_ARGS=${PROBE_ARGS---quick}
if [[ -n ${OUT:-} ]]; then
  WORK=$OUT/gpu-check
  REPORT=$OUT/gpu-check-report.md
else
  WORK=$BUILD_DIR/gpu-check
  REPORT=$REPO/gpu-check-report.md
fi
RESULTS=$WORK/results.tsv             # step <TAB> status <TAB> summary <TAB> log <TAB> time, one line per step run
SCRATCH=$BUILD_DIR/gpu-check-scratch  # the generated model and prompts: never under $OUT (too large to send back)
FERRY=$BUILD_DIR/ferry
ALL_STEPS=(gpu deps build ops generate pipeline memcheck probe report)
PROMPT="The quick brown fox jumps over the lazy dog."
L4_BYTES=$((24 * 1024 * 1024 * 1024))  # the l4 hardware preset's memory (src/planner/hardware_presets.cpp)

GPU_FOUND=0 GPU_REASON="" GPU_NAME="" GPU_DRIVER="" GPU_CC="" GPU_MEM=""
FAILED=0

# ---- helpers ----------------------------------------------------------------------------------------

say() { echo "gpu-check: $*"; }

# record STEP STATUS SUMMARY [LOG]: one results line (STATUS: pass, fail or skipped) and one line on stdout.
record() {
  local step=$1 status=$2 summary=${3//$'\t'/ } log=${4:-}
  summary=${summary//$'\n'/; }
  mkdir -p "$WORK"
  printf '%s\t%s\t%s\t%s\t%s\n' "$step" "$status" "$summary" "$log" "$(date -u +%FT%TZ)" >>"$RESULTS"
  [[ $status == fail ]] && FAILED=1
  say "[$status] $step: $summary"
}

# seconds left of the run's budget, at most $1 (and at least 5, so a timeout always has something to run)
limit() {
  local left=$((BUDGET_S - SECONDS))
  ((left < 5)) && left=5
  ((left < $1)) && echo "$left" || echo "$1"
}

# run_limited SECONDS LOG CMD...: CMD with a timeout, stdout and stderr to LOG; returns CMD's status (124: timed out)
run_limited() {
  local secs=$1 log=$2
  shift 2
  timeout --kill-after=10 "$secs" "$@" >"$log" 2>&1
}

# why a command failed, in one line: timed out, or the log's last error-looking line
failure_line() {
  local rc=$1 secs=$2 log=$3 line
  if ((rc == 124 || rc == 137)); then
    echo "timed out after ${secs}s"
    return
  fi
  line=$(grep -iE 'error|fail|abort|what\(\)|terminate' "$log" 2>/dev/null | tail -n 1)
  [[ -z $line ]] && line=$(grep -v '^[[:space:]]*$' "$log" 2>/dev/null | tail -n 1)
  echo "exit $rc: ${line:0:300}"
}

detect_gpu() {
  GPU_FOUND=0
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    GPU_REASON="not found"
    return 1
  fi
  local out rc
  if ! out=$(timeout 30 nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total \
    --format=csv,noheader 2>&1); then
    # drivers older than 510 do not know compute_cap
    out=$(timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)
    rc=$?
    if ((rc != 0)); then
      GPU_REASON=$(echo "$out" | grep -v '^[[:space:]]*$' | head -n 1)
      GPU_REASON=${GPU_REASON:-exit status $rc}
      return 1
    fi
    out=$(echo "$out" | awk -F', ' 'NF>=3 {print $1 ", " $2 ", , " $3}')
  fi
  out=$(echo "$out" | grep -v '^[[:space:]]*$' | head -n 1)
  if [[ -z $out || $out != *,* ]]; then
    GPU_REASON="lists no GPU${out:+ ($out)}"
    return 1
  fi
  IFS=',' read -r GPU_NAME GPU_DRIVER GPU_CC GPU_MEM <<<"$out"
  GPU_NAME=$(echo "$GPU_NAME" | xargs) GPU_DRIVER=$(echo "$GPU_DRIVER" | xargs)
  GPU_CC=$(echo "$GPU_CC" | xargs) GPU_MEM=$(echo "$GPU_MEM" | xargs)
  GPU_FOUND=1
}

# GPU steps: skipped, with a result line, where there is no GPU (unless the target is a sim device)
need_gpu() {
  [[ $TARGET != *cuda* ]] && return 0
  ((GPU_FOUND)) && return 0
  detect_gpu && return 0
  record "$1" skipped "no GPU (nvidia-smi: $GPU_REASON)"
  return 1
}

need_binary() {
  [[ -x $2 ]] && return 0
  record "$1" fail "$2 is not built (run the build step)"
  return 1
}

find_nvcc() {
  command -v nvcc >/dev/null 2>&1 && return 0
  local d
  for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
    if [[ -x $d/nvcc ]]; then
      export PATH=$d:$PATH
      return 0
    fi
  done
  return 1
}

# py EXPR-SCRIPT ARGS...: python3 for JSON figures (on Debian by default)
py() { python3 -c "$@"; }

# ---- steps ------------------------------------------------------------------------------------------

step_gpu() {
  if detect_gpu; then
    record gpu pass "$GPU_NAME, driver $GPU_DRIVER, compute capability ${GPU_CC:-unknown}, $GPU_MEM"
    return
  fi
  mkdir -p "$WORK"
  printf '%s\t%s\t%s\t%s\t%s\n' gpu no-gpu "no GPU (nvidia-smi: $GPU_REASON)" "" "$(date -u +%FT%TZ)" >>"$RESULTS"
  echo "gpu-check: no GPU (nvidia-smi: $GPU_REASON); nothing to run"
  step_report >/dev/null
  exit 0
}

step_deps() {
  local log=$WORK/deps.log secs rc
  secs=$(limit 120)
  run_limited "$secs" "$log" bash tools/install-deps.sh
  rc=$?
  if ((rc != 0)); then
    record deps fail "tools/install-deps.sh: $(failure_line "$rc" "$secs" "$log")" "$log"
    return
  fi
  if ! find_nvcc; then
    record deps fail "nvcc not found on PATH or in /usr/local/cuda*/bin: install the CUDA toolkit (12.x or 13.x)" "$log"
    return
  fi
  record deps pass "packages present; $(nvcc --version | grep -o 'release [0-9.]*' | head -n 1) at $(command -v nvcc)" "$log"
}

step_build() {
  local log=$WORK/build.log arch secs rc start=$SECONDS
  find_nvcc || true
  arch=${CUDA_ARCH:-${GPU_CC//./}}
  arch=${arch:-native}
  secs=$(limit 300)
  # tools/build.sh configures and builds everything (tests included). If some target fails, the three this
  # script runs are still built where they can be, so the later steps have something to run.
  BUILD_DIR=$BUILD_DIR FERRY_CUDA=ON CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=$arch" \
    run_limited "$secs" "$log" bash tools/build.sh
  rc=$?
  if ((rc == 0)); then
    record build pass "$BUILD_DIR, FERRY_CUDA=ON, CMAKE_CUDA_ARCHITECTURES=$arch, in $((SECONDS - start))s" "$log"
    return
  fi
  local why
  why=$(failure_line "$rc" "$secs" "$log")
  if [[ -f $BUILD_DIR/build.ninja ]] && ((rc != 124 && rc != 137)); then
    secs=$(limit 120)
    timeout --kill-after=10 "$secs" cmake --build "$BUILD_DIR" -j "$(nproc)" --target ferry make_model ferry_ops \
      >>"$log" 2>&1 && why="$why (ferry, make_model and ferry_ops did build)"
  fi
  record build fail "CMAKE_CUDA_ARCHITECTURES=$arch: $why" "$log"
}

step_ops() {
  need_gpu ops || return
  local bin=$BUILD_DIR/tests/ferry_ops log=$WORK/ops.log secs rc summary
  need_binary ops "$bin" || return
  secs=$(limit 120)
  run_limited "$secs" "$log" "$bin" --check --backend cuda
  rc=$?
  # the device contract and the shared device math, as unit tests on the GPU
  local tests=$BUILD_DIR/tests/ferry_tests
  if [[ -x $tests ]]; then
    run_limited "$(limit 60)" "$WORK/ops-unit.log" "$tests" --gtest_brief=1 \
      --gtest_filter='Cuda*:PackedLayout*:MoeMath*:RouteMath*'
    local unit_rc=$?
    cat "$WORK/ops-unit.log" >>"$log"
    ((rc == 0)) && rc=$unit_rc
  fi
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  if ((rc == 0)); then
    record ops pass "${summary:-exit 0}" "$log"
  else
    local n_fail
    n_fail=$(grep -c ' FAIL' "$log")
    record ops fail "${summary:+$summary; }${n_fail/#0/no} failing cases; $(failure_line "$rc" "$secs" "$log")" "$log"
  fi
}

step_generate() {
  need_gpu generate || return
  need_binary generate "$FERRY" || return
  local details=$WORK/generate.md n_same=0 n_diff=0 n_err=0 n_skip=0 dir name t secs rc
  local -a problems=()
  {
    echo "Prompt \"$PROMPT\", 16 greedy tokens (--temperature 0 --ignore-eos), --target $TARGET vs --target cpu:"
    echo
    echo "| model | result |"
    echo "|---|---|"
  } >"$details"
  for dir in tests/data/oracles/*/; do
    dir=${dir%/}
    name=$(basename "$dir")
    if [[ ! -f $dir/tokenizer.model && ! -f $dir/tokenizer.json ]]; then
      echo "| $name | skipped: no tokenizer in the directory |" >>"$details"
      n_skip=$((n_skip + 1))
      continue
    fi
    if ((SECONDS >= BUDGET_S - 5)); then
      echo "| $name | skipped: the run's ${BUDGET_S}s budget is spent |" >>"$details"
      n_skip=$((n_skip + 1))
      continue
    fi
    local ok=1
    for t in cpu "$TARGET"; do
      local log=$WORK/generate-$name-${t//[:,=]/_}
      secs=$(limit 60)
      timeout --kill-after=10 "$secs" "$FERRY" generate --model "$dir" --prompt "$PROMPT" -n 16 --target "$t" \
        --temperature 0 --ignore-eos >"$log.out" 2>"$log.err"
      rc=$?
      if ((rc != 0)); then
        ok=0
        local why
        why=$(failure_line "$rc" "$secs" "$log.err")
        echo "| $name | --target $t failed: ${why//|/\\|} |" >>"$details"
        problems+=("$name --target $t: $why")
      fi
    done
    ((ok)) || {
      n_err=$((n_err + 1))
      continue
    }
    local a=$WORK/generate-$name-cpu.out b=$WORK/generate-$name-${TARGET//[:,=]/_}.out
    if cmp -s "$a" "$b"; then
      n_same=$((n_same + 1))
      echo "| $name | identical: \`$(head -c 120 "$a" | tr '\n|' ' /')\` |" >>"$details"
    else
      n_diff=$((n_diff + 1))
      echo "| $name | different: cpu \`$(head -c 100 "$a" | tr '\n|' ' /')\` vs $TARGET \`$(head -c 100 "$b" | tr '\n|' ' /')\` |" >>"$details"
      problems+=("$name: outputs differ")
    fi
  done
  local summary="$n_same identical, $n_diff different, $n_err failed, $n_skip skipped"
  if ((n_diff + n_err > 0)); then
    printf '%s\n' "${problems[@]}" >"$WORK/generate.log"
    record generate fail "$summary" "$WORK/generate.log"
  elif ((n_same == 0)); then
    record generate fail "no model ran ($summary)"
  else
    record generate pass "$summary"
  fi
}

# the prompt file: 64 prompts of 8 to 64 words
write_prompts() {
  local i j line words=(the expert router sends each token to two of eight feed forward networks and the cache keeps)
  for ((i = 0; i < 64; i++)); do
    line="Request $i:"
    for ((j = 0; j < 8 + (i * 7) % 57; j++)); do line+=" ${words[(i + j) % ${#words[@]}]}"; done
    echo "$line"
  done >"$1"
}

# device bytes for the dense weights, 2 experts per layer, a double-buffered stream of the other experts
# and 128 MiB of activations, over the planner's 0.9 usable fraction: most experts must stream
pipeline_capacity() {
  py '
import json, sys
c = json.load(open(sys.argv[1]))
D, F, E, L, V = c["hidden_size"], c["intermediate_size"], c["num_local_experts"], c["num_hidden_layers"], c["vocab_size"]
Dh = D // c["num_attention_heads"]
q, kv = c["num_attention_heads"] * Dh, c["num_key_value_heads"] * Dh
dense = 2 * (V * D + L * (2 * D * q + 2 * D * kv + E * D + 2 * D) + D)
expert = 2 * 3 * D * F
print(int((dense + L * 2 * expert + 2 * (E - 2) * expert + (128 << 20)) / 0.9))
' "$1"
}

# the run's figures from a --metrics file, one line
pipeline_figures() {
  py '
import json, sys
m = json.load(open(sys.argv[1]))
p = m.get("pipeline") or {}
wall = p.get("wall_seconds") or m.get("wall_seconds") or 0
h2d, busy = p.get("bytes", {}).get("h2d", 0), p.get("busy_seconds", {}).get("h2d", 0)
pred = p.get("planner_predicted_tokens_per_second")
tps = p.get("tokens_per_second", m.get("tokens_per_second", 0))
out = ["H2D %.2f GB/s while busy, %.2f GB/s over the run (%.2f GB)" % (h2d / busy / 1e9 if busy else 0, h2d / wall / 1e9 if wall else 0, h2d / 1e9),
       "overlap %.2f (busiest %s)" % (p.get("overlap_efficiency", 0), p.get("busiest", "?")),
       "%.1f tok/s vs predicted %s" % (tps, "%.1f" % pred if pred else "none"),
       "experts %s hits / %s misses" % (p.get("expert_hits", "?"), p.get("expert_misses", "?")),
       "N=%s" % (p.get("policy", {}).get("batch_size", m.get("batch", "?")))]
if not p: out.insert(0, "no pipeline metrics")
print("; ".join(out))
' "$1"
}

# run_pipeline LABEL TARGET MODEL PROMPTS: one ferry run; prints the figures line, or the failure line (status 1)
run_pipeline() {
  local label=$1 target=$2 model=$3 prompts=$4 log=$WORK/pipeline-$1.log metrics=$WORK/pipeline-$1.json secs rc
  secs=$(limit 150)
  rm -f "$metrics"
  run_limited "$secs" "$log" "$FERRY" run --model "$model" --prompts "$prompts" -n 32 --target "$target" \
    --policy auto --metrics "$metrics" -o "$SCRATCH/results-$label.jsonl" --no-progress
  rc=$?
  if ((rc != 0)) || [[ ! -s $metrics ]]; then
    echo "$label ($target): $(failure_line "$rc" "$secs" "$log")"
    return 1
  fi
  echo "$label ($target): $(pipeline_figures "$metrics")"
}

step_pipeline() {
  need_gpu pipeline || return
  need_binary pipeline "$FERRY" || return
  need_binary pipeline "$BUILD_DIR/make_model" || return
  local model=$SCRATCH/mixtral-4x8 prompts=$SCRATCH/prompts-64.txt log=$WORK/pipeline-make-model.log secs rc
  mkdir -p "$SCRATCH"
  if [[ ! -f $model/.complete ]]; then  # written after make_model succeeds: a run cut short makes it again
    secs=$(limit 60)
    run_limited "$secs" "$log" "$BUILD_DIR/make_model" --out "$model" --layers 4 --hidden 1024 --heads 16 \
      --kv-heads 4 --experts 8 --top-k 2 --expert-width 3584 --vocab 32000 --context 4096 --seed 1
    rc=$?
    if ((rc != 0)); then
      rm -rf "$model"
      record pipeline fail "make_model: $(failure_line "$rc" "$secs" "$log")" "$log"
      return
    fi
    touch "$model/.complete"
  fi
  write_prompts "$prompts"
  local capacity scale line status=pass failed_log=""
  local -a lines=()
  capacity=$(pipeline_capacity "$model/config.json") || {
    record pipeline fail "cannot read $model/config.json"
    return
  }
  scale=$(py "print(f'{$capacity / $L4_BYTES:.6g}')")
  if [[ $TARGET == *cuda* ]]; then
    if ! line=$(run_pipeline cuda "${PIPELINE_TARGET:-$TARGET,capacity=$capacity}" "$model" "$prompts"); then
      status=fail failed_log=$WORK/pipeline-cuda.log
    fi
    lines+=("$line")
  fi
  # the emulated L4 of the same capacity, for comparison (a failure here is recorded, not fatal to the GPU result)
  if [[ ${PIPELINE_SIM:-1} == 0 ]]; then
    line="sim comparison skipped (PIPELINE_SIM=0)"
  elif ! line=$(run_pipeline sim "sim:l4,scale=$scale" "$model" "$prompts"); then
    if [[ $TARGET == *cuda* ]]; then
      line="$line (the sim comparison only: not counted as a failure)"
    else
      status=fail failed_log=$WORK/pipeline-sim.log
    fi
  fi
  lines+=("$line")
  printf '%s\n' "${lines[@]}" >"$WORK/pipeline.md"
  local joined
  joined=$(printf '%s | ' "${lines[@]}")
  record pipeline "$status" "capacity $capacity B; ${joined% | }" "$failed_log"
}

# a policy for MODEL that keeps one expert per layer on the device and streams the others: written from the
# planner's own (ferry plan --json), so every other field is one the executor accepts
streaming_policy() {
  local model=$1 out=$2
  "$FERRY" plan --model "$model" --hw l4 --prompt-len 32 --gen-len 8 --json >"$out.plan" || return 1
  py '
import json, sys
p = json.load(open(sys.argv[1]))
e = p["experts"]
L = len(e["gpu_per_layer"])
E = e["gpu_per_layer"][0] + e["dram_per_layer"][0] + e["ssd_per_layer"][0]
e["gpu_per_layer"], e["dram_per_layer"], e["ssd_per_layer"] = [1] * L, [E - 1] * L, [0] * L
p["batch_size"], p["micro_batch"] = 8, 4
p["devices"]["attention"], p["devices"]["ffn"] = "cpu", "gpu"
p["kv"]["gpu_share"] = 0.0
json.dump(p, open(sys.argv[2], "w"), indent=1)
' "$out.plan" "$out"
}

step_memcheck() {
  need_gpu memcheck || return
  need_binary memcheck "$FERRY" || return
  need_binary memcheck "$BUILD_DIR/make_model" || return
  local -a sanitizer=()
  if [[ $TARGET == *cuda* ]]; then
    local cs
    cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
    if [[ -z $cs ]]; then
      record memcheck skipped "compute-sanitizer not found"
      return
    fi
    sanitizer=("$cs" --tool memcheck --error-exitcode 3 --print-limit 20)
  fi
  local model=$SCRATCH/tiny-8x512 prompts=$SCRATCH/prompts-8.txt policy=$SCRATCH/streaming-policy.json
  local log=$WORK/memcheck.log secs rc
  mkdir -p "$SCRATCH"
  : >"$log"
  if [[ ! -f $model/.complete ]]; then
    "$BUILD_DIR/make_model" --out "$model" --layers 2 --hidden 256 --heads 4 --kv-heads 2 --experts 8 --top-k 2 \
      --expert-width 512 --vocab 32000 --context 512 --seed 2 >>"$log" 2>&1 || {
      record memcheck fail "make_model failed" "$log"
      return
    }
    touch "$model/.complete"
  fi
  write_prompts "$prompts.all"
  head -n 8 "$prompts.all" >"$prompts"
  if ! streaming_policy "$model" "$policy" >>"$log" 2>&1; then
    record memcheck fail "could not write the streaming policy" "$log"
    return
  fi
  local -a done_runs=()
  secs=$(limit 150)
  echo "== streaming run: ${sanitizer[*]} ferry run --target $TARGET --policy $policy" >>"$log"
  timeout --kill-after=10 "$secs" "${sanitizer[@]}" "$FERRY" run --model "$model" --prompts "$prompts" -n 8 \
    --target "$TARGET" --policy "$policy" -o "$SCRATCH/memcheck-results.jsonl" --no-progress >>"$log" 2>&1
  rc=$?
  if ((rc != 0)); then
    record memcheck fail "streaming run: $(failure_line "$rc" "$secs" "$log")" "$log"
    return
  fi
  done_runs+=("streaming run (1 of 8 experts resident per layer)")
  local oracle=tests/data/oracles/mixtral_spm
  secs=$(limit 120)
  echo "== generate: ${sanitizer[*]} ferry generate --model $oracle --target $TARGET" >>"$log"
  timeout --kill-after=10 "$secs" "${sanitizer[@]}" "$FERRY" generate --model "$oracle" --prompt "$PROMPT" -n 8 \
    --target "$TARGET" --temperature 0 --ignore-eos >>"$log" 2>&1
  rc=$?
  if ((rc != 0)); then
    record memcheck fail "generate on $oracle: $(failure_line "$rc" "$secs" "$log")" "$log"
    return
  fi
  done_runs+=("generate on mixtral_spm")
  local errors
  errors=$(grep -o 'ERROR SUMMARY: [0-9]* error' "$log" | tr '\n' ';')
  local label="no sanitizer (target $TARGET)"
  ((${#sanitizer[@]})) && label="memcheck clean"
  record memcheck pass "$label: $(IFS=,; echo "${done_runs[*]}")${errors:+ ($errors)}" "$log"
}

step_probe() {
  need_gpu probe || return
  need_binary probe "$FERRY" || return
  local log=$WORK/probe.log json=$WORK/probe.json secs rc figures
  secs=$(limit 90)
  # shellcheck disable=SC2086  # PROBE_ARGS is a list of flags
  run_limited "$secs" "$log" "$FERRY" probe $PROBE_ARGS --out "$json"
  rc=$?
  if ((rc != 0)); then
    record probe fail "$(failure_line "$rc" "$secs" "$log")" "$log"
    return
  fi
  if figures=$(py '
import json, sys
j = json.load(open(sys.argv[1]))
g, l = j.get("gpu"), j.get("links", {})
if not g:
    sys.exit(1)
print("%s: %.1f GiB, %.0f GB/s memory, %.1f TFLOPS bf16 GEMM, PCIe H2D %.1f / D2H %.1f GB/s" % (
    g.get("name", "?"), g.get("capacity_bytes", 0) / 2**30, g.get("bandwidth_gbps", 0),
    g.get("peak", {}).get("bf16_tflops", 0), l.get("h2d_gbps", 0), l.get("d2h_gbps", 0)))
' "$json"); then
    record probe pass "$figures" "$log"
  else
    record probe fail "the profile has no GPU: $(grep -i 'gpu' "$log" | tail -n 1)" "$log"
  fi
}

step_report() {
  mkdir -p "$(dirname "$REPORT")"
  local name=$GPU_NAME driver=$GPU_DRIVER step status summary logf when no_gpu=0
  [[ -f $RESULTS ]] && awk -F'\t' '$1 == "gpu"' "$RESULTS" | tail -n 1 | grep -q $'\tno-gpu\t' && no_gpu=1
  if [[ -z $name ]] && detect_gpu; then name=$GPU_NAME driver=$GPU_DRIVER; fi
  {
    echo "# ferry GPU check"
    echo
    echo "- date: $(date -u '+%F %T UTC')"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "- GPU: ${name:-none}${GPU_CC:+ (compute capability $GPU_CC)}${GPU_MEM:+, $GPU_MEM}"
    echo "- driver: ${driver:-none}"
    echo "- host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) memory"
    echo
    echo "| step | status | figures |"
    echo "|---|---|---|"
    for step in "${ALL_STEPS[@]}"; do
      [[ $step == report ]] && continue
      if [[ -f $RESULTS ]] && IFS=$'\t' read -r _ status summary logf when < <(awk -F'\t' -v s="$step" '$1 == s' "$RESULTS" | tail -n 1); then
        echo "| $step | $status | ${summary//|/\\|} |"
      elif ((no_gpu)); then
        echo "| $step | skipped | no GPU |"
      else
        echo "| $step | not run | |"
      fi
    done
    for step in generate pipeline; do
      if [[ -f $WORK/$step.md ]] && awk -F'\t' -v s="$step" '$1 == s' "$RESULTS" 2>/dev/null | grep -q .; then
        echo
        echo "## $step"
        echo
        cat "$WORK/$step.md"
      fi
    done
    local any=0
    for step in "${ALL_STEPS[@]}"; do
      [[ -f $RESULTS ]] || break
      IFS=$'\t' read -r _ status summary logf when < <(awk -F'\t' -v s="$step" '$1 == s' "$RESULTS" | tail -n 1) || continue
      [[ $status == fail ]] || continue
      ((any)) || printf '\n## Failures\n'
      any=1
      echo
      echo "### $step ($when)"
      echo
      echo "$summary"
      if [[ -n $logf && -f $logf ]]; then
        echo
        echo "Last lines of \`$logf\`:"
        echo
        echo '```'
        tail -n 20 "$logf"
        echo '```'
      fi
    done
  } >"$REPORT"
  say "report written to $REPORT"
}

# ---- main -------------------------------------------------------------------------------------------

main() {
  local steps=("$@") s
  if ((${#steps[@]} == 0)); then
    steps=("${ALL_STEPS[@]}")
    rm -f "$RESULTS"  # a whole run starts a fresh results file
  fi
  for s in "${steps[@]}"; do
    if [[ ! " ${ALL_STEPS[*]} " == *" $s "* ]]; then
      echo "gpu-check: unknown step '$s' (steps: ${ALL_STEPS[*]})" >&2
      exit 2
    fi
  done
  for s in "${steps[@]}"; do
    if [[ $s != gpu && $s != report ]] && ((SECONDS >= BUDGET_S - 5)); then
      record "$s" skipped "the run's ${BUDGET_S}s budget is spent"
      continue
    fi
    mkdir -p "$WORK"
    "step_$s"
  done
  exit "$FAILED"
}

main "$@"
