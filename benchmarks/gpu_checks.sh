#!/usr/bin/env bash
# The measurements still to make on a GPU (docs/bench_cpu.md, "Left for a GPU run"), as one
# script for a short time budget: each step runs under its own time limit, its output goes
# to $OUT/<step>.txt, and a step that fails or runs out of time is reported without stopping the rest.
# $OUT/figures.txt collects the figures, each line prefixed with its step, device, dtype and whether
# the step finished (a step stopped at its time limit or failed: "INCOMPLETE, rc N").
#
# On a GPU machine (an offline one with the wheels, the data and a tokenizer under .carry/: source
# .carry/activate.sh first):
#   STEPS="aligner lora" bash benchmarks/gpu_checks.sh   # about 4 min on an H100
#   STEPS="suite" LIMIT_SUITE=540 bash benchmarks/gpu_checks.sh   # 5-6 min (docs/bench_h200.md)
# Steps: aligner (shared stems vs full rows at batch 64 and 768), lora (batch 16/64, checkpointing
# on/off, torch.compile at batch 16, profiler counts, dropout 0.05 vs 0), suite (the whole CultureLLM suite through hf-prompt at --batch_size
# auto:4 up to 256, peak memory), overhead (tokenisation outside the model), vllm (whether vLLM is importable).
# Environment: STEPS, MODEL (default llama3-8b: random weights, the real cost), TOK (default
# .carry/tok), DEVICE (cuda), DTYPE (bfloat16), LIMIT_S (seconds per step, default 300; LIMIT_ALIGNER,
# LIMIT_LORA, LIMIT_SUITE, ... override it for one step), ALIGNER_BATCHES (64 768), DROPOUTS (0.05 0), OUT.
# LORA_ARGS / SUITE_ARGS replace a step's default flags (e.g. fewer steps to fit a budget).
# SMOKE=1 shrinks every step to seconds, to check the wiring on a CPU with a small model:
#   MODEL=<small model dir> TOK=<its dir> DEVICE=cpu DTYPE=float32 SMOKE=1 OUT=/tmp/gc bash benchmarks/gpu_checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-aligner lora suite overhead vllm}
MODEL=${MODEL:-llama3-8b}
TOK=${TOK:-.carry/tok}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bfloat16}
LIMIT_S=${LIMIT_S:-300}
SMOKE=${SMOKE:-0}
OUT=${OUT:?set OUT to the folder for the outputs }
for s in $STEPS; do  # a misspelt step stops here, not after the steps before it have spent the budget
  case $s in aligner|lora|suite|overhead|vllm) ;;
    *) echo "gpu_checks.sh: unknown step '$s' in STEPS; use aligner, lora, suite, overhead, vllm" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
common=(--model "$MODEL" --tokenizer "$TOK" --device "$DEVICE" --dtype "$DTYPE")

if [ "$SMOKE" = 1 ]; then
  aligner=(--population 4 --repeats 1 --naive-candidates 1); aligner_batches="16"
  lora=(--steps 3 --warmup 1 --configs 2:1 --profile-steps 1)
  suite=(--limit 1 --batch-size 4 --upstream-docs-per-task 1 --max-new-tokens 2)
  overhead=(--limit 2 --tasks culturellm_english)
else
  aligner=(--population 32); aligner_batches=${ALIGNER_BATCHES:-64 768}
  read -ra lora <<< "${LORA_ARGS:---steps 20 --profile-steps 2 --configs 16:1,16:0,16:0:1,64:0,64:1}"
  read -ra suite <<< "${SUITE_ARGS:---limit 0 --batch-size auto:4 --upstream-docs-per-task 0 --lm hf-prompt --max-batch-size 256}"
  overhead=()
fi

# the figures: every line a benchmark prints with a number per second or a peak
FIGURES="s/gen|per generation|tokens/s|docs/s|peak|MFU|s/step|^tokenising|^loading|^ *[0-9]+ +(True|False)|speed-up|ratio:| vs |positions per generation"
[ "$DEVICE" = cpu ] && DEVICE_NAME=cpu || DEVICE_NAME=$(python -c 'import sys, torch; print(torch.cuda.get_device_name(sys.argv[1]) if sys.argv[1].startswith("cuda") else "cpu")' "$DEVICE" 2>/dev/null) \
  || DEVICE_NAME="$DEVICE (no name: is it available?)"

step() {  # name, then the command: runs it under LIMIT_S, keeps its output, reports its status and figures
  local name=$1; shift
  local start=$SECONDS limit_var="LIMIT_${name^^}" log status where="$DEVICE_NAME, $DTYPE"
  [ "$name" = overhead ] && where="cpu, tokenisation only"
  log=$(mktemp)
  timeout "${!limit_var:-$LIMIT_S}" "$@" > "$log" 2>&1
  local rc=$?
  cat "$log" >> "$OUT/$name.txt"
  status=complete
  [ "$rc" = 0 ] || status="INCOMPLETE, rc $rc$([ "$rc" = 124 ] && echo ': stopped at its time limit')"
  grep -E "$FIGURES" "$log" | awk -v p="[$name; $where; $status] " '{print p $0}' >> "$OUT/figures.txt"
  rm -f "$log"
  echo "== $name: rc $rc, $((SECONDS - start)) s ($*)" | tee -a "$OUT/summary.txt"
}

small_model() {  # no forward pass runs in `overhead`: the tokenizer's own architecture, random weights, in $TMPDIR
  # (default /tmp), keyed by the digest of TOK's files (benchmarks/small_model.py)
  python -m benchmarks.small_model "$TOK" 2>> "$OUT/overhead.txt" | tail -n 1  # its last line: the folder
}

echo "== $(date -u +%FT%TZ) $DEVICE_NAME STEPS=$STEPS MODEL=$MODEL DTYPE=$DTYPE SMOKE=$SMOKE" | tee -a "$OUT/summary.txt"
for s in $STEPS; do
  case $s in
    aligner) for b in $aligner_batches; do
               step aligner python benchmarks/bench_aligner.py "${common[@]}" "${aligner[@]}" --batch-size "$b"; done ;;
    lora)    for d in ${DROPOUTS:-0.05 0}; do
               step lora python -m benchmarks.bench_lora "${common[@]}" "${lora[@]}" --dropout "$d"; done ;;
    suite)   step suite python benchmarks/bench_suite.py "${common[@]}" "${suite[@]}" ;;
    overhead) if small=$(small_model); then step overhead python benchmarks/bench_suite_overhead.py --model "$small" "${overhead[@]}"
              else echo "== overhead: no model could be built from $TOK (see overhead.txt)" | tee -a "$OUT/summary.txt"; fi ;;
    vllm)    step vllm python -c "import vllm; print('vllm', vllm.__version__)" ;;
  esac
done
echo "outputs in $OUT: summary.txt, figures.txt, one file per step"
