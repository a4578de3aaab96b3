"""Soft-prompt alignment on the tiny model: it optimises, it resumes exactly, and lm-eval agrees."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aligners.cli import main as align_main
from aligners.cli import parse_args
from aligners.optimizers import CMAES, OPTIMIZERS, DifferentialEvolution, register_optimizer
from culture_tasks.outputs import claim_output
from tests.lm_eval_helpers import evaluate
from tests.tiny_model import build_tiny_model, damaged_copy

FAST = ["--population", "6", "--generations", "3", "--subspace-dim", "4", "--seed", "3", "--no-baselines"]


def _align(model, out, *extra):
    return align_main(["--model", str(model), "--country", "USA", "--output", str(out), *FAST, *extra])


def _aligned_args(model, out, data_root):
    return ["--model", str(model), "--country", "USA", "--output", str(out), "--data-dir", str(data_root),
            "--population", "8", "--generations", "4", "--subspace-dim", "8", "--bound", "4", "--seed", "0"]


@pytest.fixture(scope="module")
def aligned(tiny_model, data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("aligned") / "usa"
    assert align_main(_aligned_args(tiny_model, out, data_root)) == 0
    return out


@pytest.fixture(scope="module")
def aligned_results(aligned, tiny_model, data_root):
    """What stock lm_eval reports for the ``aligned`` checkpoint on its task, in both option orders."""
    return evaluate(tiny_model, ["vsm13_usa", "vsm13_usa_reversed"], data_root, peft=str(aligned))["results"]


def _shared_run(tmp_path_factory, data_root, tiny_model, name, *extra):
    """A FAST run made once for the tests of this module that start from it (as each test would make it:
    CULTURE_DATA_DIR set to the data root); a test that resumes or edits it works on a copy (``_copy_of``)."""
    out = tmp_path_factory.mktemp(name) / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CULTURE_DATA_DIR", str(data_root))
        assert _align(tiny_model, out, *extra) == 0
    return out


def _copy_of(run, out):
    """A copy of a shared run at ``out``: its settings name no output folder, so it resumes there as it is."""
    import shutil

    shutil.copytree(run, out)
    return out


@pytest.fixture(scope="module")
def one_generation(tiny_model, data_root, tmp_path_factory):
    """A finished FAST run of one generation: the run the refused resumes below start from."""
    return _shared_run(tmp_path_factory, data_root, tiny_model, "one_generation", "--generations", "1")


@pytest.fixture(scope="module")
def three_generations(tiny_model, data_root, tmp_path_factory):
    """A finished FAST run (three generations) with the default objective named."""
    return _shared_run(tmp_path_factory, data_root, tiny_model, "three_generations", "--objective", "contrastive")


@pytest.fixture(scope="module")
def searched(tiny_model, data_root, tmp_path_factory):
    """A FAST run of 4 generations and one "interrupted" after 2 (both finished runs): what the resume tests
    compare a resumed run with, and resume (a copy of) the shorter one to."""
    return (_shared_run(tmp_path_factory, data_root, tiny_model, "full", "--generations", "4"),
            _shared_run(tmp_path_factory, data_root, tiny_model, "part", "--generations", "2"))


def test_optimiser_lowers_the_loss(aligned):
    summary = json.loads((aligned / "alignment.json").read_text())
    state = json.loads((aligned / "state.json").read_text())
    start = state["fitness"][0][0]  # z = 0: the initial prompt P0 itself
    assert summary["history"][-1]["best_so_far"] < start
    assert [h["generation"] for h in summary["history"]] == [1, 2, 3, 4]
    assert (aligned / "loss_curve.png").stat().st_size > 1000
    report = summary["report"]
    assert set(report["vsm13_l1"]) == {"plain", "persona", "de"}
    assert set(report["wvs"]["plain"]) == {"wvs_jsd", "wvs_w1", "wvs_majority", "wvs_jsd_ci", "wvs_w1_ci",
                                           "wvs_majority_ci"}
    assert "de" in report["vsm13_l1_reversed"]
    # the prompt's place with the options reversed, the order the search did not see
    reversed_ = report["other_orders"]["reversed"]
    assert set(report["other_orders"]) == {"reversed"} and reversed_["task"] == "vsm13_usa_reversed"
    assert set(reversed_["comparison"]) == {"plain", "de"} and reversed_["comparison"]["de"]["target"] == "USA"
    env = summary["environment"]  # where the numbers were computed, beside the settings that made them
    assert env["device"] == "cpu" and env["versions"]["torch"] == torch.__version__ and env["torch_threads"] >= 1
    assert "environment" not in json.loads((aligned / "run_settings.json").read_text())  # never compared on resume


def test_checkpoint_loads_with_stock_peft_and_lm_eval_reports_the_same_loss(aligned, aligned_results, tiny_model):
    from peft import PeftConfig

    config = PeftConfig.from_pretrained(str(aligned))
    assert config.peft_type == "PROMPT_TUNING" and config.num_virtual_tokens == 4
    # the initialisation actually used is recorded: the default --init text
    assert config.prompt_tuning_init == "TEXT" and config.tokenizer_name_or_path == str(tiny_model)
    assert config.prompt_tuning_init_text == "Please answer the following survey question."
    weights = load_file(str(aligned / "adapter_model.safetensors"))
    assert list(weights.values())[0].shape == (4, 32)
    umask = os.umask(0)
    os.umask(umask)  # the checkpoint is readable as any new file (safetensors alone writes 0600)
    assert stat.S_IMODE((aligned / "adapter_model.safetensors").stat().st_mode) == 0o666 & ~umask
    summary = json.loads((aligned / "alignment.json").read_text())
    assert summary["objective"] == "contrastive"  # the default
    out = aligned_results["vsm13_usa"]
    # the reported loss is minus the margin lm_eval reports for the checkpoint; its L1 is lm_eval's too
    assert abs(-out["vsm13_margin,none"] - summary["loss"]) <= 1e-3
    assert abs(out["vsm13_l1,none"] - summary["final"]["vsm13_l1"]) <= 1e-3
    assert out["vsm13_margin_ci_low,none"] <= out["vsm13_margin,none"] <= out["vsm13_margin_ci_high,none"]
    assert out["vsm13_rank,none"] == summary["report"]["comparison"]["de"]["rank"]
    # and the soft prompt matters: the plain model scores differently
    assert summary["report"]["comparison"]["plain"]["margin"] != pytest.approx(-summary["loss"], abs=1e-6)


def test_lm_eval_prompt_tuning_loglikelihoods_equal_manual_computation(aligned, tiny_model):
    """Stock `hf` + peft= scores a prompt-tuning adapter as the prompt prepended to the embeddings."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = HFLM(pretrained=str(tiny_model), peft=str(aligned), dtype="float32", device="cpu", batch_size=4)
    pairs = [("Answer the question.\nAnswer:", " A"), ("Yes or no?", " Hard to say"),
             ("A much longer context, to make the batch pad: 1 2 3 4 5 6 7 8 9 10", " B C"), ("Q:", " Never")]
    requests = [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)]
    batched = [ll for ll, _ in lm.loglikelihood(requests)]

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    prompt = list(load_file(str(aligned / "adapter_model.safetensors")).values())[0]
    for (context, continuation), got in zip(pairs, batched):
        # the harness encodes with the tokenizer's special tokens (BOS here); the prompt goes before BOS
        ctx = tok(context)["input_ids"]
        whole = tok(context + continuation)["input_ids"]
        assert ctx[0] == tok.bos_token_id
        cont = whole[len(ctx):]
        with torch.no_grad():
            embeds = torch.cat([prompt[None], model.get_input_embeddings()(torch.tensor([whole]))], dim=1)
            logp = model(inputs_embeds=embeds).logits[0].log_softmax(-1)
        n = prompt.shape[0]
        manual = sum(float(logp[n + len(ctx) - 1 + j, t]) for j, t in enumerate(cont))
        assert got == pytest.approx(manual, abs=1e-4)


def _scored_generations(monkeypatch) -> list[int]:
    """The population size of each generation the search scores from now on (``score_candidates`` counted)."""
    import aligners.align as align

    real, scored = align.score_candidates, []

    def counted(scorer, space, z, *args):
        scored.append(len(z))
        return real(scorer, space, z, *args)

    monkeypatch.setattr(align, "score_candidates", counted)
    return scored


def test_resume_equals_uninterrupted(searched, tiny_model, data_root, tmp_path, monkeypatch):
    """A seeded search started again from generation 1 would end as the uninterrupted run too: the resume must
    also score only the generations state.json does not hold."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    full, part = searched[0], _copy_of(searched[1], tmp_path / "part")  # "interrupted" after 2 generations
    scored = _scored_generations(monkeypatch)
    assert _align(tiny_model, part, "--generations", "4", "--resume") == 0
    assert scored == [6, 6]  # generations 3 and 4 of population 6; 1 and 2 are replayed from state.json
    a, b = (json.loads((p / "alignment.json").read_text()) for p in (full, part))
    assert a["history"] == b["history"] and a["loss"] == b["loss"]
    wa, wb = (load_file(str(p / "adapter_model.safetensors")) for p in (full, part))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_cma_optimizer_runs(tiny_model, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    assert _align(tiny_model, tmp_path / "cma", "--optimizer", "cma") == 0
    assert len(json.loads((tmp_path / "cma/state.json").read_text())["fitness"][0]) == 6


def test_unknown_country_writes_nothing(tiny_model, data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "x"
    assert align_main(["--model", str(tiny_model), "--country", "Atlantis", "--output", str(out)]) == 2
    assert "unknown country 'Atlantis'" in capsys.readouterr().err and not out.exists()


def test_non_empty_output_without_resume_is_refused(tiny_model, data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    (tmp_path / "notes.txt").write_text("keep me")
    assert _align(tiny_model, tmp_path) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "keep me" and len(list(tmp_path.iterdir())) == 1


def test_resume_with_a_model_of_another_hidden_size_is_refused(one_generation, tiny_model, data_root, tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = _copy_of(one_generation, tmp_path / "run")
    before = (out / "state.json").read_text()
    wider = build_tiny_model(tmp_path / "wider", hidden_size=48)
    assert _align(wider, out, "--generations", "2", "--resume") == 2
    err = capsys.readouterr().err
    assert f"other settings (model: saved '{tiny_model}', given '{wider}'; model_fingerprint: saved 'sha256-full:" in err
    assert (out / "state.json").read_text() == before


def test_yaml_config_with_overrides(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("model: /m\ncountry: [USA, CHN]\noutput: /o\npopulation: 12\noptimizer: cma\nsigma0: 0.25\n")
    cfg = parse_args(["--config", str(cfg_file), "--population", "20"])
    assert cfg.countries == ["USA", "CHN"] and cfg.population == 20 and cfg.optimizer == "cma" and cfg.seed == 0
    assert cfg.optimizer_args == {"sigma0": 0.25}
    cfg_file.write_text("model: /m\ncountry: USA\noutput: /o\npopulaton: 3\n")
    unknown = (r"run.yaml: unknown setting\(s\) 'populaton' \(did you mean 'population'\?\); "
               r"valid settings: \[.*'population'")
    with pytest.raises(ValueError, match=unknown):
        parse_args(["--config", str(cfg_file)])


@pytest.mark.parametrize("cls", [DifferentialEvolution, CMAES])
def test_optimizers_minimise_a_quadratic_and_replay_deterministically(cls):
    def run(gens):
        opt = cls(5, population=12, bound=2.0, seed=1)
        fits = []
        for _ in range(gens):
            z = opt.ask()
            f = ((z - 0.7) ** 2).sum(axis=1)
            opt.tell(f)
            fits.append(f.tolist())
        return opt, fits

    opt, fits = run(30)
    assert min(fits[-1]) < 0.05 < min(fits[0])
    replay = cls(5, population=12, bound=2.0, seed=1)
    for f in fits:
        replay.ask()
        replay.tell(f)
    assert (replay.ask() == opt.ask()).all()


def test_vocab_initialisation_is_recorded_as_peft_sample_vocab(tiny_model, tmp_path):
    from peft import PeftConfig
    from transformers import AutoModelForCausalLM

    from aligners.soft_prompt import save_prompt_tuning_adapter

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    prompt = torch.arange(4 * 32, dtype=torch.float32).reshape(4, 32) / 100
    save_prompt_tuning_adapter(model, prompt, tmp_path / "vocab", str(tiny_model), init="vocab")
    config = PeftConfig.from_pretrained(str(tmp_path / "vocab"))
    assert config.prompt_tuning_init == "SAMPLE_VOCAB" and config.prompt_tuning_init_text is None
    saved = list(load_file(str(tmp_path / "vocab" / "adapter_model.safetensors")).values())[0]
    assert torch.equal(saved, prompt)  # the weights are the searched prompt, not peft's own initialisation


def _tiny_gemma2(tiny_model):
    """A random Gemma2 on the tiny tokenizer: its input embedding layer multiplies the table by sqrt(hidden)."""
    import transformers
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    config = transformers.Gemma2Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=256, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    return transformers.Gemma2ForCausalLM(config).eval(), tok


def test_the_initial_prompt_is_the_text_as_the_model_embeds_it(tiny_model):
    """P0 and the projection's scale follow the embedding layer's output, which is what the model reads
    for a token and what peft prepends the prompt to: Gemma's layer scales its table by sqrt(hidden)."""
    from transformers import AutoModelForCausalLM

    from aligners.soft_prompt import SoftPromptSpace

    text = "Please answer the following survey question."
    gemma, tok = _tiny_gemma2(tiny_model)
    llama = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    for model, scale in ((gemma, 32 ** 0.5), (llama, 1.0)):
        layer = model.get_input_embeddings()
        space = SoftPromptSpace(layer, virtual_tokens=4, subspace_dim=4, seed=0, init="text", init_ids=ids)
        start = space.prompts(torch.zeros(1, 4))[0]  # z = 0: the initial prompt itself
        table = layer.weight.detach()
        assert torch.allclose(start, table[ids[:4]] * scale, rtol=1e-6, atol=0)
        with torch.no_grad():  # the text as the model reads it
            assert torch.allclose(start, layer(torch.tensor(ids[:4])), rtol=1e-6, atol=0)
        # z = 1 moves a vector by about one standard deviation of the embeddings the model reads
        want = float(table.std()) * scale / 4 ** 0.5
        assert float(space.projection.std()) == pytest.approx(want, rel=0.1)


