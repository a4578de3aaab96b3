#!/usr/bin/env bash
# The package as a user installs it: build the wheel from the tracked files, install it into a fresh
# virtual environment outside the checkout, and from a folder outside the checkout run one CultureLLM,
# one WVS and one VSM13 task through `lm_eval --include_path "$(culture-tasks-path)"` on a tiny model
# (24 documents each: VSM13's indices need all 24 items).
#   CULTURE_DATA_DIR=../shared/data bash scripts/check_wheel.sh     (CPU, offline; PYTHON picks the interpreter)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA_ROOT=$(cd "${CULTURE_DATA_DIR:-$REPO/../shared/data}" && pwd)
PYTHON=${PYTHON:-python3}
TASKS=culturellm_english_hate_offensive,wvs_usa,vsm13_usa
WORK=$(mktemp -d "${TMPDIR:-/tmp}/culture-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_CACHE="$WORK/hf-datasets"
unset PYTHONPATH

SECONDS=0
echo "check_wheel: building the wheel from the tracked files"
mkdir "$WORK/src"
git -C "$REPO" ls-files -z | (cd "$REPO" && tar --null -T - -cf -) | tar -xf - -C "$WORK/src"
"$PYTHON" -m pip wheel --no-deps -q -w "$WORK/dist" "$WORK/src"

echo "check_wheel: installing it into a fresh virtual environment in $WORK"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q --no-compile torch==2.13.0 "$WORK"/dist/*.whl
echo "check_wheel: installed (${SECONDS}s)"
export PATH="$WORK/venv/bin:$PATH"
cd "$WORK"

case "$(culture-tasks-path)" in
  "$WORK/venv/"*) ;;
  *) echo "check_wheel: culture-tasks-path printed $(culture-tasks-path), not the installed package" >&2; exit 1 ;;
esac
# every console script the package declares starts from the installed package
for script in $(python -c "import importlib.metadata as m; print(' '.join(e.name for e in m.distribution('culture-align-kit').entry_points if e.group == 'console_scripts'))"); do
  "$script" --help >/dev/null || { echo "check_wheel: $script --help failed from the wheel" >&2; exit 1; }
done
echo "check_wheel: every console script answers --help"
# the tiny test model (tests/ is not part of the package; only its tokenizer/model builder is used)
python -c "import sys; sys.path.insert(0, sys.argv[1]); from tiny_model import build_tiny_model; build_tiny_model(sys.argv[2])" \
  "$REPO/tests" "$WORK/tiny"

lm_eval --model hf --model_args "pretrained=$WORK/tiny,dtype=float32" --device cpu \
  --include_path "$(culture-tasks-path)" --tasks "$TASKS" \
  --metadata "{\"data_dir\": \"$DATA_ROOT\"}" --limit 24 --batch_size 8 --output_path "$WORK/results"

python - "$WORK/results" "$TASKS" <<'EOF'
import json, math, sys
from pathlib import Path

found = sorted(Path(sys.argv[1]).rglob("results_*.json"))
if len(found) != 1:
    sys.exit(f"check_wheel: expected one lm-eval result file under {sys.argv[1]}, found {found}")
results = json.loads(found[0].read_text())["results"]
for task, metric in zip(sys.argv[2].split(","), ("f1_macro,none", "wvs_jsd,none", "vsm13_l1,none")):
    value = results.get(task, {}).get(metric)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        sys.exit(f"check_wheel: {found[0]} has no finite {metric} for {task}: {results.get(task)}")
    print(f"check_wheel: {task} {metric} = {value:.4f}")
EOF
echo "check_wheel: OK (${SECONDS}s)"
