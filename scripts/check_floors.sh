#!/usr/bin/env bash
# The oldest releases pyproject.toml allows: every direct dependency installed at its floor (`>=X` as `==X`,
# transitive ones as pip resolves them) into a fresh virtual environment, then the tests that exercise each of
# them run against it, so that a floor is a version the tests passed on, not a guess. torch is the exception:
# only its 2.13 CPU wheel is installed here (its floor is the one accelerate itself requires).
#   CULTURE_DATA_DIR=../shared/data bash scripts/check_floors.sh     (CPU, offline; PYTHON picks the interpreter)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA_ROOT=$(cd "${CULTURE_DATA_DIR:-$REPO/../shared/data}" && pwd)
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/culture-floors.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_CACHE="$WORK/hf-datasets"
unset PYTHONPATH

SECONDS=0
"$PYTHON" - "$REPO/pyproject.toml" > "$WORK/floors.txt" <<'PY'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for requirement in project["dependencies"] + project["optional-dependencies"]["test"]:
    found = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)(,<[0-9.]+)?", requirement)
    if found is None:
        sys.exit(f"check_floors: pyproject.toml: {requirement!r} has no `>=` floor; give it one")
    if found[1] != "torch":
        print(f"{found[1]}=={found[2]}")
PY
echo "check_floors: installing the floors: $(tr '\n' ' ' < "$WORK/floors.txt")"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q --no-compile torch==2.13.0 -c "$WORK/floors.txt" -e "$REPO[test]"
echo "check_floors: installed (${SECONDS}s): $("$WORK/venv/bin/python" -m pip freeze | grep -iE '^(lm.eval|transformers|peft|torch|datasets|numpy|scipy|scikit.learn|matplotlib|gguf|sentence.transformers|safetensors|cma|jinja2)==' | tr '\n' ' ')"

# lm-eval and datasets (the task folders), numpy / scipy / scikit-learn (the metrics and intervals), gguf and
# safetensors (culture-model), peft and transformers' Trainer (LoRA), cma (the aligner), jinja2 and matplotlib
# (the leaderboard and plots), sentence-transformers (augmentation)
cd "$REPO"
CULTURE_DATA_DIR="$DATA_ROOT" CULTURE_REQUIRE_DATA=1 "$WORK/venv/bin/python" -m pytest -q -p no:cacheprovider \
  tests/test_culturellm_suite.py tests/test_survey_tasks.py tests/test_stats.py tests/test_classification.py \
  tests/test_models.py tests/test_plots.py tests/test_augment.py tests/test_harness.py \
  "tests/test_lora.py::test_lora_lowers_the_loss_changes_only_lora_and_scores_through_lm_eval" \
  "tests/test_aligner.py::test_cma_optimizer_runs" \
  "tests/test_leaderboard.py::test_two_documents_are_never_significant"
echo "check_floors: passed (${SECONDS}s)"