def test_a_damaged_embedding_row_neither_scales_the_search_nor_starts_it():
    """A NaN row of a token the prompt does not start from made the projection's scale NaN (every
    candidate NaN, reported as soft prompts overflowing: 'use a smaller --bound'); the scale is now the
    spread of the finite rows. A NaN row the prompt starts from is a one-line error naming the token."""
    from aligners.soft_prompt import SoftPromptSpace

    layer = torch.nn.Embedding(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 2.0], [4.0, 6.0], [float("nan"), 1.0]]))
    space = SoftPromptSpace(layer, virtual_tokens=1, subspace_dim=1, seed=0, init="text", init_ids=[1])
    # std (ddof 1) of 0, 2, 4, 6: sqrt(20 / 3); the projection is randn * std / sqrt(k), k = 1
    gen = torch.Generator().manual_seed(0)
    want = torch.randn(2, 1, generator=gen) * (20 / 3) ** 0.5
    assert torch.allclose(space.projection, want, rtol=1e-6, atol=0)
    assert space.p0.tolist() == [[4.0, 6.0]]
    with pytest.raises(ValueError, match=r"NaN or infinite embedding for token id\(s\) \[2\] of the initial prompt"):
        SoftPromptSpace(layer, virtual_tokens=2, subspace_dim=1, seed=0, init="text", init_ids=[0, 2])


_TABLE_PEAK = """
import resource, torch
from aligners.soft_prompt import SoftPromptSpace
layer = torch.nn.Embedding(131072, 256, dtype=torch.bfloat16)  # 16 reads of the layer (TABLE_CHUNK rows each)
with torch.no_grad():
    torch.nn.init.normal_(layer.weight, generator=torch.Generator().manual_seed(0))  # in place: no spike
    layer.weight[5, 3] = float("nan")  # a damaged row: the scale is the spread of the others
pages = int(open("/proc/self/statm").read().split()[1])  # resident now
start = max(pages * resource.getpagesize(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
SoftPromptSpace(layer, virtual_tokens=4, subspace_dim=8, seed=0, init="vocab")
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - start) / (131072 * 256 * 4))
"""


