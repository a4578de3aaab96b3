"""Two CPU processes on gloo (torchrun) give the single-process results: lm-eval, the aligner, the LoRA trainer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from aligners import distributed
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is not available in this torch build")

# lm-eval 0.4.13's HFLM splits the documents over processes only when it counts more than one GPU
# (huggingface.py: `elif gpus > 1:`); on CPU every process would evaluate everything. This shim has it count
# two, so that lm-eval's own data-parallel branch (its rank and world size from accelerate) and its evaluator's
# (request split, padding, gathering of metrics and samples) run on gloo.
LM_EVAL_DP = """
import os, sys, torch
torch.cuda.device_count = lambda: 2
from lm_eval.models.huggingface import HFLM
_ll = HFLM.loglikelihood
def loglikelihood(self, requests, *args, **kwargs):
    assert self.world_size == 2, self.world_size
    with open(os.path.join(os.environ["SHARE_LOG"], f"rank{self.rank}.txt"), "a") as f:
        f.write(f"{len(requests)}\\n")
    return _ll(self, requests, *args, **kwargs)
HFLM.loglikelihood = loglikelihood
from lm_eval.__main__ import cli_evaluate
sys.exit(cli_evaluate())
"""

SCORE_SCRIPT = """
import json, os, sys
from aligners import distributed
assert distributed.init_from_env()
out = sys.argv[1]
def score(batch):
    with open(os.path.join(out, f"calls{distributed.rank()}.txt"), "a") as f:
        f.write(json.dumps(batch) + "\\n")
    return [x * x + 0.5 for x in batch]
result = {"seven": distributed.map_shared(score, [[0, 1], [2], [3, 4], [5], [6]]),
          "one": distributed.map_shared(score, [[3]]), "world": distributed.world_size()}
with open(os.path.join(out, f"result{distributed.rank()}.json"), "w") as f:
    json.dump(result, f)
@distributed.main_process_only
def write_once():
    with open(os.path.join(out, "main.txt"), "a") as f:
        f.write(f"rank {distributed.rank()}\\n")
write_once()
got = distributed.from_main({"read": "on rank 0"} if distributed.is_main() else None)
with open(os.path.join(out, f"got{distributed.rank()}.json"), "w") as f:
    json.dump(got, f)
"""


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("WORLD_SIZE", None)
    env.update(extra)
    return env


def _run(args: list[str], **env) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=_env(**env), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _torchrun(*args: str, **env) -> subprocess.CompletedProcess:
    return _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args], **env)


@contextmanager
def _one_thread():
    """Torch on one CPU thread, as each torchrun process has (OMP_NUM_THREADS=1): a one-process run made here
    to compare with theirs, since a CPU matmul's last bits can depend on how many threads split it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train_here(*args: str) -> None:
    """``culture-train`` in this process (on one thread): the one-process run a launch is compared with."""
    from trainers.cli import main as train_main

    with _one_thread():
        assert train_main(list(args)) == 0


def test_share_deals_items_round_robin_and_covers_every_item_once():
    assert [list(distributed.share(7, 2, r)) for r in range(2)] == [[0, 2, 4, 6], [1, 3, 5]]
    assert [list(distributed.share(2, 3, r)) for r in range(3)] == [[0], [1], []]
    assert [list(distributed.share(9, 3, r)) for r in range(3)] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]


def test_one_process_computes_everything_itself():
    assert distributed.world_size() == 1 and distributed.is_main()  # no WORLD_SIZE: no process group
    assert distributed.map_shared(lambda b: [2.0 * x for x in b], [[1, 2], [3]]) == [[2.0, 4.0], [6.0]]
    assert distributed.main_process_only(lambda: "wrote")() == "wrote"


@pytest.fixture(scope="module")
def shared_under_torchrun(tmp_path_factory) -> Path:
    """The folder ``SCORE_SCRIPT`` wrote its files into, run by two processes. Read only."""
    folder = tmp_path_factory.mktemp("shared")
    script = folder / "score.py"
    script.write_text(SCORE_SCRIPT)
    _torchrun(str(script), str(folder))
    return folder


