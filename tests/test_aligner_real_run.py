"""benchmarks/aligner_real_run.sh with stand-ins for culture-align and culture-steer that record their calls."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# culture-align's stand-in: records its arguments; as the real one, it rewrites alignment.json only when
# the run it is given is not the finished one in --output (here: other arguments than the stored ones)
FAKE_ALIGN = """#!/usr/bin/env bash
echo "align $*" >> "$CALLS"
out=""; prev=""
for a in "$@"; do [ "$prev" = "--output" ] && out="$a"; prev="$a"; done
mkdir -p "$out"
if [ ! -f "$out/alignment.json" ] || [ "$(cat "$out/alignment.json")" != "$*" ]; then echo "$*" > "$out/alignment.json"; fi
"""

FAKE_STEER = """#!/usr/bin/env bash
echo "steer $*" >> "$CALLS"
out=""; prev=""
for a in "$@"; do [ "$prev" = "--output" ] && out="$a"; prev="$a"; done
mkdir -p "$out"; echo "$*" > "$out/steering.json"
"""


def _run_script(tmp_path: Path, **env) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("culture-align", FAKE_ALIGN), ("culture-steer", FAKE_STEER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls.log"
    calls.write_text("")
    full_env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "MODEL": "/m",
                "OUT": str(tmp_path / "runs"), "SEEDS": "0", "OBJECTIVES": "contrastive", "COUNTRIES": "USA CHN",
                "CULTURE_DATA_DIR": "/data", **env}
    subprocess.run(["bash", str(REPO / "benchmarks" / "aligner_real_run.sh")], env=full_env, check=True,
                   capture_output=True, text=True)
    return calls.read_text().splitlines()


def test_a_run_at_another_budget_goes_to_culture_align_and_its_steering_matrix_is_redone(tmp_path):
    """The folders of a budget do not name it: a later run at the paper's budget into the same OUT must not
    take the reduced budget's alignment.json as its own (culture-align --resume continues or refuses it)."""
    first = _run_script(tmp_path, POP="8", GENS="3")
    assert [c.split()[0] for c in first] == ["align", "align", "steer"]
    full = _run_script(tmp_path, POP="32", GENS="30")
    aligns = [c for c in full if c.startswith("align ")]
    assert len(aligns) == 2 and all("--population 32 --generations 30" in c and c.endswith("--resume")
                                    for c in aligns)
    assert [c.split()[0] for c in full] == ["align", "align", "steer"]  # the matrix of the new prompts
    # the same budget again: culture-align finds both runs finished, and the matrix is kept
    assert [c.split()[0] for c in _run_script(tmp_path, POP="32", GENS="30")] == ["align", "align"]


def test_a_killed_steering_step_is_resumed_unless_a_prompt_is_newer_than_its_stored_answers(tmp_path):
    """culture-steer stores each model's answers as it goes (steering.partial.json): the next run of the script
    continues it with --resume; a prompt fitted again since then makes it start afresh (--overwrite), as
    --resume would refuse the changed checkpoint."""
    import time

    first = _run_script(tmp_path)
    assert first[-1].startswith("steer ") and " --overwrite " in first[-1]
    steering = tmp_path / "runs" / "contrastive" / "seed0" / "steering"
    (steering / "steering.json").unlink()  # as if killed after storing some answers
    partial = steering / "steering.partial.json"
    partial.write_text("{}")
    again = _run_script(tmp_path)
    assert [c.split()[0] for c in again] == ["align", "align", "steer"]
    assert " --resume " in again[-1] and "--overwrite" not in again[-1]
    (steering / "steering.json").unlink()
    time.sleep(0.01)
    usa = tmp_path / "runs" / "contrastive" / "seed0" / "USA" / "alignment.json"
    partial.write_text("{}")
    os.utime(usa, (partial.stat().st_mtime + 5, partial.stat().st_mtime + 5))  # the USA prompt fitted again since
    last = _run_script(tmp_path)
    assert " --overwrite " in last[-1] and "--resume" not in last[-1]


def test_order_reaches_both_culture_align_and_culture_steer(tmp_path):
    calls = _run_script(tmp_path, ORDER="balanced")
    assert len(calls) == 3 and all("--option-order balanced" in c for c in calls)
    (tmp_path / "default").mkdir()
    assert all("--option-order listed" in c for c in _run_script(tmp_path / "default"))
    # a worst-order search: the steering matrix asks both orders
    (tmp_path / "worst").mkdir()
    calls = _run_script(tmp_path / "worst", ORDER="worst")
    assert [c.split()[0] for c in calls] == ["align", "align", "steer"]
    assert all("--option-order worst" in c for c in calls[:2]) and "--option-order balanced" in calls[2]



def test_a_half_precision_search_is_steered_in_float32(tmp_path):
    """DTYPE=bfloat16 (the GPU budget) went to culture-steer too, which scores in float32 only (its recorded lm_eval
    commands give its numbers only there) and refuses --dtype bfloat16: the search takes DTYPE, the matrix none."""
    calls = _run_script(tmp_path, DTYPE="bfloat16")
    assert [c.split()[0] for c in calls] == ["align", "align", "steer"]
    assert all("--dtype bfloat16" in c for c in calls[:2]) and "--dtype" not in calls[2]

# lm_eval's stand-in for benchmarks/vsm13_order.sh: records its model arguments, writes a result file
FAKE_LM_EVAL = """#!/usr/bin/env bash
prev=""; out=""; args=""
for a in "$@"; do [ "$prev" = "--output_path" ] && out="$a"; [ "$prev" = "--model_args" ] && args="$a"; prev="$a"; done
echo "$args" >> "$CALLS"
mkdir -p "$out/model" && echo "{}" > "$out/model/results_2026.json"
"""


def test_vsm13_order_asks_each_distinct_prompt_once_and_skips_what_it_has(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "lm_eval").write_text(FAKE_LM_EVAL)
    (bin_dir / "lm_eval").chmod(0o755)
    for name, weights in (("a/USA", b"one"), ("a/CHN", b"one"), ("b/USA", b"two")):  # a/USA and a/CHN: one prompt
        (tmp_path / "ckpt" / name).mkdir(parents=True)
        (tmp_path / "ckpt" / name / "adapter_model.safetensors").write_bytes(weights)
    (tmp_path / "data").mkdir()
    calls = tmp_path / "calls.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "MODEL": "/m",
           "OUT": str(tmp_path / "out"), "CULTURE_DATA_DIR": str(tmp_path / "data")}
    run = lambda: subprocess.run(["bash", str(REPO / "benchmarks" / "vsm13_order.sh"), str(tmp_path / "ckpt")],
                                 env=env, check=True, capture_output=True, text=True).stdout
    first = run()
    asked = calls.read_text().splitlines()
    assert asked == ["pretrained=/m,dtype=float32", f"pretrained=/m,dtype=float32,peft={tmp_path}/ckpt/a/CHN",
                     f"pretrained=/m,dtype=float32,peft={tmp_path}/ckpt/b/USA"]
    assert first.count(": asked") == 3 and sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir())[0] == "plain"
    assert run().count(": done") == 3 and len(calls.read_text().splitlines()) == 3  # a second run asks nothing
