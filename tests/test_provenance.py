"""Every result file says where it was computed: versions, processor, threads (provenance.py)."""

from importlib import metadata

import torch

from culture_tasks import provenance


def test_environment_names_the_versions_and_threads_in_use():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        env = provenance.environment("cpu")
    finally:
        torch.set_num_threads(threads)
    assert env["torch_threads"] == 1 and env["device"] == "cpu" and env["accelerator"] is None
    assert env["versions"]["torch"] == metadata.version("torch") == torch.__version__
    assert env["versions"]["lm_eval"] == metadata.version("lm_eval")
    assert env["versions"]["tokenizers"] == metadata.version("tokenizers")  # it decides the token ids
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert not torch.cuda.is_initialized()  # asking about a CPU run never touches CUDA


def test_describe_is_one_line_naming_processor_threads_and_versions():
    env = {"cpu": "Xeon", "cpu_capability": "AVX2", "accelerator": None, "device": "cpu", "torch_threads": 2,
           "versions": {"torch": "2.13.0", "peft": None, "lm_eval": "0.4.13"}}
    assert provenance.describe(env) == ["Computed on Xeon, AVX2 (cpu, 2 torch threads); torch 2.13.0, lm_eval 0.4.13.",
                                        ""]
    env["accelerator"], env["device"] = "NVIDIA H200", "cuda:0"
    assert provenance.describe(env)[0].startswith("Computed on NVIDIA H200 (cuda:0, 2 torch threads);")
    assert provenance.describe(None) == []  # files written before the field existed