def test_two_processes_compute_their_shares_and_gather_in_item_order(shared_under_torchrun):
    folder = shared_under_torchrun
    expected = {"seven": [[0.5, 1.5], [4.5], [9.5, 16.5], [25.5], [36.5]], "one": [[9.5]], "world": 2}
    assert json.loads((folder / "result0.json").read_text()) == expected
    assert json.loads((folder / "result1.json").read_text()) == expected
    # rank 0 computed batches 0, 2, 4 and the single one; rank 1 batches 1 and 3, and nothing of the single one
    assert (folder / "calls0.txt").read_text().split("\n")[:4] == ["[0, 1]", "[3, 4]", "[6]", "[3]"]
    assert (folder / "calls1.txt").read_text() == "[2]\n[5]\n"
    assert (folder / "main.txt").read_text() == "rank 0\n"


ALIGN_ARGS = ["--country", "USA", "--population", "6", "--subspace-dim", "4", "--seed", "3", "--no-baselines",
              "--batch-size", "64"]


@pytest.fixture(scope="module")
def aligned_one(tiny_model, data_root, tmp_path_factory) -> Path:
    """``ALIGN_ARGS``, three generations, run in this process (on one thread, ``_one_thread``). Read only."""
    from aligners.cli import main as align_main

    one = tmp_path_factory.mktemp("aligned") / "one"
    with _one_thread():
        assert align_main(["--model", str(tiny_model), "--data-dir", str(data_root), *ALIGN_ARGS,
                           "--generations", "3", "--output", str(one)]) == 0
    return one


@pytest.fixture(scope="module")
def aligned_two(tiny_model, data_root, tmp_path_factory) -> Path:
    """``ALIGN_ARGS``, three generations, under torchrun on two processes, given --resume into an output that
    does not exist yet (a new run, as on one process). Read only."""
    two = tmp_path_factory.mktemp("aligned") / "two"
    _torchrun("-m", "aligners.cli", "--model", str(tiny_model), "--data-dir", str(data_root), *ALIGN_ARGS,
              "--generations", "3", "--output", str(two), "--resume")
    return two


def test_aligner_under_torchrun_makes_the_single_process_run(aligned_one, aligned_two):
    # 6 candidates x 24 items in 4 shares (the three stem groups' 60, 24 and 24 rows, the six other
    # items' 36): the two processes run shares {0, 2} and {1, 3}, each formed exactly as the single
    # process forms it.
    one, two = aligned_one, aligned_two
    # one set of outputs, no leftovers of a second writer
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    state1, state2 = (json.loads((d / "state.json").read_text()) for d in (one, two))
    assert state1["settings"].pop("output") == str(one) and state2["settings"].pop("output") == str(two)
    assert state2 == state1  # every candidate's loss of every generation, exactly
    assert len(state2["fitness"]) == 3 and len(state2["fitness"][0]) == 6
    assert (two / "adapter_model.safetensors").read_bytes() == (one / "adapter_model.safetensors").read_bytes()
    summary1, summary2 = (json.loads((d / "alignment.json").read_text()) for d in (one, two))
    assert (summary1["world_size"], summary2["world_size"]) == (1, 2)
    assert summary2["history"] == summary1["history"] and summary2["loss"] == summary1["loss"]


def _lm_eval_outputs(folder: Path) -> tuple[dict, dict]:
    (run,) = [p for p in folder.iterdir() if p.is_dir()]
    (results,) = run.glob("results_*.json")
    samples = {}
    for path in run.glob("samples_*.jsonl"):
        task = path.name[len("samples_"):].rsplit("_", 1)[0]
        samples[task] = [json.loads(line) for line in path.read_text().splitlines()]
    return json.loads(results.read_text())["results"], samples