def test_the_embedded_table_takes_little_more_memory_than_its_float32_copy():
    """The search space holds the embeddings the model reads as one float32 table (2 GiB for 128k x 4096
    tokens); reading the layer in chunks kept the chunks and their joined copy, and the scale the finite
    rows and a copy of them: over twice that at the peak. The peak is now the table plus one chunk."""
    import subprocess
    import sys

    # a fresh process: the rise of its peak resident memory is this construction's
    # (glibc maps each block of 64 KiB or more on its own, so that a freed one leaves the resident set)
    out = subprocess.run([sys.executable, "-c", _TABLE_PEAK], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
    assert float(out.stdout) < 1.5  # tables: the float32 copy, plus a chunk of rows at a time


@dataclass
class ToyConfig:
    toy_step: float = field(default=0.5, metadata={"help": "spread of the toy search's proposals"})


class ToySearch:
    """Random search around the best point so far; its first candidate is the centre itself."""

    def __init__(self, dim, *, population, bound, seed, toy_step):
        self.rng, self.size, self.bound, self.step = np.random.default_rng(seed), population, bound, toy_step
        self.centre = np.zeros(dim)

    def ask(self):
        z = self.centre + self.step * self.rng.standard_normal((self.size, self.centre.size))
        z[0] = self.centre
        self._z = np.clip(z, -self.bound, self.bound)
        return self._z.copy()

    def tell(self, fitness):
        self.centre = self._z[int(np.argmin(fitness))]


@pytest.fixture
def toy_optimizer():
    register_optimizer("toy", ToySearch, ToyConfig)  # the only place the toy is named to the aligner
    yield "toy"
    OPTIMIZERS.pop("toy")


def test_a_registered_optimizer_runs_from_the_command_line(toy_optimizer, tiny_model, data_root, tmp_path,
                                                           monkeypatch, capsys):
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "toy"
    assert _align(tiny_model, out, "--optimizer", "toy", "--toy-step", "0.25") == 0
    summary = json.loads((out / "alignment.json").read_text())
    state = json.loads((out / "state.json").read_text())
    assert summary["settings"]["optimizer"] == "toy" and summary["settings"]["toy_step"] == 0.25
    assert "f" not in summary["settings"] and "sigma0" not in summary["settings"]
    assert list(summary["report"]["vsm13_l1"]) == ["toy"]
    assert -summary["final"]["vsm13_margin"] == pytest.approx(summary["loss"], abs=1e-9)  # the default objective
    assert [len(f) for f in state["fitness"]] == [6, 6, 6]
    # the first candidate of every generation is the best point so far, so best_so_far never rises
    assert state["fitness"][1][0] == min(state["fitness"][0]) and state["fitness"][2][0] == min(state["fitness"][1])
    # the final loss is the best candidate scored again on its own (batch of one: equal to within float noise)
    assert summary["loss"] == pytest.approx(min(map(min, state["fitness"])), abs=1e-4)
    # another optimiser's setting is refused, not silently ignored
    assert _align(tiny_model, tmp_path / "de", "--toy-step", "0.1") == 2
    assert "--toy-step is a setting of --optimizer toy, not of de" in capsys.readouterr().err


class RefusingSearch(ToySearch):
    """An optimiser whose own check can only run when it is built, after the model has loaded."""

    def __init__(self, dim, *, population, bound, seed, toy_step):
        raise ValueError(f"the toy refuses subspace dimension {dim}")


def test_an_optimiser_that_fails_to_build_leaves_the_output_new(tiny_model, data_root, tmp_path, monkeypatch, capsys):
    """Nothing is stored before the optimiser exists, so the corrected run is not told "not empty"."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "out"
    register_optimizer("refusing", RefusingSearch, ToyConfig)
    try:
        assert _align(tiny_model, out, "--optimizer", "refusing") == 2
    finally:
        OPTIMIZERS.pop("refusing")
    assert capsys.readouterr().err.endswith("\nculture-align: the toy refuses subspace dimension 4\n")
    assert not (out / "run_settings.json").exists() and claim_output(out) == "new"


@pytest.mark.parametrize("extra, message", [
    (["--target", "95,nan,60,80,36,52"], "--target must be finite numbers, got [nan]"),
    (["--target", "95,25,60,80,36,inf"], "--target must be finite numbers, got [inf]"),
    (["--dtype", "float64"], "argument --dtype: invalid choice: 'float64' (choose from 'float32', 'float16', "
                             "'bfloat16', 'auto')"),
    (["--optimizer", "pso"], "unknown --optimizer 'pso'; registered: cma, de"),
    (["--init", "zeros"], "argument --init: invalid choice: 'zeros'"),
])
def test_config_errors_come_before_the_model_loads(extra, message, tmp_path, capsys):
    out = tmp_path / "out"
    # the model folder does not exist: an error about it would mean the model was being loaded
    assert align_main(["--model", str(tmp_path / "no-model"), "--country", "USA", "--output", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"culture-align: {message}") and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("model, reason", [
    ("no-org/no-such-model", "no model config could be read"),  # a hub id that is not there (offline here)
    ("folder", "no model config could be read"),  # a folder without config.json
])
def test_a_model_without_a_readable_config_is_a_one_line_error_before_anything_is_written(model, reason, tmp_path,
                                                                                          capsys, monkeypatch, data_root):
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    if model == "folder":
        model = str(tmp_path / "folder")
        (tmp_path / "folder").mkdir()
    out = tmp_path / "out"
    assert align_main(["--model", model, "--country", "USA", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"culture-align: --model {model}: {reason}") and err.count("\n") == 1
    assert not out.exists()


def test_a_model_peft_makes_no_prompt_tuning_checkpoint_for_is_refused_before_it_loads(data_root, tmp_path, capsys,
                                                                                        monkeypatch):
    """peft takes a prompt-tuning adapter's attention heads from the model's config; Mamba's has none, and the run
    searched every generation and scored its report before writing the checkpoint failed with peft's line alone."""
    from transformers import MambaConfig

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    model = tmp_path / "mamba"
    MambaConfig(vocab_size=64, hidden_size=32, state_size=8, num_hidden_layers=2).save_pretrained(model)
    _no_model_load(monkeypatch)
    out = tmp_path / "out"
    assert align_main(["--model", str(model), "--country", "USA", "--output", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"culture-align: --model {model}: peft makes no prompt-tuning checkpoint for its mamba config (Please specify "
        "`num_attention_heads` in `peft_config`), so no search could be saved; align a model with attention layers\n")
    assert not out.exists()


def test_chat_template_for_a_tokenizer_without_one_is_a_one_line_error_before_the_model_loads(tiny_model, data_root,
                                                                                               tmp_path, capsys,
                                                                                               monkeypatch):
    import shutil

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    model = tmp_path / "plain"
    shutil.copytree(tiny_model, model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    _no_model_load(monkeypatch)
    out = tmp_path / "out"
    assert align_main(["--model", str(model), "--country", "USA", "--output", str(out), "--chat-template"]) == 2
    assert capsys.readouterr().err == (f"culture-align: --chat-template: the tokenizer of {model} has no chat "
                                       "template; leave out --chat-template\n")
    assert not out.exists()


def test_missing_model_and_unavailable_cuda_are_config_errors(tmp_path, capsys):
    out = tmp_path / "out"
    assert align_main(["--country", "USA", "--output", str(out)]) == 2
    assert capsys.readouterr().err == ("culture-align: the following arguments are required: --model "
                                       "(give them as flags or in the --config file)\n")
    if not torch.cuda.is_available():
        assert align_main(["--model", "m", "--country", "USA", "--output", str(out), "--device", "cuda"]) == 2
        assert capsys.readouterr().err == ("culture-align: --device cuda: CUDA is not available on this machine; "
                                           "use cpu\n")
    assert not out.exists()


def test_nan_target_from_yaml_is_refused(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model: m\ncountry: USA\noutput: o\ntarget: [95, .nan, 60, 80, 36, 52]\n")
    with pytest.raises(ValueError, match=r"--target must be finite numbers, got \[nan\]"):
        parse_args(["--config", str(config)])


def test_optimizer_settings_by_mapping_and_registration_clashes():
    cfg = parse_args(["--model", "m", "--country", "USA", "--output", "o", "--optimizer-args", '{"f": 0.3}'])
    assert cfg.optimizer_args == {"f": 0.3, "cr": 0.9} and cfg.for_country("USA")["f"] == 0.3
    base = ["--model", "m", "--country", "USA", "--output", "o"]
    no_such = r"optimizer 'de' has no setting\(s\) 'sigma0'; its settings: \['f', 'cr'\]"
    with pytest.raises(ValueError, match=no_such):
        parse_args(base + ["--optimizer-args", '{"sigma0": 1}'])
    with pytest.raises(ValueError, match="--f and --optimizer-args give f two values"):
        parse_args(base + ["--optimizer-args", '{"f": 0.3}', "--f", "0.4"])

    @dataclass
    class Clash:
        cr: float = field(default=0.1, metadata={"help": "a name DE already uses"})

    with pytest.raises(ValueError, match=r"optimizer 'clash': setting\(s\) \['cr'\] already belong to 'de'"):
        register_optimizer("clash", ToySearch, Clash)
    with pytest.raises(ValueError, match="optimizer 'de' is already registered"):
        register_optimizer("de", ToySearch, ToyConfig)
    assert set(OPTIMIZERS) == {"de", "cma"}


def test_contrastive_objective_is_the_reported_loss_and_equals_the_objective_of_lm_evals_indices(
        three_generations, tiny_model, data_root, monkeypatch):
    """--objective contrastive: each candidate's loss is the objective of the task's indices; the
    final loss is that objective applied to the indices lm_eval reports for the checkpoint."""
    from aligners.objectives import make_objective
    from culture_tasks.survey.vsm13 import DIMENSIONS, resolve_target

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = three_generations  # FAST with --objective contrastive
    summary = json.loads((out / "alignment.json").read_text())
    assert summary["objective"] == "contrastive" and summary["settings"]["objective"] == "contrastive"
    results = evaluate(tiny_model, ["vsm13_usa"], data_root, peft=str(out))["results"]["vsm13_usa"]
    objective = make_objective("contrastive", resolve_target("USA", None, str(data_root)), data_dir=str(data_root))
    indices = {d: results[f"{d},none"] for d in DIMENSIONS}
    assert summary["loss"] == pytest.approx(objective(indices), abs=1e-3)
    assert summary["loss"] == pytest.approx(-results["vsm13_margin,none"], abs=1e-3)  # lm_eval's own margin
    # the l1 objective of the same indices is another number: the search really used the contrastive one
    assert summary["loss"] != pytest.approx(summary["final"]["vsm13_l1"], abs=1e-3)
    assert min(summary["history"][-1]["best_so_far"], summary["loss"]) <= json.loads(
        (out / "state.json").read_text())["fitness"][0][0]


def test_report_ranks_the_target_among_all_countries(aligned):
    report = json.loads((aligned / "alignment.json").read_text())["report"]
    comparison = report["comparison"]
    # every scored prompt (plain, the persona prompt where the country has one, the fitted one) is ranked
    assert {"plain", "de"} <= set(comparison) == set(report["vsm13_l1"])
    for row in comparison.values():
        assert row["target"] == "USA" and len(row["dims"]) == 6
        assert 1 <= row["rank"] <= row["countries"] and row["reciprocal_rank"] == pytest.approx(1 / row["rank"])


def test_resume_with_another_objective_is_refused(one_generation, tiny_model, data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = _copy_of(one_generation, tmp_path / "run")
    assert _align(tiny_model, out, "--generations", "2", "--resume", "--objective", "l1") == 2
    assert "objective" in capsys.readouterr().err


def test_resume_under_another_batch_size_device_or_shared_stems_is_refused(one_generation, tiny_model, data_root,
                                                                           tmp_path, capsys, monkeypatch):
    """A resume compared neither: alignment.json then recorded only the new values, though the earlier generations
    ran under the old ones (in half precision the batch size changes the losses). A run stored before these were
    compared is checked against its state.json, which records what its last generation ran with."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = _copy_of(one_generation, tmp_path / "run")
    before = (out / "state.json").read_text()
    capsys.readouterr()

    def refused(difference, *extra):
        assert _align(tiny_model, out, "--generations", "2", "--resume", *extra) == 2
        assert capsys.readouterr().err == (
            f"culture-align: --resume: the run in {out} was made with other settings ({difference}); resume with the "
            "saved settings, pass --overwrite to start again, or choose another --output\n")
        assert (out / "state.json").read_text() == before

    refused("batch_size: saved 64, given 8", "--batch-size", "8")
    refused("shared_stems: saved True, given False", "--no-shared-stems")
    settings = json.loads((out / "run_settings.json").read_text())
    (out / "run_settings.json").write_text(json.dumps({**settings, "device": "cuda"}))  # this machine has a cpu only
    refused("device: saved 'cuda', given 'cpu'")
    (out / "run_settings.json").write_text(json.dumps({k: v for k, v in settings.items()
                                                       if k not in ("batch_size", "device", "shared_stems")}))
    refused("batch_size: saved 64, given 8", "--batch-size", "8")
    assert _align(tiny_model, out, "--generations", "2", "--resume") == 0
    assert json.loads((out / "alignment.json").read_text())["settings"]["batch_size"] == 64


def test_a_half_precision_run_resumed_under_other_kernels_is_refused(one_generation, tiny_model, data_root, tmp_path,
                                                                     capsys, monkeypatch):
    """The device's name was compared, not what picks its kernels: a bfloat16 search begun on one GPU model or
    torch release went on under another, its generations mixing two roundings. float32 runs do not store them."""
    import torch

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "run"
    assert "kernels" not in json.loads((one_generation / "run_settings.json").read_text())  # a float32 run
    assert _align(tiny_model, out, "--generations", "1", "--dtype", "bfloat16") == 0
    settings = json.loads((out / "run_settings.json").read_text())
    assert settings["kernels"]["torch"] == torch.__version__ and settings["kernels"]["accelerator"] is None
    (out / "run_settings.json").write_text(json.dumps({**settings, "kernels": {**settings["kernels"],
                                                                               "torch": "2.0.0"}}))
    capsys.readouterr()
    assert _align(tiny_model, out, "--generations", "2", "--resume", "--dtype", "bfloat16") == 2
    assert "other settings (kernels: saved {" in capsys.readouterr().err
    (out / "run_settings.json").write_text(json.dumps({k: v for k, v in settings.items() if k != "kernels"}))
    assert _align(tiny_model, out, "--generations", "2", "--resume", "--dtype", "bfloat16") == 0  # stored before


def test_dtype_auto_records_the_dtype_it_loaded_and_warns_of_half_precision(tiny_model, data_root, tmp_path, caplog,
                                                                             monkeypatch):
    """--dtype auto searched a bfloat16 model without the half-precision warning, and alignment.json said "auto"."""
    import logging

    from culture_tasks.cli_args import HALF_PRECISION_NOTE
    from tests.tiny_model import bfloat16_copy

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    half = bfloat16_copy(tiny_model, tmp_path / "bf16")
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        assert _align(half, tmp_path / "auto", "--generations", "1", "--dtype", "auto") == 0
    assert HALF_PRECISION_NOTE.format(flag="--dtype", dtype="bfloat16") in caplog.text
    summary = json.loads((tmp_path / "auto" / "alignment.json").read_text())
    assert summary["settings"]["dtype"] == "auto" and summary["dtype_loaded"] == "bfloat16"
    caplog.clear()
    assert _align(tiny_model, tmp_path / "f32", "--generations", "1", "--dtype", "auto") == 0
    assert json.loads((tmp_path / "f32" / "alignment.json").read_text())["dtype_loaded"] == "float32"
    assert "half-precision" not in caplog.text


def test_search_uses_shared_stems_and_every_reported_score_is_in_full(tiny_model, data_root, tmp_path, monkeypatch):
    """Shared stems agree with full rows to float rounding only (several L1 points in bfloat16), so the
    numbers written to alignment.json - the final prompt, plain, persona, reversed - are scored in full,
    as lm_eval scores the checkpoint; only the search's candidates use shared stems."""
    import aligners.align as align
    from aligners.scoring import TaskScorer

    calls = []

    class Recording(TaskScorer):
        def __init__(self, *args, shared_stems: bool = True, **kwargs):
            super().__init__(*args, shared_stems=shared_stems, **kwargs)
            self.shared = shared_stems

        def option_loglikelihoods(self, prompts, batch_size):
            calls.append((self.shared, 1 if prompts is None else len(prompts)))
            return super().option_loglikelihoods(prompts, batch_size)

    monkeypatch.setattr(align, "TaskScorer", Recording)
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    assert align_main(["--model", str(tiny_model), "--country", "USA", "--output", str(tmp_path / "usa"),
                       "--population", "6", "--generations", "2", "--subspace-dim", "4", "--seed", "3"]) == 0
    search, report = calls[:2], calls[2:]
    assert search == [(True, 6), (True, 6)]
    assert len(report) >= 4 and all(call == (False, 1) for call in report), report  # final, plain, persona, reversed...


def _no_model_load(monkeypatch):
    """Make loading the model fail the test: the refusals below come before it."""
    import aligners.align as align

    def refuse(cfg):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(align, "load_lm", refuse)


def test_resume_with_fewer_generations_than_the_state_holds_is_refused(three_generations, tiny_model, data_root,
                                                                       tmp_path, capsys, monkeypatch):
    """3 generations saved, --generations 2: the report would describe 3 under the name of 2."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = _copy_of(three_generations, tmp_path / "run")  # FAST: 3 generations
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    _no_model_load(monkeypatch)
    assert _align(tiny_model, out, "--generations", "2", "--resume") == 2
    assert capsys.readouterr().err == (f"culture-align: --resume: the run in {out} has already run 3 generations, "
                                       "more than --generations 2; pass --generations 3 or more, or choose another "
                                       "--output\n")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def _data_root_with_other_hofstede(data_root, root):
    """A data root like ``data_root`` whose Hofstede file differs in one other country's score (the
    target's own scores and the items are the same): the contrastive objective reads every row."""
    root.mkdir()
    for child in data_root.iterdir():
        if child.name != "hofstede":
            (root / child.name).symlink_to(child)
    (root / "hofstede").mkdir()
    name = "6-dimensions-for-website-2015-08-16.csv"
    text = (data_root / "hofstede" / name).read_text(encoding="utf-8-sig")
    assert "AFE;Africa East;64;" in text
    (root / "hofstede" / name).write_text(text.replace("AFE;Africa East;64;", "AFE;Africa East;94;"))
    return root


def test_resume_against_another_hofstede_file_is_refused(one_generation, tiny_model, data_root, tmp_path, capsys,
                                                         monkeypatch):
    from culture_tasks.outputs import file_digest

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = _copy_of(one_generation, tmp_path / "run")
    stored = json.loads((out / "run_settings.json").read_text())
    hofstede = data_root / "hofstede" / "6-dimensions-for-website-2015-08-16.csv"
    assert stored["hofstede_reference"] == file_digest(hofstede)
    other = _data_root_with_other_hofstede(data_root, tmp_path / "other")
    before = (out / "state.json").read_text()
    capsys.readouterr()
    _no_model_load(monkeypatch)
    assert _align(tiny_model, out, "--generations", "2", "--resume", "--data-dir", str(other)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"culture-align: --resume: the run in {out} was made with other settings "
                          f"(hofstede_reference: saved '{file_digest(hofstede)}', given "
                          f"'{file_digest(other / 'hofstede' / hofstede.name)}'); ")
    assert (out / "state.json").read_text() == before


def test_resume_of_a_run_stored_without_the_hofstede_digest_says_how_to_add_it(one_generation, tiny_model, data_root,
                                                                               tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = _copy_of(one_generation, tmp_path / "run")
    stored = json.loads((out / "run_settings.json").read_text())
    digest = stored.pop("hofstede_reference")
    (out / "run_settings.json").write_text(json.dumps(stored))
    capsys.readouterr()
    _no_model_load(monkeypatch)
    assert _align(tiny_model, out, "--generations", "2", "--resume") == 2
    hofstede = data_root / "hofstede" / "6-dimensions-for-website-2015-08-16.csv"
    assert capsys.readouterr().err == (
        f"culture-align: --resume: {out / 'run_settings.json'} predates the stored Hofstede file digest, so the "
        f"reference countries of its objective cannot be checked; if it used {hofstede}, add "
        f"\"hofstede_reference\": \"{digest}\" to that file, or choose another --output\n")


def test_resume_of_a_run_without_its_settings_file_is_refused(one_generation, tiny_model, data_root, tmp_path, capsys,
                                                             monkeypatch):
    """A state.json without run_settings.json (a run from before the settings were stored on their own)
    records neither the data nor the model by content: resumed against another Hofstede file, its later
    generations would search another objective under the first ones' losses."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = _copy_of(one_generation, tmp_path / "run")
    (out / "run_settings.json").unlink()
    before = (out / "state.json").read_text()
    other = _data_root_with_other_hofstede(data_root, tmp_path / "other")
    capsys.readouterr()
    _no_model_load(monkeypatch)
    assert _align(tiny_model, out, "--generations", "2", "--resume", "--data-dir", str(other)) == 2
    assert capsys.readouterr().err == (
        f"culture-align: --resume: {out} holds state.json but no run_settings.json, so the model, data and "
        "Hofstede file of its search cannot be checked; run it again with --overwrite or into another --output\n")
    assert (out / "state.json").read_text() == before and not (out / "run_settings.json").exists()


@pytest.mark.parametrize("name, text, problem", [
    ("state.json", '{"fitness": [[1.0', "is not readable JSON (Expecting ',' delimiter: line 1 column 18 (char 17))"),
    ("state.json", "[]", "holds a JSON list, not an object"),  # was taken for no state: the search started again
    ("state.json", '{"settings": {}}', 'holds no search (the losses of each generation, "fitness", their "history" '
                                      'and the best candidate)'),  # a KeyError
    ("alignment.json", '{"loss": ', "is not readable JSON (Expecting value: line 1 column 10 (char 9))"),
])
def test_a_damaged_state_or_report_is_a_one_line_error_naming_it_on_resume(one_generation, tiny_model, data_root,
                                                                          tmp_path, capsys, monkeypatch, name, text,
                                                                          problem):
    """Every write of state.json and alignment.json is atomic: one that is no such file was damaged outside the run.
    json's error named no file, and a state without its losses stopped the resume with a traceback."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = _copy_of(one_generation, tmp_path / "run")
    (out / name).write_text(text)
    _no_model_load(monkeypatch)
    capsys.readouterr()
    assert _align(tiny_model, out, "--generations", "1", "--resume") == 2
    fix = "restore it, or start again with --overwrite" if name == "state.json" else \
        "restore it, or pass --overwrite to run it again"
    assert capsys.readouterr().err == f"culture-align: --resume: {out / name} {problem}; {fix}\n"
    assert (out / name).read_text() == text


def test_a_bfloat16_run_reports_the_loss_lm_eval_gives_with_the_recorded_command(tiny_model, data_root, tmp_path,
                                                                                  monkeypatch):
    """The search runs in bfloat16; the report is scored in float32, as the recorded command loads the model."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "bf16"
    assert align_main(["--model", str(tiny_model), "--country", "USA", "--output", str(out), "--population", "8",
                       "--generations", "1", "--subspace-dim", "8", "--bound", "4", "--seed", "0", "--dtype",
                       "bfloat16", "--no-baselines"]) == 0
    summary = json.loads((out / "alignment.json").read_text())
    assert "dtype=float32" in summary["lm_eval_command"] and summary["settings"]["dtype"] == "bfloat16"
    results = evaluate(tiny_model, ["vsm13_usa"], data_root, peft=str(out))["results"]["vsm13_usa"]
    assert summary["loss"] == pytest.approx(-results["vsm13_margin,none"], abs=1e-5)
    assert summary["final"]["vsm13_l1"] == pytest.approx(results["vsm13_l1,none"], abs=1e-4)


def test_in_float32_scores_a_float32_copy_and_leaves_the_search_model_as_it_was(tiny_model):
    """The float32 model is loaded from the files (a bfloat16 copy cast up has other weights); the
    bfloat16 search model is the same tensors afterwards."""
    from lm_eval.models.huggingface import HFLM
    from safetensors.torch import load_file as load_weights

    from aligners.align import in_float32
    from aligners.config import AlignConfig

    cfg = AlignConfig(model=str(tiny_model), countries=["USA"], output="o", dtype="bfloat16")
    lm = HFLM(pretrained=str(tiny_model), device="cpu", dtype="bfloat16", batch_size=4)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    files = load_weights(str(tiny_model / "model.safetensors"))
    name = "model.embed_tokens.weight"
    assert not torch.equal(before[name].float(), files[name])  # the file's float32 values are not bfloat16 ones
    seen = in_float32(lm, cfg, lambda full: (full is lm, full.model.dtype, full.model.state_dict()[name].clone()))
    assert seen[0] is False and seen[1] == torch.float32 and torch.equal(seen[2], files[name])
    after = lm.model.state_dict()
    assert all(after[k].dtype == v.dtype == torch.bfloat16 and torch.equal(after[k], v) for k, v in before.items())
    fp32 = HFLM(pretrained=str(tiny_model), device="cpu", dtype="float32", batch_size=4)
    assert in_float32(fp32, cfg, lambda full: full) is fp32  # a float32 search model serves as it is


def _live_lock(folder):
    """The lock file a running culture-align (this very process: alive, on this host) leaves in ``folder``."""
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": "other"}))


def test_a_run_into_one_country_folder_keeps_a_several_country_run_out(tiny_model, data_root, tmp_path, capsys,
                                                                       monkeypatch):
    """--country USA --output mc/usa --resume is running: --country USA CHN --output mc would write mc/usa too."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "mc"
    _live_lock(out / "usa")
    _no_model_load(monkeypatch)
    assert align_main(["--model", str(tiny_model), "--country", "USA", "CHN", "--output", str(out), *FAST,
                       "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"culture-align: {out / 'usa'} is in use by another run (process {os.getpid()} on host ")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["usa", "usa/.lock"]


def test_a_several_country_run_locks_every_country_folder_and_overwrite_keeps_the_locks(tiny_model, data_root,
                                                                                         tmp_path, monkeypatch):
    """While mc is aligned, mc/usa and mc/chn are locked too (a run into mc/usa is refused); --overwrite
    empties them without removing their locks; none is left when the run ends."""
    import aligners.align as align
    from aligners.align import run

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "mc"
    for name in ("usa", "chn"):
        (out / name).mkdir(parents=True)
        (out / name / "alignment.json").write_text("{}")
    seen = {}

    def fake_country(lm, cfg, country, path, manager):
        seen[path.name] = sorted(p.name for p in path.iterdir())
        assert json.loads((path / ".lock").read_text())["pid"] == os.getpid()
        assert align_main(["--model", str(tiny_model), "--country", country, "--output", str(path), *FAST]) == 2
        return {}

    monkeypatch.setattr(align, "load_lm", lambda cfg: None)
    monkeypatch.setattr(align, "align_country", fake_country)
    run(parse_args(["--model", str(tiny_model), "--country", "USA", "CHN", "--output", str(out), "--overwrite"]))
    assert seen == {"usa": [".lock"], "chn": [".lock"]}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["chn", "run_countries.json", "usa"]


def test_a_finished_run_is_kept_as_it_is_on_resume(aligned, tiny_model, data_root, tmp_path, capsys, monkeypatch):
    """--resume of a finished run with baselines: --no-baselines would replace the report (the baseline
    comparison lost) and is refused; the same settings leave every file as it is, without the model."""
    import shutil

    out = tmp_path / "usa"
    shutil.copytree(aligned, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    _no_model_load(monkeypatch)
    assert align_main(_aligned_args(tiny_model, out, data_root) + ["--resume", "--no-baselines"]) == 2
    assert capsys.readouterr().err == (
        f"culture-align: --resume: the run in {out} is finished and its alignment.json was made with other report "
        "settings (baselines: saved True, given False); it is kept as it is: resume with the saved settings, pass "
        "--overwrite to run it again, or choose another --output\n")
    assert align_main(_aligned_args(tiny_model, out, data_root) + ["--resume"]) == 0
    printed, stored = json.loads(capsys.readouterr().out), json.loads(before["alignment.json"])
    assert printed["report"]["vsm13_l1"]["plain"] == stored["report"]["vsm13_l1"]["plain"]
    assert printed["loss_ci"] == stored["loss_ci"] and printed["report"]["vsm13_l1_ci"] == stored["report"]["vsm13_l1_ci"]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_overwrite_never_deletes_the_config_file_inside_the_output(tiny_model, data_root, tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "run"
    out.mkdir()
    config = out / "run.yaml"
    config.write_text(f"model: {tiny_model}\ncountry: USA\noutput: {out}\n")
    (out / "alignment.json").write_text("{}")
    _no_model_load(monkeypatch)
    assert align_main(["--config", str(config), "--overwrite"]) == 2
    assert capsys.readouterr().err == (f"culture-align: output folder {out} holds the input {config}; replacing or "
                                       "filling it could destroy the input, choose another --output\n")
    assert sorted(p.name for p in out.iterdir()) == ["alignment.json", "run.yaml"]
    assert parse_args(["--config", str(config)]).config_file == str(config)
    assert "config_file" not in parse_args(["--config", str(config)]).for_country("USA")


def test_every_reported_number_has_the_interval_lm_eval_reports(aligned, aligned_results, tiny_model, data_root):
    """The report's intervals are the tasks' own: lm_eval gives the same for the checkpoint and the plain model."""
    summary = json.loads((aligned / "alignment.json").read_text())
    report = summary["report"]
    wvs = report["wvs"]["task"]
    fitted = aligned_results
    plain = evaluate(tiny_model, ["vsm13_usa", "vsm13_usa_reversed", "vsm13_usa_persona", wvs], data_root)["results"]

    def ci(results, key):
        return [results[f"{key}_ci_low,none"], results[f"{key}_ci_high,none"]]

    close = lambda a, b: a == pytest.approx(b, abs=1e-3)  # noqa: E731
    for name, results in (("de", fitted), ("plain", plain)):
        assert close(report["vsm13_l1_ci"][name], ci(results["vsm13_usa"], "vsm13_l1"))
        assert close(report["vsm13_l1_reversed_ci"][name], ci(results["vsm13_usa_reversed"], "vsm13_l1"))
        assert close(report["indices_ci"][name]["pdi"], ci(results["vsm13_usa"], "pdi"))
        assert close(report["comparison"][name]["margin_ci"], ci(results["vsm13_usa"], "vsm13_margin"))
        assert close(report["comparison"][name]["rank_ci"], ci(results["vsm13_usa"], "vsm13_rank"))
        low, high = ci(results["vsm13_usa"], "vsm13_rank")  # the reciprocal rank: the rank's bounds, inverted
        assert close(report["comparison"][name]["reciprocal_rank_ci"], [1 / high, 1 / low])
        d_low, d_high = report["comparison"][name]["distance_ci"]  # the item-pair interval of the distance
        assert d_low <= report["comparison"][name]["distance"] <= d_high and d_low < d_high
    for block in report["other_orders"].values():
        assert all({"distance_ci", "reciprocal_rank_ci", "rank_ci", "margin_ci"} <= set(c)
                   for c in block["comparison"].values())
    assert close(report["vsm13_l1_ci"]["persona"], ci(plain["vsm13_usa_persona"], "vsm13_l1"))
    assert close(report["wvs"]["plain"]["wvs_jsd_ci"], ci(plain[wvs], "wvs_jsd"))
    low, high = ci(fitted["vsm13_usa"], "vsm13_margin")  # the contrastive loss is minus the margin
    assert close(summary["loss_ci"], [-high, -low]) and summary["loss_ci"][0] <= summary["loss"] <= summary["loss_ci"][1]
    change = report["change_vs_plain"]["de"]
    assert change["vsm13_l1"] == pytest.approx(report["vsm13_l1"]["de"] - report["vsm13_l1"]["plain"], abs=1e-12)
    assert change["vsm13_l1_ci"][0] <= change["vsm13_l1_ci"][1] and change["margin_ci"][0] <= change["margin_ci"][1]
    assert set(report["change_vs_plain"]) == {"de", "persona"}
    from culture_tasks.survey.vsm13 import vsm13_indices  # what a table over runs resamples: the same item means
    for name in ("plain", "persona", "de"):
        indices = vsm13_indices({int(i): m for i, m in report["item_means"][name].items()})
        assert all(indices[d] == pytest.approx(report["indices"][name][d], abs=1e-9) for d in indices)
    assert report["intervals"]["change_vs_plain"].startswith("item-pair bootstrap, 1000 resamples paired by seed")
    assert report["intervals"]["change_vs_plain"].endswith("a lower bound on the uncertainty (docs/interval_calibration.md)")


def _means(shift=None):
    """Item means 1.2 .. 4.0 (items 1..24); ``shift``: {item: added}."""
    means = {i: 1.2 + (i * 7 % 24) * 0.12 for i in range(1, 25)}
    for item, add in (shift or {}).items():
        means[item] += add
    return means


def test_the_change_against_the_plain_model_has_a_paired_interval():
    """Paired replicates draw the same item pairs for both prompts: a change every replicate shares has
    an interval of width 0, where two separate intervals would overlap widely."""
    from aligners.intervals import change_vs_plain, replicate_indices
    from culture_tasks.survey.compare import Reference
    from culture_tasks.survey.vsm13 import DIMENSIONS, Target

    reference = Reference({c: {d: 10.0 * k + 3 * j for j, d in enumerate(DIMENSIONS)} for k, c in
                           enumerate(["AAA", "BBB", "CCC", "DDD"])}, {})
    far = Target("Far", "FAR", dict.fromkeys(DIMENSIONS, 10_000.0))  # above every replicate: L1 = sum(target - index)
    report = {"vsm13_l1": {"plain": 100.0, "de": 93.0, "persona": 100.0},
              "comparison": {"plain": {"margin": 0.25}, "de": {"margin": 0.5}, "persona": {"margin": 0.25}}}
    # de: every pdi term 3.5 higher (35 x 0.1 on item 7, 25 x 0.14 on item 20): each replicate draws two
    # pdi terms, so its pdi is 7 higher and its L1 7 lower; persona: every item 0.5 higher, no term changes
    means = {"plain": _means(), "de": _means({7: 0.1, 20: 0.14}), "persona": _means(dict.fromkeys(range(1, 25), 0.5))}
    out = change_vs_plain(report, means, {"pdi": 20.0}, far, reference)
    assert out["de"]["vsm13_l1"] == -7.0 and out["de"]["margin"] == 0.25
    assert out["de"]["vsm13_l1_ci"] == pytest.approx([-7.0, -7.0], abs=1e-9)
    assert out["persona"]["vsm13_l1_ci"] == pytest.approx([0.0, 0.0], abs=1e-9)
    assert out["persona"]["margin_ci"] == pytest.approx([0.0, 0.0], abs=1e-9)
    # a replicate's pdi is C + two terms drawn from 35 (m7 - m2) and 25 (m20 - m23): three possible values
    m = _means()
    t1, t2 = 35 * (m[7] - m[2]), 25 * (m[20] - m[23])
    plain = replicate_indices(means["plain"], {"pdi": 20.0})["pdi"]
    assert set(np.round(plain, 9)) == {round(20 + 2 * t1, 9), round(20 + t1 + t2, 9), round(20 + 2 * t2, 9)}
    assert np.percentile(plain, 97.5) - np.percentile(plain, 2.5) == pytest.approx(2 * abs(t1 - t2))  # unpaired: wide


def test_the_margin_change_interval_is_the_prompt_s_margin_minus_the_plain_one():
    """Two dimensions, sigma 3 (pdi of A, B, C: 0, 3, 6) and 4 (idv: 8, 4, 0), so a profile's distance to a country
    is |x - g| / 5 with x = pdi - idv of the profile and g that of the country (the sigma^-2-weighted offset leaves
    |d1 - d2| / sqrt(sigma1^2 + sigma2^2)). g: A -8, B -1, C 6, the target T 1000. With C_pd = 100 every replicate's
    x is 16, 79.6 or 143.2 (pdi 100 + two of -54.6 and 9; idv 2 x -12.6), between the others and T, so its margin
    is (x - mean g) / 5 - (1000 - x) / 5 = (2x - 999) / 5. The prompt adds 3.5 to both pdi terms (x + 7 in every
    replicate): margin + 14 / 5 = 2.8 and L1 (1000 - pdi + |idv|) - 7 in every replicate."""
    from aligners.intervals import change_vs_plain
    from culture_tasks.survey.compare import Reference
    from culture_tasks.survey.vsm13 import Target

    reference = Reference({"A": {"pdi": 0.0, "idv": 8.0}, "B": {"pdi": 3.0, "idv": 4.0},
                           "C": {"pdi": 6.0, "idv": 0.0}}, {})
    target = Target("Tee", "T", {"pdi": 1000.0, "idv": 0.0})
    report = {"vsm13_l1": {"plain": 100.0, "de": 93.0}, "comparison": {"plain": {"margin": 0.5}, "de": {"margin": 3.3}}}
    means = {"plain": _means(), "de": _means({7: 0.1, 20: 0.14})}
    out = change_vs_plain(report, means, {"pdi": 100.0}, target, reference)["de"]
    assert out["margin"] == pytest.approx(2.8) and out["vsm13_l1"] == -7.0
    assert out["margin_ci"] == pytest.approx([2.8, 2.8], abs=1e-9)
    assert out["vsm13_l1_ci"] == pytest.approx([-7.0, -7.0], abs=1e-9)


def test_an_objective_s_replicates_carry_the_task_s_constants():
    # pdi of a replicate: C_pd + two terms drawn from 35 (m07 - m02) = 35 (1.32 - 2.88) = -54.6 and
    # 25 (m20 - m23) = 25 (3.6 - 3.24) = 9; each extreme is drawn in about 1/4 of the 1000 replicates, so the
    # percentile interval is [20 - 109.2, 20 + 18] = [-89.2, 38] (without C_pd: [-109.2, 18])
    from aligners.intervals import loss_interval

    ci, _ = loss_interval("standardised", lambda indices: indices["pdi"], {}, _means(), {"pdi": 20.0})
    assert ci == pytest.approx([-89.2, 38.0])


def test_the_loss_interval_follows_the_objective():
    from aligners.intervals import loss_interval

    final = {"vsm13_margin_ci_low": -0.2, "vsm13_margin_ci_high": 0.5, "vsm13_l1_ci_low": 80.0,
             "vsm13_l1_ci_high": 95.0}
    assert loss_interval("contrastive", None, final, {}, {}) == ([-0.5, 0.2], "the task's interval of vsm13_margin, "
                                                                              "negated")
    assert loss_interval("l1", None, final, {}, {})[0] == [80.0, 95.0]
    # another objective: its value on each item-pair replicate; a constant objective has a point interval
    ci, how = loss_interval("standardised", lambda indices: 3.0, final, _means(), {})
    assert ci == [3.0, 3.0] and how == "the objective of 1000 item-pair bootstrap resamples (seed 1234)"


def test_a_nan_loss_stops_the_search_and_leaves_the_output_new(tiny_model, data_root, tmp_path, capsys, monkeypatch):
    """argmin would take a NaN loss for the best; the run stops with a one-line error instead, and the
    settings it stored are removed, so the corrected rerun is not told "not empty"."""
    import aligners.align as align

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    monkeypatch.setattr(align, "make_objective", lambda *args, **kwargs: lambda indices: float("nan"))
    out = tmp_path / "out"
    assert _align(tiny_model, out) == 2
    assert capsys.readouterr().err.endswith(  # an objective that is NaN for the plain model too: not the prompts'
        "\nculture-align: generation 1: vsm13_usa's loss (the objective of its metrics) is NaN for the plain model "
        "too, though its log-likelihoods are finite: no soft prompt can change that (see any warning above)\n")
    assert not out.exists() or claim_output(out) == "new"


def test_a_damaged_model_stops_in_generation_1_naming_the_model_not_the_bound(tiny_model, data_root, tmp_path, capsys,
                                                                              monkeypatch):
    """A NaN weight makes every candidate's loss NaN: the fault is the model's, found by scoring it without a
    prompt, and the message says so (it was told to use a smaller --bound); nothing is kept."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    damaged = damaged_copy(tiny_model, tmp_path / "damaged")
    out = tmp_path / "out"
    assert _align(damaged, out) == 2
    assert capsys.readouterr().err.endswith(
        "\nculture-align: generation 1: the plain model (no soft prompt) gives a NaN or infinite log-likelihood on 24 "
        "of 24 items of vsm13_usa in --dtype float32, so every candidate's loss is NaN: its numbers are not finite "
        "even in float32; check the model's weights (a damaged file?)\n")
    assert not out.exists() or claim_output(out) == "new"


def _overflow_above(threshold: float):
    """``load_lm`` whose model turns every row whose input (soft prompt and token embeddings) exceeds
    ``threshold`` in absolute value into NaN before its first layer: a soft prompt far enough out
    overflows, the token embeddings alone (at most 0.072 in the tiny model) never do."""
    import aligners.align as align

    load = align.load_lm

    def load_lm(cfg, dtype=None):
        lm = load(cfg, dtype)

        def overflow(module, args):
            hidden = args[0].clone()
            hidden[hidden.abs().amax(dim=(1, 2)) > threshold] = float("nan")
            return (hidden, *args[1:])

        lm.model.model.layers[0].register_forward_pre_hook(overflow)
        return lm

    return load_lm


@pytest.mark.parametrize("optimizer, threshold", [("de", 0.15), ("cma", 0.11)])  # some of generation 1 overflow
def test_a_candidate_whose_prompt_overflows_counts_as_the_worst_loss(optimizer, threshold, tiny_model, data_root, tmp_path,
                                                                     monkeypatch, caplog):
    """A soft prompt that overflows the model is a point of the search space that works worst: its loss
    is recorded as null, told to the optimiser as +inf, counted in alignment.json with a warning, and a
    resume replays it exactly (the search stopped at the first such candidate)."""
    import aligners.align as align

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    args = ("--optimizer", optimizer, "--bound", "4")
    assert _align(tiny_model, tmp_path / "clean", *args, "--generations", "1") == 0  # its first generation is compared
    clean = json.loads((tmp_path / "clean/state.json").read_text())["fitness"]
    monkeypatch.setattr(align, "load_lm", _overflow_above(threshold))
    assert _align(tiny_model, tmp_path / "full", *args) == 0
    summary = json.loads((tmp_path / "full/alignment.json").read_text())
    fitness = json.loads((tmp_path / "full/state.json").read_text())["fitness"]
    # the first generation's candidates are the same points: the overflowing ones are null, the others unchanged
    bad = [i for i, v in enumerate(fitness[0]) if v is None]
    assert bad and len(bad) < 6
    assert fitness[0] == [None if i in bad else pytest.approx(v, abs=1e-9) for i, v in enumerate(clean[0])]
    first = summary["history"][0]
    assert first["nonfinite"] == len(bad) and first["best"] == min(v for v in fitness[0] if v is not None)
    assert first["mean"] == pytest.approx(np.mean([v for v in fitness[0] if v is not None]), abs=1e-12)
    nulls = sum(v is None for row in fitness for v in row)
    assert summary["nonfinite_candidates"] == nulls == sum(h["nonfinite"] for h in summary["history"])
    assert summary["history"][-1]["best_so_far"] == min(v for row in fitness for v in row if v is not None)
    assert np.isfinite(summary["loss"])
    warned = [r.getMessage() for r in caplog.records if "NaN or infinite loss" in r.getMessage()]
    assert warned[0].startswith(f"generation 1: {len(bad)} of 6 candidates have a NaN or infinite loss")
    assert warned[-1].startswith(f"{nulls} of 18 candidates had a NaN or infinite loss")
    assert _align(tiny_model, tmp_path / "part", *args, "--generations", "2") == 0
    scored = _scored_generations(monkeypatch)
    assert _align(tiny_model, tmp_path / "part", *args, "--resume") == 0
    assert scored == [6]  # generation 3 only: the first two, nulls included, are replayed from state.json
    resumed = json.loads((tmp_path / "part/alignment.json").read_text())
    assert resumed["history"] == summary["history"] and resumed["loss"] == summary["loss"]
    assert resumed["nonfinite_candidates"] == nulls


def _nan_embedding_of(text: str):
    """``load_lm`` whose model reads NaN for the tokens of ``text`` (as a damaged embedding row would,
    while the soft-prompt space, built from the table, stays finite)."""
    import aligners.align as align

    load = align.load_lm

    def load_lm(cfg, dtype=None):
        lm = load(cfg, dtype)
        ids = torch.tensor(lm.tokenizer(text, add_special_tokens=False)["input_ids"])

        def damaged(module, args, output):
            output = output.clone()
            output[torch.isin(args[0], ids)] = float("nan")
            return output

        lm.model.get_input_embeddings().register_forward_hook(damaged)
        return lm

    return load_lm


def test_a_nan_baseline_stops_the_report_before_anything_is_written(tiny_model, data_root, tmp_path, capsys,
                                                                   monkeypatch):
    """The persona prompt's words are NaN for the model (its VSM13 prompt and the search never use them):
    the report stops naming the baseline and its task before the checkpoint or alignment.json is written
    (they held NaN and the run counted as finished); a --resume stops the same way, keeping the search."""
    import aligners.align as align

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    monkeypatch.setattr(align, "load_lm", _nan_embedding_of(" States"))
    out = tmp_path / "out"
    args = [a for a in FAST if a != "--no-baselines"]
    message = ("culture-align: the report (scored in float32): the persona baseline (the plain model with the persona "
               "prompt) gives a NaN or infinite log-likelihood on 24 of 24 items of vsm13_usa_persona, so its numbers "
               "would be NaN; nothing is written (the search is kept in state.json): its numbers are not finite even in "
               "float32; check the model's weights (a damaged file?)\n")
    for resume in ([], ["--resume"]):
        assert align_main(["--model", str(tiny_model), "--country", "USA", "--output", str(out), *args, *resume]) == 2
        assert capsys.readouterr().err.endswith("\n" + message)
        assert sorted(p.name for p in out.iterdir()) == ["run_settings.json", "state.json"]
        assert len(json.loads((out / "state.json").read_text())["fitness"]) == 3


def _recorded_lm_eval(summary) -> tuple[list[str], dict]:
    """The tasks and the --metadata of the lm_eval command alignment.json records."""
    import shlex

    args = shlex.split(summary["lm_eval_command"])
    tasks = args[args.index("--tasks") + 1].split(",")
    return tasks, json.loads(args[args.index("--metadata") + 1]) if "--metadata" in args else {}


@pytest.mark.parametrize("country, target, code", [
    ("Japan", None, "JPN"),  # in Hofstede's file, no task of its own: scored through vsm13_usa's
    ("Atlantis", [40, 91, 62, 46, 26, 68], "Atlantis"),  # in no file: its own code, the USA row stays
    ("CHN", [20, 20, 66, 30, 87, 24], "CHI"),  # a task of its own; the explicit profile replaces China's row
    ("Saudi Arabia", None, "SAU"),
])
def test_the_recorded_task_ranks_the_target_as_the_country_it_is(country, target, code, data_root, monkeypatch):
    """The task of the recorded lm_eval command ranks the target under the country's own code: through
    vsm13_usa's task, Japan's profile replaced the USA row (Japan's own row then competed with it)."""
    from lm_eval.tasks import get_task_dict

    from aligners.align import country_tasks
    from aligners.config import AlignConfig
    from culture_tasks.paths import task_manager

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    cfg = AlignConfig(model="m", countries=[country], output="o", target=target)
    tasks = country_tasks(country, target, cfg)
    task = get_task_dict([tasks.vsm13], task_manager(tasks.metadata))[tasks.vsm13]
    comparison = json.loads(task.dataset["test"]["comparison"][0])
    assert comparison["code"] == code
    assert json.loads(task.dataset["test"]["target"][0]) == tasks.scores
    assert comparison["data_dir"] == str(data_root.resolve()) == tasks.metadata["data_dir"]  # not left to the shell


def test_a_country_without_a_task_reports_the_loss_its_recorded_lm_eval_command_gives(tiny_model, data_root,
                                                                                      tmp_path, monkeypatch):
    """Japan is scored through vsm13_usa's task: the recorded command reports minus the loss as its
    margin, and alignment.json names the model, items and Hofstede file by content."""
    from culture_tasks.fingerprints import model_fingerprint
    from culture_tasks.outputs import file_digest

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "jpn"
    assert align_main(["--model", str(tiny_model), "--country", "Japan", "--output", str(out), *FAST,
                       "--generations", "1"]) == 0
    summary = json.loads((out / "alignment.json").read_text())
    tasks, metadata = _recorded_lm_eval(summary)
    assert tasks == ["vsm13_usa"] and metadata["data_dir"] == str(data_root.resolve())
    results = evaluate(tiny_model, tasks, data_root, peft=str(out), metadata=metadata)["results"]["vsm13_usa"]
    assert summary["loss"] == pytest.approx(-results["vsm13_margin,none"], abs=1e-3)
    assert summary["final"]["vsm13_rank"] == results["vsm13_rank,none"]
    assert summary["inputs"] == {
        "model_fingerprint": model_fingerprint(tiny_model), "data_dir": str(data_root.resolve()),
        "vsm13_items": file_digest(data_root / "vsm13" / "items.jsonl"),
        "hofstede_reference": file_digest(data_root / "hofstede" / "6-dimensions-for-website-2015-08-16.csv")}


def _run_recorded_command(command: str, output, monkeypatch) -> dict:
    """The recorded command as the shell hands it to ``lm_eval``, run by lm-eval's own command line in this
    process (``--output_path`` added, and ``--device cpu`` as every test scores): its results."""
    import shlex
    import sys

    from lm_eval.__main__ import cli_evaluate

    argv = shlex.split(command)
    assert argv[0] == "lm_eval"
    monkeypatch.setattr(sys, "argv", [*argv, "--device", "cpu", "--output_path", str(output)])
    cli_evaluate()
    return json.loads(next(output.rglob("results_*.json")).read_text())["results"]


def test_a_checkpoint_folder_named_with_a_comma_and_a_quote_is_scored_by_its_recorded_command(
        tiny_model, data_root, tmp_path, monkeypatch):
    """--output seed=0,o'brien: the recorded --model_args read peft=.../seed=0 and stopped at "o'brien" ("expected
    `key=value`"); written as a JSON object, lm_eval scores that checkpoint to the run's loss and final metrics."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "seed=0,o'brien"
    assert _align(tiny_model, out, "--generations", "1") == 0  # a checkpoint to score: one generation makes it
    summary = json.loads((out / "alignment.json").read_text())
    results = _run_recorded_command(summary["lm_eval_command"], tmp_path / "lm_eval", monkeypatch)["vsm13_usa"]
    assert summary["loss"] == pytest.approx(-results["vsm13_margin,none"], abs=1e-5)
    for key in ("vsm13_l1", "vsm13_rank", "pdi", "ivr"):
        assert summary["final"][key] == pytest.approx(results[f"{key},none"], abs=1e-4)


def test_target_country_without_a_target_or_as_no_string_is_refused(data_root):
    from culture_tasks.metadata import MetadataError
    from culture_tasks.survey.tasks import load_vsm13

    with pytest.raises(MetadataError, match=r"vsm13 \(USA\): --metadata target_country 'JPN' names the country of an "
                                            "explicit target: give it as a string, beside the target"):
        load_vsm13(str(data_root), vsm13_country="USA", target_country="JPN")
    with pytest.raises(MetadataError, match="target_country 3 names"):
        load_vsm13(str(data_root), vsm13_country="USA", target={"pdi": 1.0, "idv": 2.0}, target_country=3)


def test_a_run_killed_while_writing_its_outputs_is_reported_again_on_resume(tiny_model, data_root, tmp_path,
                                                                             monkeypatch):
    """alignment.json marks a run finished, so it is written last: killed while the loss curve was drawn,
    the run kept an alignment.json that a resume took as finished, and never drew the curve."""
    from culture_tasks import plots

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "run"
    draw = plots.loss_curve

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "loss_curve", killed)
    with pytest.raises(KeyboardInterrupt):
        _align(tiny_model, out)
    assert not (out / "alignment.json").exists()
    labels = []
    monkeypatch.setattr(plots, "loss_curve", lambda *args: labels.append(args[3]) or draw(*args))
    assert _align(tiny_model, out, "--resume") == 0
    summary = json.loads((out / "alignment.json").read_text())
    assert len(summary["history"]) == 3 and (out / "loss_curve.png").stat().st_size > 1000
    assert summary["objective"] == "contrastive" and labels == ["minus the margin (vsm13_margin)"]


def test_a_resume_to_more_generations_killed_while_writing_leaves_no_report_of_the_shorter_run(tiny_model, data_root,
                                                                                             tmp_path, monkeypatch):
    """A finished 1-generation run resumed to 3 and killed after its new checkpoint was written, before its
    alignment.json: the folder held the 1-generation report (its loss, final indices and lm_eval command)
    beside the 3-generation prompt, read as a finished run whose numbers the checkpoint does not give.
    The old report is removed before the checkpoint is replaced; the resume writes the new one."""
    from safetensors.torch import load_file

    from culture_tasks import plots

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "run"
    args = ["--population", "4", "--generations", "1"]
    assert _align(tiny_model, out, *args) == 0
    first = load_file(str(out / "adapter_model.safetensors"))
    draw = plots.loss_curve

    def killed(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "loss_curve", killed)
    with pytest.raises(KeyboardInterrupt):
        _align(tiny_model, out, "--population", "4", "--generations", "3", "--resume")
    third = load_file(str(out / "adapter_model.safetensors"))
    assert any(not torch.equal(first[k], third[k]) for k in first)  # the checkpoint is the 3-generation prompt
    assert not (out / "alignment.json").exists()
    monkeypatch.setattr(plots, "loss_curve", draw)
    assert _align(tiny_model, out, "--population", "4", "--generations", "3", "--resume") == 0
    assert len(json.loads((out / "alignment.json").read_text())["history"]) == 3


def test_a_resume_of_a_run_killed_while_storing_its_settings_starts_it_afresh(tiny_model, data_root, tmp_path,
                                                                              monkeypatch):
    """Killed while run_settings.json was written, a run leaves only the temporary file (and its lock):
    --resume removes it, and the folder is a new run."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "run"
    out.mkdir()
    (out / ".run_settings.json.k1ll3d00.json").write_text('{"model": ')
    assert _align(tiny_model, out, "--resume") == 0  # the temporary removed, the folder is a new run
    assert (out / "alignment.json").exists() and not (out / ".run_settings.json.k1ll3d00.json").exists()


def test_a_checkpoint_names_its_base_model_folder_absolutely(tiny_model, tmp_path, monkeypatch):
    """A base folder given relative to the working directory is recorded absolutely in adapter_config.json
    (as typed, the checkpoint would load only from that directory, and a path shaped like org/name
    could resolve to a hub model)."""
    from peft import PeftConfig
    from transformers import AutoModelForCausalLM

    from aligners.soft_prompt import save_prompt_tuning_adapter

    monkeypatch.chdir(tiny_model.parent)
    model = AutoModelForCausalLM.from_pretrained(tiny_model.name)
    save_prompt_tuning_adapter(model, torch.zeros(4, 32), tmp_path / "ckpt", tiny_model.name, init="text",
                               init_text="Answer.")
    config = PeftConfig.from_pretrained(str(tmp_path / "ckpt"))
    assert config.base_model_name_or_path == config.tokenizer_name_or_path == str(tiny_model.resolve())


def test_alignment_json_names_the_base_model_folder_absolutely(tiny_model, data_root, tmp_path, monkeypatch):
    from aligners.cli import main as align_main

    monkeypatch.chdir(tiny_model.parent)
    assert align_main(["--model", tiny_model.name, "--country", "USA", "--data-dir", str(data_root), "--population", "4",
                       "--generations", "1", "--subspace-dim", "2", "--no-baselines", "--output", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "alignment.json").read_text())["base_model"] == str(tiny_model.resolve())


def _plant_temporaries(out):
    """What a run SIGKILLed mid-write leaves in its folder: atomic.replacing's temporary files of the files
    culture-align writes and a half-moved .adapter.XXXXXXXX staging folder (a whole adapter); and files of
    similar names it never makes."""
    made = [".state.json.k1ll3d00.json", ".alignment.json.ab_cd123.json", ".run_settings.json.q0w9e8r7.json",
            ".loss_curve.png.zz123456.png"]
    for name in made:
        (out / name).write_text('{"fitness": [')
    staged = out / ".adapter.x1y2z3w4"
    staged.mkdir()
    (staged / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    (staged / "adapter_config.json").write_text("{}")
    kept = [".state.json.bak", ".adapter.notes", ".state.json.k1ll3d00.txt", "notes.txt"]
    for name in kept:
        (out / name).write_text("mine")
    (out / ".adapter.keepdir99").mkdir()  # a folder of that form but 9 characters: not mkdtemp's
    (out / ".adapter.keepdir99" / "x").write_text("mine")
    return sorted([*made, staged.name]), sorted([*kept, ".adapter.keepdir99", ".adapter.keepdir99/x"])


def test_a_resume_removes_the_temporaries_of_a_killed_write_and_ends_file_for_file_as_the_uninterrupted_run(
        searched, tiny_model, data_root, tmp_path, monkeypatch, caplog):
    """SIGKILLed while writing, a run left its temporary files and a staging folder holding a whole adapter;
    --resume kept them, so the finished folder was not the uninterrupted run's. Under the folder's lock the
    resume removes exactly those (named in the log) and leaves everything else."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    full, part = searched[0], _copy_of(searched[1], tmp_path / "part")
    removed, kept = _plant_temporaries(part)
    caplog.clear()
    assert _align(tiny_model, part, "--generations", "4", "--resume") == 0

    def files(folder):
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))

    assert files(part) == sorted([*files(full), *kept])
    assert json.loads((part / "alignment.json").read_text())["history"] == \
        json.loads((full / "alignment.json").read_text())["history"]
    said = sorted(r.getMessage() for r in caplog.records if r.getMessage().startswith("removed "))
    assert said == sorted(f"removed {name} from {part}, left by a run killed while writing it" for name in removed)


def test_a_several_country_resume_removes_each_country_folder_s_temporaries_before_its_run(tiny_model, data_root,
                                                                                          tmp_path, monkeypatch):
    """Country folders holding only a killed write's temporaries are new runs on --resume (it said "holds no
    state.json" before), and each country's run starts with them gone; the top folder is left as it is."""
    import aligners.align as align
    from aligners.align import run

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "mc"
    (out / "usa" / ".adapter.x1y2z3w4").mkdir(parents=True)
    (out / "usa" / ".adapter.x1y2z3w4" / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    (out / "usa" / ".state.json.k1ll3d00.json").write_text('{"fitness": [')
    (out / "chn").mkdir()
    (out / "chn" / ".run_settings.json.k1ll3d00.json").write_text('{"model": ')
    (out / ".state.json.k1ll3d00.json").write_text("not this command's here")
    seen = {}

    def fake_country(lm, cfg, country, path, manager):
        seen[path.name] = sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))
        return {}

    monkeypatch.setattr(align, "load_lm", lambda cfg: None)
    monkeypatch.setattr(align, "align_country", fake_country)
    run(parse_args(["--model", str(tiny_model), "--country", "USA", "CHN", "--output", str(out), *FAST, "--resume"]))
    assert seen == {"usa": [".lock"], "chn": [".lock"]}
    assert (out / ".state.json.k1ll3d00.json").read_text() == "not this command's here"
    # no country had stored a run (nor the list of countries): nothing to mix, the resume stores the list given
    assert json.loads((out / "run_countries.json").read_text()) == {"countries": ["USA", "CHN"]}


def _several_countries_stored(monkeypatch, tiny_model, out, *countries, extra=()):
    """run() of ``countries`` into ``out`` without a model; each country's run leaves its run_settings.json."""
    import aligners.align as align

    seen = []

    def fake_country(lm, cfg, country, path, manager):
        seen.append(path.name)
        (path / "run_settings.json").write_text("{}")
        return {}

    monkeypatch.setattr(align, "load_lm", lambda cfg: None)
    monkeypatch.setattr(align, "align_country", fake_country)
    align.run(parse_args(["--model", str(tiny_model), "--country", *countries, "--output", str(out), *FAST, *extra]))
    return seen


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_a_several_country_resume_with_another_list_of_countries_is_refused_before_the_model_loads(
        tiny_model, data_root, tmp_path, capsys, monkeypatch):
    """--country USA CHN into mc, then --country USA IND --resume: it resumed usa and started ind beside chn's run,
    two runs in one output (rc 0). The list is stored in mc/run_countries.json and compared before the model loads;
    the stored list resumes, and --overwrite stores the new one."""
    import aligners.align as align

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "mc"
    assert _several_countries_stored(monkeypatch, tiny_model, out, "USA", "CHN") == ["usa", "chn"]
    assert json.loads((out / "run_countries.json").read_text()) == {"countries": ["USA", "CHN"]}
    made = _files(out)
    assert made == ["chn", "chn/run_settings.json", "run_countries.json", "usa", "usa/run_settings.json"]
    capsys.readouterr()
    _no_model_load(monkeypatch)
    assert align_main(["--model", str(tiny_model), "--country", "USA", "IND", "--output", str(out), *FAST,
                       "--resume"]) == 2
    assert capsys.readouterr().err == (
        f"culture-align: --resume: the run in {out} was made with other countries (countries: saved ['USA', 'CHN'], "
        f"given ['USA', 'IND']; stored in {out / 'run_countries.json'}); resume it with --country USA CHN, pass "
        "--overwrite to start again, or choose another --output\n")
    assert _files(out) == made
    # the stored list passes (each country's own settings are then compared as before: not here)
    monkeypatch.setattr(align, "_check_output", lambda *a: None)
    assert _several_countries_stored(monkeypatch, tiny_model, out, "USA", "CHN", extra=["--resume"]) == ["usa", "chn"]
    assert _several_countries_stored(monkeypatch, tiny_model, out, "USA", "IND", extra=["--overwrite"]) == ["usa", "ind"]
    assert json.loads((out / "run_countries.json").read_text()) == {"countries": ["USA", "IND"]}
    assert _files(out) == ["ind", "ind/run_settings.json", "run_countries.json", "usa", "usa/run_settings.json"]


def test_a_several_country_run_stored_before_its_list_was_is_refused_on_resume_with_the_file_to_write(
        tiny_model, data_root, tmp_path, capsys, monkeypatch):
    """Country folders holding runs but no run_countries.json: the countries the run was made with are unknown (the
    folders may be those of two runs), so --resume says which file to write; written, the run resumes."""
    import aligners.align as align

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "mc"
    _several_countries_stored(monkeypatch, tiny_model, out, "USA", "CHN")
    (out / "run_countries.json").unlink()
    capsys.readouterr()
    _no_model_load(monkeypatch)
    assert align_main(["--model", str(tiny_model), "--country", "USA", "CHN", "--output", str(out), *FAST,
                       "--resume"]) == 2
    listed = out / "run_countries.json"
    assert capsys.readouterr().err == (
        f"culture-align: --resume: {out} holds the country runs chn, usa but no run_countries.json (made before the "
        "countries of a run were stored), so the countries it was made with cannot be checked; if it was made with "
        f"--country USA CHN, write {{\"countries\": [\"USA\", \"CHN\"]}} to {listed}, pass --overwrite to start "
        "again, or choose another --output\n")
    assert not listed.exists()
    listed.write_text('{"countries": ["USA", "CHN"]}')
    monkeypatch.setattr(align, "_check_output", lambda *a: None)
    assert _several_countries_stored(monkeypatch, tiny_model, out, "USA", "CHN", extra=["--resume"]) == ["usa", "chn"]


def test_one_country_writes_no_list_and_a_several_country_resume_of_its_output_is_refused(tiny_model, data_root,
                                                                                          tmp_path, capsys,
                                                                                          monkeypatch):
    """A run of one country writes into its output as before, with no run_countries.json; --country USA CHN --resume
    into that output started usa/ and chn/ inside the one country's run (rc 0): now refused, nothing written."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "usa"
    assert _several_countries_stored(monkeypatch, tiny_model, out, "USA") == ["usa"]
    assert _files(out) == ["run_settings.json"]
    capsys.readouterr()
    _no_model_load(monkeypatch)
    assert align_main(["--model", str(tiny_model), "--country", "USA", "CHN", "--output", str(out), *FAST,
                       "--resume"]) == 2
    assert capsys.readouterr().err == (
        f"culture-align: --resume: {out} holds the run of one country (run_settings.json), not one folder per country; "
        "resume it with its one --country, or choose another --output\n")
    assert _files(out) == ["run_settings.json"]


def test_saving_a_checkpoint_leaves_the_model_scoring_as_before(tiny_model, data_root, tmp_path):
    """peft's get_peft_model freezes the base model's parameters, and on CPU torch's linear takes another
    path for the LM head's strided input when its weight is frozen: after a country's checkpoint was
    written, the next country of the same run scored up to 5e-7 apart from a run of that country alone
    (or a --resume of it in a fresh process). Writing a checkpoint now leaves the model as it found it."""
    from aligners.align import load_lm
    from aligners.config import AlignConfig
    from aligners.scoring import TaskScorer
    from aligners.soft_prompt import save_prompt_tuning_adapter
    from culture_tasks.paths import task_manager

    cfg = AlignConfig(model=str(tiny_model), countries=["CHN"], output=str(tmp_path / "o"), data_dir=str(data_root))
    lm = load_lm(cfg)
    scorer = TaskScorer(lm, "vsm13_china", task_manager({"data_dir": str(data_root)}))
    before = scorer.option_loglikelihoods(None, cfg.batch_size)
    flags = [p.requires_grad for p in lm.model.parameters()]
    save_prompt_tuning_adapter(lm.model, torch.zeros(4, 32), tmp_path / "ckpt", str(tiny_model), init="vocab")
    assert [p.requires_grad for p in lm.model.parameters()] == flags
    assert scorer.option_loglikelihoods(None, cfg.batch_size) == before


def test_a_balanced_run_scores_both_orders_and_lm_eval_reports_its_loss(tiny_model, data_root, tmp_path, monkeypatch,
                                                                        capsys):
    """--option-order balanced searches on vsm13_usa_balanced (every item in both orders): the recorded command
    names that task and lm_eval reports the run's loss for its checkpoint; a resume in the listed order is refused."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "balanced"
    assert _align(tiny_model, out, "--option-order", "balanced", "--baselines", "--generations", "1") == 0
    summary = json.loads((out / "alignment.json").read_text())
    assert "--tasks vsm13_usa_balanced " in summary["lm_eval_command"]
    assert summary["settings"]["option_order"] == "balanced"
    results = evaluate(tiny_model, ["vsm13_usa_balanced"], data_root, peft=str(out))["results"]["vsm13_usa_balanced"]
    assert summary["loss"] == pytest.approx(-results["vsm13_margin,none"], abs=1e-5)
    listed = evaluate(tiny_model, ["vsm13_usa"], data_root, peft=str(out))["results"]["vsm13_usa"]
    assert listed["vsm13_margin,none"] != pytest.approx(results["vsm13_margin,none"], abs=1e-6)
    # the report says where the prompt ranks the USA in each single order, as lm_eval does
    orders = summary["report"]["other_orders"]
    assert sorted(orders) == ["listed", "reversed"] and orders["listed"]["task"] == "vsm13_usa"
    assert orders["listed"]["comparison"]["de"]["margin"] == pytest.approx(listed["vsm13_margin,none"], abs=1e-5)
    assert orders["listed"]["comparison"]["de"]["rank"] == listed["vsm13_rank,none"]
    capsys.readouterr()
    assert _align(tiny_model, out, "--generations", "4", "--resume") == 2
    assert "option_order: saved 'balanced', given 'listed'" in capsys.readouterr().err


def test_a_run_stored_before_option_order_resumes_as_the_listed_order(one_generation, tiny_model, data_root, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = _copy_of(one_generation, tmp_path / "run")
    stored = json.loads((out / "run_settings.json").read_text())
    assert stored.pop("option_order") == "listed"
    (out / "run_settings.json").write_text(json.dumps(stored))
    assert _align(tiny_model, out, "--generations", "2", "--resume", "--option-order", "balanced") == 2
    assert _align(tiny_model, out, "--generations", "2", "--resume") == 0


def test_the_worst_order_scores_a_candidate_by_the_larger_loss_of_the_two_single_order_tasks(tiny_model, data_root):
    """--option-order worst: each candidate's loss is the larger of the objective over the listed and the reversed
    halves of the balanced task's documents, which are exactly the documents of vsm13_usa and vsm13_usa_reversed
    (scored here by their own tasks); for l1, convex in the indices, it is never below the balanced loss."""
    from aligners.align import load_lm, make_space, score_candidates
    from aligners.config import AlignConfig
    from aligners.objectives import make_objective
    from aligners.orders import SEARCH_ORDERS
    from aligners.scoring import TaskScorer
    from culture_tasks.paths import task_manager

    cfg = AlignConfig(model=str(tiny_model), countries=["USA"], output="unused", data_dir=str(data_root),
                      subspace_dim=4, bound=4.0)
    lm = load_lm(cfg)
    space = make_space(lm, cfg)
    z = np.random.default_rng(5).uniform(-4, 4, size=(3, 4))
    tm = task_manager({"data_dir": str(data_root)})

    def losses(task, order, objective):
        return score_candidates(TaskScorer(lm, task, tm), space, z, 8, objective, SEARCH_ORDERS[order])

    for name in ("contrastive", "l1"):
        objective = make_objective(name, "USA", data_dir=str(data_root))
        listed, reversed_ = losses("vsm13_usa", "listed", objective), losses("vsm13_usa_reversed", "listed", objective)
        worst = losses("vsm13_usa_balanced", "worst", objective)
        # to float rounding: the balanced task's batches hold other rows than each single-order task's
        assert worst == pytest.approx([max(a, b) for a, b in zip(listed, reversed_)], rel=1e-6, abs=1e-5)
        assert max(abs(a - b) for a, b in zip(listed, reversed_)) > 1e-3  # the orders differ: the max is a real choice
        if name == "l1":
            balanced = losses("vsm13_usa_balanced", "balanced", objective)
            assert all(w >= b - 1e-5 for w, b in zip(worst, balanced))
            assert max(w - b for w, b in zip(worst, balanced)) > 1e-3


def test_a_worst_order_run_reports_the_loss_lm_eval_gives_its_two_tasks(tiny_model, data_root, tmp_path, monkeypatch,
                                                                         capsys):
    """The recorded command asks vsm13_usa and vsm13_usa_reversed, and vsm13_usa_balanced, whose metrics are
    `final`; the run's loss is the larger of minus their vsm13_margin as lm_eval reports them for the
    checkpoint, each in loss_by_order; its interval is the item-pair bootstrap of that maximum; a resume in
    another order is refused."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    out = tmp_path / "worst"
    assert _align(tiny_model, out, "--option-order", "worst", "--generations", "1") == 0
    summary = json.loads((out / "alignment.json").read_text())
    assert "--tasks vsm13_usa,vsm13_usa_reversed,vsm13_usa_balanced " in summary["lm_eval_command"]
    assert summary["target"]["task"] == "vsm13_usa_balanced"
    results = evaluate(tiny_model, ["vsm13_usa", "vsm13_usa_reversed", "vsm13_usa_balanced"], data_root,
                       peft=str(out))["results"]
    for metric in ("vsm13_l1", "vsm13_margin", "vsm13_rank", "pdi", "ivr", "vsm13_margin_ci_high"):
        assert summary["final"][metric] == pytest.approx(results["vsm13_usa_balanced"][f"{metric},none"], abs=1e-4)
    margins = {part: results[task]["vsm13_margin,none"] for part, task in
               (("listed", "vsm13_usa"), ("reversed", "vsm13_usa_reversed"))}
    by_order = summary["loss_by_order"]
    assert {part: entry["task"] for part, entry in by_order.items()} == {"listed": "vsm13_usa",
                                                                         "reversed": "vsm13_usa_reversed"}
    for part, margin in margins.items():
        assert by_order[part]["loss"] == pytest.approx(-margin, abs=1e-5)
    assert summary["loss"] == pytest.approx(max(-m for m in margins.values()), abs=1e-5)
    assert summary["history"][-1]["best_so_far"] == pytest.approx(summary["loss"], abs=1e-4)
    low, high = summary["loss_ci"]
    assert low < high and "largest of the objective over listed, reversed" in summary["report"]["intervals"]["loss"]
    # each order's loss has its interval from the same resamples: the larger of the two in every resample is at
    # least either one, so each bound of the loss's interval is at least that bound of both orders' intervals
    parts = [by_order[part]["loss_ci"] for part in ("listed", "reversed")]
    assert all(lo < hi for lo, hi in parts)
    assert low >= max(lo for lo, _ in parts) - 1e-12 and high >= max(hi for _, hi in parts) - 1e-12
    assert "item-pair bootstrap" in summary["report"]["intervals"]["loss_by_order"]
    capsys.readouterr()
    assert _align(tiny_model, out, "--generations", "4", "--resume", "--option-order", "balanced") == 2
    assert "option_order: saved 'worst', given 'balanced'" in capsys.readouterr().err


def test_a_loss_that_is_nan_for_the_plain_model_too_is_not_blamed_on_the_soft_prompts():
    """Finite log-likelihoods but no loss (the task's metrics give none on these documents): the error says the
    task gives no loss whatever the prompt, not that the prompts overflow (a smaller --bound would not help)."""
    import math
    from types import SimpleNamespace

    from aligners.align import _no_finite_loss
    from aligners.orders import SearchOrder

    scorer = SimpleNamespace(task_name="vsm13_usa", items=[],
                             option_loglikelihoods=lambda prompts, batch: [[[-1.0, -2.0]] * 24],
                             metrics=lambda lls, keys=None, items=None: {"vsm13_l1": math.nan})
    cfg = SimpleNamespace(batch_size=8, dtype="float32", bound=1.0)
    err = _no_finite_loss(scorer, cfg, 1, lambda m: m["vsm13_l1"], SearchOrder("plain"))
    assert str(err) == ("generation 1: vsm13_usa's loss (the objective of its metrics) is NaN for the plain model "
                        "too, though its log-likelihoods are finite: no soft prompt can change that (see any warning "
                        "above)")
    scorer.metrics = lambda lls, keys=None, items=None: {"vsm13_l1": 300.0}  # the plain model has a loss: the prompts
    assert "the soft prompts overflow the model; use a smaller --bound (now 1)" in str(
        _no_finite_loss(scorer, cfg, 1, lambda m: m["vsm13_l1"], SearchOrder("plain")))


def test_a_run_resumes_from_another_working_directory_and_ends_as_the_uninterrupted_run(searched, tiny_model, data_root,
                                                                                         tmp_path, monkeypatch):
    """Started as ``--model tiny`` in the model's parent folder, resumed as ``--model /abs/tiny`` from elsewhere: the
    same folder by content, so the resume goes on (it was refused: model saved 'tiny', given '/abs/tiny') and ends
    with the uninterrupted run's checkpoint."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    full, part = searched[1], tmp_path / "part"  # full: the uninterrupted run of 2 generations
    monkeypatch.chdir(tiny_model.parent)
    assert _align(tiny_model.name, part, "--generations", "1") == 0
    monkeypatch.chdir(tmp_path)
    scored = _scored_generations(monkeypatch)
    assert _align(tiny_model, part, "--generations", "2", "--resume") == 0
    assert scored == [6]  # generation 2 only: resumed, not started again
    a, b = (json.loads((p / "alignment.json").read_text()) for p in (full, part))
    assert a["history"] == b["history"] and a["loss"] == b["loss"]
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (full / name).read_bytes() == (part / name).read_bytes(), name
