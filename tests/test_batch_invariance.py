"""Generation from a prompt-tuning checkpoint gives the same answers at every batch size.

lm-eval pads generation batches on the left and peft puts the virtual tokens before the padding
(peft issue 1093); the documented route (``python -m culture_tasks.harness --model hf-prompt``)
puts them after it, and generation through plain ``--model hf`` is refused when it starts.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch

from culture_tasks.paths import TASKS_DIR, task_manager

TASK = "culturellm_gen_english_solid_easy"
LIMIT = 24


@pytest.fixture(scope="module")
def prompt_adapter(tiny_model, tmp_path_factory):
    """A random 4-token prompt-tuning checkpoint, large enough to steer the tiny model's answers."""
    from transformers import AutoModelForCausalLM

    from aligners.soft_prompt import save_prompt_tuning_adapter

    out = tmp_path_factory.mktemp("prompt_adapter")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    prompt = torch.randn(4, model.config.hidden_size, generator=torch.Generator().manual_seed(0)) * 0.5
    save_prompt_tuning_adapter(model, prompt, out, str(tiny_model), init="vocab")
    return out


def _cli(monkeypatch, tmp_path, model, model_args, data_root, batch_size):
    """Run the documented command line in-process; return {doc_id: sample} of the logged samples."""
    from culture_tasks.harness import main

    out = tmp_path / f"{model}_bs{batch_size}"
    monkeypatch.setattr(sys, "argv", [
        "culture_tasks.harness", "--model", model, "--model_args", model_args,
        "--include_path", str(TASKS_DIR), "--tasks", TASK, "--limit", str(LIMIT), "--device", "cpu",
        "--batch_size", str(batch_size), "--metadata", json.dumps({"data_dir": str(data_root)}),
        "--output_path", str(out), "--log_samples",
    ])
    main()
    (samples,) = out.rglob(f"samples_{TASK}_*.jsonl")
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    return {row["doc_id"]: row for row in rows}


def _in_process(model_args, data_root, batch_size):
    """The same model class through lm-eval's Python entry point (no bootstrap: faster)."""
    import lm_eval

    out = lm_eval.simple_evaluate(
        model="hf-prompt", model_args=model_args, tasks=[TASK], limit=LIMIT, device="cpu", batch_size=batch_size,
        task_manager=task_manager({"data_dir": str(data_root)}),
        log_samples=True, bootstrap_iters=0,
    )
    return {row["doc_id"]: row for row in out["samples"][TASK]}


def _context(sample) -> str:
    args = sample["arguments"]
    return args["gen_args_0"]["arg_0"] if isinstance(args, dict) else args[0][0]


def _greedy_by_hand(model, tok, prompt, context: str, max_new: int = 16) -> str:
    """Greedy decoding without a cache: every step runs [soft prompt | context | answer so far]."""
    ids, new = tok(context)["input_ids"], []
    for _ in range(max_new):
        with torch.no_grad():
            embeds = torch.cat([prompt[None], model.get_input_embeddings()(torch.tensor([ids + new]))], dim=1)
            new.append(int(model(inputs_embeds=embeds).logits[0, -1].argmax()))
        if new[-1] == tok.eos_token_id or "\n" in tok.decode(new):
            break
    return tok.decode(new, skip_special_tokens=True).split("\n")[0]