def test_lm_eval_data_parallel_on_two_processes_gives_the_single_process_metrics(tiny_model, data_root, tmp_path,
                                                                                  monkeypatch):
    from lm_eval.__main__ import cli_evaluate

    tasks = ["culturellm_arabic_spam", "wvs_usa", "vsm13_usa"]
    # batch size 1: every request is computed with the same shapes in both runs, so the
    # log-likelihoods are bit-identical and only the order of the gathered per-document values differs
    args = ["--model", "hf", "--model_args", f"pretrained={tiny_model},dtype=float32", "--include_path",
            str(REPO / "culture_tasks"), "--tasks", ",".join(tasks), "--limit", "24", "--metadata",
            json.dumps({"data_dir": str(data_root)}), "--batch_size", "1", "--log_samples"]
    script, shares = tmp_path / "lm_eval_dp.py", tmp_path / "shares"
    script.write_text(LM_EVAL_DP)
    shares.mkdir()
    # the one-process run: lm-eval's own command line, in this process
    monkeypatch.setattr(sys, "argv", ["lm_eval", *args, "--output_path", str(tmp_path / "one")])
    with _one_thread():
        cli_evaluate()
    # ACCELERATE_USE_CPU: accelerate's state becomes MULTI_CPU (gloo) under torchrun
    _torchrun(str(script), *args, "--output_path", str(tmp_path / "two"), ACCELERATE_USE_CPU="1",
              SHARE_LOG=str(shares))

    res1, samples1 = _lm_eval_outputs(tmp_path / "one")
    res2, samples2 = _lm_eval_outputs(tmp_path / "two")
    counts = [sum(int(n) for n in (shares / f"rank{r}.txt").read_text().split()) for r in (0, 1)]
    # documents go to ranks by doc_id % 2; the rank with fewer requests of a task pads with copies
    own = {t: [sum(len(s["arguments"]) for s in docs if s["doc_id"] % 2 == r) for r in (0, 1)]
           for t, docs in samples1.items()}
    assert counts == [sum(max(n) for n in own.values())] * 2
    assert max(counts) < sum(sum(n) for n in own.values()) * 0.6  # each process ran about half

    assert set(res2) == set(res1) == set(tasks)
    for task in tasks:
        assert set(res2[task]) == set(res1[task])
        for key, value in res1[task].items():
            if isinstance(value, float):
                assert res2[task][key] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), (task, key)
            else:
                assert res2[task][key] == value, (task, key)
        # every document logged exactly once, with the same requests, responses and metrics
        ids = [s["doc_id"] for s in samples2[task]]
        assert sorted(ids) == list(range(24)) == [s["doc_id"] for s in samples1[task]]
        # lm-eval appends the padding copies' responses to the rank's last request (`resps` of the last
        # document of the last task gets a second, identical entry); filtered_resps and metrics use the first
        for got, want in zip(sorted(samples2[task], key=lambda s: s["doc_id"]), samples1[task]):
            assert [r[:1] for r in got.pop("resps")] == want.pop("resps")
            assert got == want


def _lora_config(data_root, folder: Path, *, max_steps: int, logging_steps: int, save_steps: int = 1000,
                 keep_checkpoints: bool = False) -> Path:
    """A LoRA run's config (English rows, the tiny model; dropout 0, as dropout masks are drawn per process)."""
    from tests.tiny_model import build_tiny_model
    from trainers.examples import build_examples

    model = build_tiny_model(folder / "model", initializer_range=0.3)
    data = folder / "english.jsonl"
    build_examples("english", data_dir=str(data_root)).write(data)
    config = folder / "lora.yaml"
    config.write_text(f"model: {model}\ndata: [{data}]\nrank: 4\nalpha: 8\ndropout: 0.0\nlearning_rate: 0.02\n"
                      f"max_steps: {max_steps}\nlogging_steps: {logging_steps}\nsave_steps: {save_steps}\nwarmup: 0\n"
                      f"chat_template: true\nseed: 0\nkeep_checkpoints: {str(keep_checkpoints).lower()}\n")
    return config


def _lora_on_one_and_two_processes(config: Path, folder: Path, *, max_steps: int):
    """The same LoRA run (``_lora_config``) with one global batch of 10: 10 x 1 process (in this process) and
    5 per process x 2 processes. Their output folders; the two processes print one summary (each printed its
    own)."""
    one, two = folder / "one", folder / "two"
    _train_here("lora", "--config", str(config), "--batch-size", "10", "--output", str(one))
    proc = _torchrun("-m", "trainers.cli", "lora", "--config", str(config), "--batch-size", "5", "--output", str(two))
    assert proc.stdout.count(f'\n "steps": {max_steps},\n') == 1  # below the Trainer's own log lines
    return one, two