def test_hf_prompt_batch_8_gives_the_batch_1_answers(tiny_model, prompt_adapter, data_root, tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    args = f"pretrained={tiny_model},dtype=float32,peft={prompt_adapter}"
    eight = _cli(monkeypatch, tmp_path, "hf-prompt", args, data_root, 8)  # the documented command
    one = _in_process(args, data_root, 1)
    assert sorted(one) == sorted(eight) == list(range(LIMIT))
    answers_one = [one[i]["resps"][0][0] for i in range(LIMIT)]
    answers_eight = [eight[i]["resps"][0][0] for i in range(LIMIT)]
    assert answers_eight == answers_one
    assert len(set(answers_one)) > 1  # the answers differ between documents: the comparison has teeth
    # the result file names the local weights it was made with by content, where lm-eval records hub SHAs only
    from culture_tasks.fingerprints import loaded_fingerprint

    (result,) = (tmp_path / "hf-prompt_bs8").rglob("results_*.json")
    config = json.loads(result.read_text())["config"]
    assert (config["model_sha"], config["peft_sha"]) == (loaded_fingerprint(tiny_model), loaded_fingerprint(prompt_adapter))

    # and they are the answers of the soft prompt put in front of the context, decoded by hand
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    prompt = next(iter(load_file(str(prompt_adapter / "adapter_model.safetensors")).values()))
    for i in range(4):
        assert answers_eight[i] == _greedy_by_hand(model, tok, prompt, _context(eight[i]))


def test_plain_hf_refuses_a_prompt_tuning_adapter_on_generative_tasks(
        tiny_model, prompt_adapter, data_root, tmp_path, monkeypatch):
    """The refusal read peft= from the task metadata and let it pass whenever an hf-prompt model with the same
    adapter path was alive in the process: lm_eval.simple_evaluate(model="hf", ...) with a TaskManager of its own
    (model args never reach the metadata) generated through plain hf, and so did the command line after an
    earlier hf-prompt evaluation. Now the model that runs the requests is checked, before it generates."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from culture_tasks.hf_prompt import HFPromptLM

    monkeypatch.setattr(HFLM, "_model_generate", lambda *a, **k: pytest.fail("generated through plain hf"))
    args = f"pretrained={tiny_model},dtype=float32,peft={prompt_adapter}"
    refusal = (rf"{TASK}: peft={prompt_adapter} is a PROMPT_TUNING adapter, which --model hf generates from wrongly "
               r".*run python -m culture_tasks.harness --model hf-prompt")
    with pytest.raises(ValueError, match=refusal):
        _cli(monkeypatch, tmp_path, "hf", args, data_root, 8)
    with pytest.raises(ValueError, match=refusal):  # in Python, with a task manager that holds no peft=
        lm_eval.simple_evaluate(model="hf", model_args=args, tasks=[TASK], limit=4, device="cpu", batch_size=4,
                                task_manager=task_manager({"data_dir": str(data_root)}), bootstrap_iters=0)
    served = HFPromptLM(pretrained=str(tiny_model), peft=str(prompt_adapter), device="cpu", dtype="float32",
                        batch_size=4)  # an earlier evaluation of the same adapter, still alive
    with pytest.raises(ValueError, match=refusal):
        _cli(monkeypatch, tmp_path, "hf", args, data_root, 8)
    with pytest.raises(ValueError, match=refusal):
        lm_eval.simple_evaluate(model="hf", model_args=args, tasks=[TASK], limit=4, device="cpu", batch_size=4,
                                task_manager=task_manager({"data_dir": str(data_root)}), bootstrap_iters=0)
    del served  # hf-prompt itself generates through the guard: test_hf_prompt_batch_8_gives_the_batch_1_answers


def test_soft_prompt_goes_after_each_rows_left_padding(tiny_model, prompt_adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from culture_tasks.hf_prompt import soft_prompt_after_padding

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(prompt_adapter))
    ids = torch.tensor([[2, 2, 5, 6], [7, 8, 9, 10]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    embeds, new_mask = soft_prompt_after_padding(model, ids, mask)
    table, prompt = base.get_input_embeddings().weight, model.get_prompt(batch_size=1)[0]
    assert new_mask.tolist() == [[0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1]]
    torch.testing.assert_close(embeds[0], torch.cat([table[[2, 2]], prompt, table[[5, 6]]]))
    torch.testing.assert_close(embeds[1], torch.cat([prompt, table[[7, 8, 9, 10]]]))
    with pytest.raises(ValueError, match="left padding"):
        soft_prompt_after_padding(model, ids, torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]))