@pytest.fixture(scope="module")
def lora_six_steps(data_root, tmp_path_factory) -> tuple[Path, Path, Path]:
    """Six steps logged at each, on one and on two processes, checkpoints at steps 3 and 6 kept (for a resume
    to start from): the config, the one-process and the two-process output folders. Read only."""
    folder = tmp_path_factory.mktemp("lora_six")
    config = _lora_config(data_root, folder, max_steps=6, logging_steps=1, save_steps=3, keep_checkpoints=True)
    return config, *_lora_on_one_and_two_processes(config, folder, max_steps=6)


def test_lora_on_two_processes_follows_the_single_process_loss_curve(lora_six_steps):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    config, one, two = lora_six_steps
    s1, s2 = (json.loads((d / "training.json").read_text()) for d in (one, two))
    assert (s1["world_size"], s1["global_batch"], s2["world_size"], s2["global_batch"]) == (1, 10, 2, 10)
    assert [x["step"] for x in s2["losses"]] == [x["step"] for x in s1["losses"]] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(s1["losses"], s2["losses"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    assert s1["losses"][0]["loss"] != pytest.approx(s1["losses"][-1]["loss"], rel=1e-3)  # it did train
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    w1, w2 = (load_file(str(d / "adapter_model.safetensors")) for d in (one, two))
    assert w1.keys() == w2.keys() and w1
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=1e-4, atol=1e-6)
    base = AutoModelForCausalLM.from_pretrained(str(config.parent / "model"), dtype=torch.float32)
    loaded = PeftModel.from_pretrained(base, str(two))
    state = loaded.state_dict()
    key = next(k for k in w2 if "lora_A" in k)
    assert torch.equal(state[key.replace("lora_A.weight", "lora_A.default.weight")], w2[key])


def test_the_fsdp_configuration_without_gpus_runs_data_parallel_and_says_so(data_root, tmp_path):
    # accelerate runs configs/accelerate_fsdp_lora.yaml on CPU processes as DDP without a word (each process
    # holds the whole model): the trainer warns, and training.json records what ran; the losses are one
    # process's, as under torchrun
    config = _lora_config(data_root, tmp_path, max_steps=2, logging_steps=1)
    one, fsdp = tmp_path / "one", tmp_path / "fsdp"
    _train_here("lora", "--config", str(config), "--batch-size", "10", "--output", str(one))
    proc = _run(["-m", "accelerate.commands.launch", "--config_file", str(REPO / "configs" / "accelerate_fsdp_lora.yaml"),
                 "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", "29517",
                 "-m", "trainers.cli", "lora", "--config", str(config), "--batch-size", "5", "--output", str(fsdp)])
    assert "FSDP was asked for (ACCELERATE_USE_FSDP) but accelerate runs MULTI_CPU" in proc.stderr
    s1, s2 = (json.loads((d / "training.json").read_text()) for d in (one, fsdp))
    assert (s1["parallelism"], s2["parallelism"], s2["world_size"], s2["global_batch"]) == ("NO", "MULTI_CPU", 2, 10)
    assert [x["loss"] for x in s2["losses"]] == pytest.approx([x["loss"] for x in s1["losses"]], rel=1e-5)


def test_fsdp_config_is_accepted_by_accelerate(monkeypatch):
    """What `accelerate launch --config_file configs/accelerate_fsdp_lora.yaml` turns into; running it needs GPUs."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    path = REPO / "configs" / "accelerate_fsdp_lora.yaml"
    args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "trainers.cli", "lora"])
    args, _, _ = _validate_launch_command(args)
    assert args.use_fsdp and args.mixed_precision == "bf16"
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.cpu_ram_efficient_loading
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"


def test_lora_on_two_processes_resumes_from_its_checkpoint(lora_six_steps, tmp_path):
    """A two-process run killed after its step-3 checkpoint resumes from that checkpoint (one RNG file per
    process) and ends with the uninterrupted run's adapter and losses."""
    import shutil

    from safetensors.torch import load_file

    config, _, full_run = lora_six_steps
    out = tmp_path / "two"
    shutil.copytree(full_run, out)  # the uninterrupted run stays as it is, for the tests that read it
    full = json.loads((out / "training.json").read_text())
    weights = load_file(str(out / "adapter_model.safetensors"))
    kept = out / "checkpoints" / "checkpoint-3"
    assert sorted(p.name for p in kept.glob("rng_state*")) == ["rng_state_0.pth", "rng_state_1.pth"]
    written = {p.name: p.stat().st_mtime_ns for p in kept.iterdir()}
    # as if the run had died after its step-3 checkpoint
    shutil.rmtree(out / "checkpoints" / "checkpoint-6")
    (out / "adapter_model.safetensors").unlink()
    (out / "training.json").unlink()
    proc = _torchrun("-m", "trainers.cli", "lora", "--config", str(config), "--batch-size", "5", "--output", str(out),
                     "--resume", "true")
    assert "incomplete" not in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in kept.iterdir()} == written  # resumed from it, not rewritten
    resumed = json.loads((out / "training.json").read_text())
    assert resumed["steps"] == 6 and resumed["losses"] == full["losses"]
    again = load_file(str(out / "adapter_model.safetensors"))
    assert again.keys() == weights.keys()
    for key in weights:
        torch.testing.assert_close(again[key], weights[key], rtol=1e-5, atol=1e-7)


def test_a_resumed_aligner_run_on_two_processes_continues_the_main_process_state(aligned_one, tiny_model, data_root,
                                                                                tmp_path):
    """Only the main process reads the run's state on resume and gives it to the others (nodes need no
    shared filesystem): two generations on one process, then a resume to three on two processes (the process
    count is no search setting), equals three generations on one; a resume of the finished run returns on every
    process."""
    from aligners.cli import main as align_main

    args = ["--model", str(tiny_model), "--data-dir", str(data_root), *ALIGN_ARGS]
    one, two = aligned_one, tmp_path / "two"
    with _one_thread():
        assert align_main([*args, "--generations", "2", "--output", str(two)]) == 0
    # the second process does not see the run's files, as on a node without the main one's filesystem
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import os, pathlib\n"
        "if os.environ.get('RANK') == '1':\n"
        "    HIDDEN = ('state.json', 'alignment.json')\n"
        "    exists, read_text = pathlib.Path.exists, pathlib.Path.read_text\n"
        "    pathlib.Path.exists = lambda self, *a, **k: False if self.name in HIDDEN else exists(self, *a, **k)\n"
        "    def hidden_read(self, *a, **k):\n"
        "        if self.name in HIDDEN:\n"
        "            raise FileNotFoundError(self)\n"
        "        return read_text(self, *a, **k)\n"
        "    pathlib.Path.read_text = hidden_read\n")
    pythonpath = os.pathsep.join([str(hide), str(REPO), os.environ.get("PYTHONPATH", "")])
    proc = _torchrun("-m", "aligners.cli", *args, "--generations", "3", "--output", str(two), "--resume",
                     PYTHONPATH=pythonpath)
    assert proc.stderr.count("INFO aligners: resumed USA at generation 2\n") == 1  # the main process's line only
    state1, state2 = (json.loads((d / "state.json").read_text()) for d in (one, two))
    assert state2["fitness"] == state1["fitness"] and state2["population"] == state1["population"]
    assert (two / "adapter_model.safetensors").read_bytes() == (one / "adapter_model.safetensors").read_bytes()
    _torchrun("-m", "aligners.cli", *args, "--generations", "3", "--output", str(two), "--resume",
              PYTHONPATH=pythonpath)  # finished: every process returns


def test_from_main_gives_every_process_the_main_process_object(shared_under_torchrun):
    got = [json.loads((shared_under_torchrun / f"got{r}.json").read_text()) for r in (0, 1)]
    assert got == [{"read": "on rank 0"}] * 2
    assert distributed.from_main(5) == 5  # one process: the object itself


def test_an_aligner_run_given_resume_on_an_empty_output_starts_fresh_on_two_processes(aligned_two):
    """--resume into an output that holds nothing yet is a new run on every process, as on one: the other
    processes follow the main process's reading of the output, not the flag (the run ``aligned_two`` makes;
    test_aligner_under_torchrun_makes_the_single_process_run finds it the one-process run, exactly)."""
    assert len(json.loads((aligned_two / "state.json").read_text())["fitness"]) == 3
    assert json.loads((aligned_two / "alignment.json").read_text())["world_size"] == 2


def test_an_overwritten_aligner_output_is_set_aside_by_the_main_process_only(tiny_model, data_root, tmp_path):
    """--overwrite under torchrun: the main process sets the output aside; another process doing it too
    (here late, after the main one has stored the new run's settings) would remove the new run's files."""
    out = tmp_path / "two"
    out.mkdir()
    (out / "old.txt").write_text("an earlier run\n")
    marker = tmp_path / "cleared_by_rank1"
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(
        "import os, time\n"
        "if os.environ.get('RANK') == '1':\n"
        "    from culture_tasks import outputs\n"
        "    clear = outputs.set_aside\n"
        "    def late_clear(*args, **kwargs):\n"
        f"        open({str(marker)!r}, 'a').write(f'{{args[0]}}\\n')\n"
        "        time.sleep(3)\n"
        "        return clear(*args, **kwargs)\n"
        "    outputs.set_aside = late_clear\n")
    args = ["--model", str(tiny_model), "--country", "USA", "--data-dir", str(data_root), "--population", "4",
            "--subspace-dim", "4", "--seed", "3", "--no-baselines", "--batch-size", "64", "--generations", "1"]
    pythonpath = os.pathsep.join([str(slow), str(REPO), os.environ.get("PYTHONPATH", "")])
    _torchrun("-m", "aligners.cli", *args, "--output", str(out), "--overwrite", PYTHONPATH=pythonpath)
    assert not marker.exists()
    assert not (out / "old.txt").exists()
    assert {"run_settings.json", "state.json", "alignment.json", "adapter_model.safetensors"} <= {
        p.name for p in out.iterdir()}


def test_the_aligner_shares_of_a_generation_are_the_ones_docs_scaling_counts(tiny_model, data_root):
    """docs/scaling.md: VSM13 forms three stem groups (10, 4, 4 items) and six single items; at
    population 64 and batch 64 a generation is 9 shares and 27 forward passes, of which the first of 8
    processes runs 12 (11 + 1); at batch 8 (population / processes) every process runs 27 of 216."""
    from lm_eval.models.huggingface import HFLM

    from aligners.scoring import TaskScorer
    from culture_tasks.paths import task_manager

    lm = HFLM(pretrained=str(tiny_model), device="cpu", dtype="float32", batch_size=8)
    scorer = TaskScorer(lm, "vsm13_usa", task_manager({"data_dir": str(data_root)}))
    assert sorted(len(g.items) for g in scorer.groups) == [4, 4, 10]

    def passes(batch: int) -> list[int]:
        """Forward passes per share: a stem group's share is its stem pass and its rows' batches."""
        units = scorer.units(64, batch)
        return [1 if u.group is None else 1 + len(scorer._suffix_batches(u, batch)) for u in units]

    def per_process(counts: list[int], world: int) -> list[int]:
        return [sum(counts[k] for k in distributed.share(len(counts), world, r)) for r in range(world)]

    assert passes(64) == [11, 5, 5, 1, 1, 1, 1, 1, 1]
    assert per_process(passes(64), 8) == [12, 5, 5, 1, 1, 1, 1, 1]
    assert len(passes(8)) == 72 and sum(passes(8)) == 216
    assert per_process(passes(8), 8) == [27] * 8


def test_lora_train_loss_on_two_processes_is_the_single_process_one_when_the_last_steps_are_not_logged(
        data_root, tmp_path):
    """3 steps logged every 2: step 3's loss is never logged, and train_loss = (logged sum + step 3's loss) / 3
    must take step 3's loss over both processes' halves of the global batch, as a logged loss is (the main
    process's own half alone gave another train_loss in training.json than one process)."""
    config = _lora_config(data_root, tmp_path, max_steps=3, logging_steps=2)
    one, two = _lora_on_one_and_two_processes(config, tmp_path, max_steps=3)
    s1, s2 = (json.loads((d / "training.json").read_text()) for d in (one, two))
    assert [x["step"] for x in s2["losses"]] == [x["step"] for x in s1["losses"]] == [2]
    assert s2["losses"][0]["loss"] == pytest.approx(s1["losses"][0]["loss"], rel=1e-5)
    assert s2["train_loss"] == pytest.approx(s1["train_loss"], rel=1e-5)


@pytest.mark.parametrize("rank", ["0", "1"])
def test_commands_that_do_not_share_their_work_refuse_several_processes(tmp_path, monkeypatch, capsys, rank):
    """Under torchrun every process runs the command; only the main one holds the output's lock, so another one
    claimed the same output unguarded (culture-train kfold under 2 processes: whichever wrote its settings first
    made the other stop at "not empty"). Each such command stops at once in every process, writing nothing."""
    from culture_tasks.steering import main as steer_main
    from trainers.cli import main as train_main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    out = tmp_path / "out"
    fix = "torchrun / accelerate launch started 2 (WORLD_SIZE=2), each of which would run all of it into the same output"
    for step in ("kfold", "augment", "data", "kfold-summary"):
        assert train_main([step, "--output", str(out)]) == 2
        assert capsys.readouterr().err == (f"culture-train {step}: culture-train {step} runs in one process, but {fix}; "
                                           f"run culture-train {step} without a launcher\n")
    assert steer_main(["--model", str(tmp_path / "m"), "--output", str(out), "--target", "usa=persona"]) == 2
    assert capsys.readouterr().err == f"culture-steer: culture-steer runs in one process, but {fix}; run culture-steer " \
                                      "without a launcher\n"
    assert not out.exists()


def test_an_evaluation_split_over_several_nodes_stops_before_any_document_is_scored(data_root, monkeypatch):
    """lm-eval 0.4.13's hf backend gives a process its rank on its own node (``local_process_index``) out of the
    whole launch: on 2 nodes of 2 processes, the second node's processes take ranks 0 and 1 of 4 again, both nodes
    score documents 0, 4, 8, ... and 1, 5, 9, ..., none scores 2, 3, 6, 7, ..., and the run fails when it gathers
    the results (two torchrun nodes of one process each on gloo: ValueError in gather_object on the second, after all
    the scoring). The tasks refuse that split; on one node the split is lm-eval's and stays as it is."""
    from lm_eval.tasks import get_task_dict

    from culture_tasks.paths import task_manager
    from culture_tasks.task import SplitOverNodes

    task = get_task_dict(["vsm13_usa"], task_manager({"data_dir": str(data_root)}))["vsm13_usa"]
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(SplitOverNodes) as err:
        task.build_all_requests(rank=0, world_size=4)
    assert str(err.value) == (
        "vsm13_usa: this evaluation is split over 4 processes on several nodes (2 on this one), and lm-eval 0.4.13's "
        "hf backend numbers them by their rank on their own node, so every node would score the same documents and "
        "the run would fail when gathering them; run it on one node (accelerate launch --num_processes 2), or give "
        "each node its own --tasks")
    task.build_all_requests(rank=0, world_size=1)  # tensor parallelism (tp_plan): every process runs every document
    assert sorted({i.doc_id for i in task.instances}) == list(range(24))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # one node of 4 processes
    task.build_all_requests(rank=2, world_size=4)
    assert sorted({i.doc_id for i in task.instances}) == [2, 6, 10, 14, 18, 22]


def test_a_launch_on_a_machine_with_gpus_runs_the_aligner_on_cuda_only(tiny_model, data_root, tmp_path, monkeypatch,
                                                                       capsys):
    """Under a launch of several processes with CUDA there, lm-eval's HFLM takes accelerate's device (the process's
    GPU) over the one it is given (huggingface.py: "device ... will be overridden"): culture-align's default
    --device cpu recorded cpu, and its CPU kernels, for a search on the GPUs. Refused before the model loads."""
    from aligners.cli import main as align_main
    from culture_tasks.cli_args import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = ["--model", str(tiny_model), "--country", "USA", "--data-dir", str(data_root), "--output", str(tmp_path / "out")]
    assert align_main(args) == 2
    assert capsys.readouterr().err == (
        "culture-align: --device cpu: under torchrun / accelerate launch on a machine with GPUs, lm-eval's model "
        "wrapper puts each process's model on its own GPU whatever --device says, so the run would record cpu for "
        "work done on cuda:<local rank>; pass --device cuda, or hide the GPUs (CUDA_VISIBLE_DEVICES=) to run on "
        "the CPU\n")
    with pytest.raises(ValueError, match=r"^--device cuda:1: under torchrun"):
        check_device("cuda:1")
    check_device("cuda")
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: HFLM uses the device it is given
    check_device("cpu")
    check_device("cuda:1")
    assert not (tmp_path / "out").exists()
