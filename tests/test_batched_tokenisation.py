"""``hf-prompt`` tokenises log-likelihood requests in batches, each distinct string once; the token ids,
and so the scores, are those of lm-eval's own one-request-at-a-time ``_encode_pair``."""

from __future__ import annotations

import functools

import pytest
import torch

from culture_tasks.paths import task_manager

TASKS = ["culturellm_arabic_offenseval2020", "culturellm_korean_hate_speech_detection", "wvs_usa", "vsm13_usa_persona"]


@pytest.fixture(scope="module")
def lm(tiny_model):
    from culture_tasks.hf_prompt import HFPromptLM

    return HFPromptLM(pretrained=str(tiny_model), device="cpu", dtype="float32", batch_size=8)


@pytest.fixture(scope="module")
def tasks(data_root):
    """TASKS loaded once for the module (about a second each time): every ``_requests`` builds its own
    instances from them, and no test changes a task otherwise."""
    from lm_eval.tasks import get_task_dict

    return get_task_dict(TASKS, task_manager({"data_dir": str(data_root)}))


def _requests(lm, tasks, chat: bool, limit: int = 30):
    """The TASKS' requests, built afresh (``build_all_requests`` replaces a task's instances)."""
    out = []
    for name in TASKS:
        task = tasks[name]
        task.build_all_requests(limit=limit, rank=0, world_size=1, apply_chat_template=chat,
                                chat_template=lm.apply_chat_template if chat else None,
                                tokenizer_name=lm.tokenizer_name if chat else "")
        out += task.instances
    return out


@pytest.mark.parametrize("chat", [False, True])
def test_batched_encoding_equals_encode_pair(lm, tasks, chat):
    requests = _requests(lm, tasks, chat)
    pairs = [r.args for r in requests]
    bos = lm.tokenizer.decode(lm.prefix_token_id)
    # and the cases _encode_pair treats specially: trailing spaces move to the continuation, a text that
    # already begins with BOS gets no second one, a context repeated with other continuations
    pairs += [("Is this hate speech?  ", "B"), (bos + "Answer:", " A"), (bos + "Answer:", " B"), ("x\n", "y")]
    expected = [lm._encode_pair(context, continuation) for context, continuation in pairs]
    assert lm.encode_pairs(pairs) == expected
    assert len(pairs) > 2 * len({c for c, _ in pairs})  # contexts shared by several options: each encoded once
    assert all(("<|assistant|>" in r.args[0]) == chat for r in requests)  # chat-templated contexts when asked
    assert expected[-3][0][0] == lm.prefix_token_id and expected[-3][0][1] != lm.prefix_token_id


def test_hf_prompt_scores_as_hf(lm, tiny_model, tasks):
    from lm_eval.models.huggingface import HFLM

    requests = _requests(lm, tasks, chat=False, limit=8)
    hf = HFLM(pretrained=str(tiny_model), device="cpu", dtype="float32", batch_size=8)
    assert lm.loglikelihood(requests) == hf.loglikelihood(requests)


def _count_calls(lm, monkeypatch) -> list[int]:
    """Patch the tokenizer so that the number of strings it encodes is recorded."""
    calls: list[int] = []
    tokenizer = lm.tokenizer
    original = type(tokenizer).__call__

    def counting(self, text, *args, **kwargs):
        calls.append(len(text) if isinstance(text, list) else 1)
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", counting)
    return calls


def test_token_cache_gives_the_same_ids_and_encodes_each_string_once(tiny_model, tasks, tmp_path, monkeypatch):
    from culture_tasks.hf_prompt import HFPromptLM

    cache = tmp_path / "tokens"
    plain = HFPromptLM(pretrained=str(tiny_model), device="cpu", dtype="float32", batch_size=8)
    pairs = [r.args for r in _requests(plain, tasks, chat=False, limit=10)]
    bos = plain.tokenizer.decode(plain.prefix_token_id)
    pairs += [(bos + "Answer:", " A"), (bos + "Answer:", " B")]  # the BOS pass has its own key
    expected = plain.encode_pairs(pairs)
    distinct = len({s for c, k in pairs for s in (c.rstrip(), c.rstrip() + c[len(c.rstrip()):] + k)})

    first = HFPromptLM(pretrained=str(tiny_model), device="cpu", dtype="float32", batch_size=8, token_cache=str(cache))
    calls = _count_calls(first, monkeypatch)
    assert first.encode_pairs(pairs) == expected
    assert sum(calls) == distinct  # cold: every distinct string encoded once
    assert len(list(cache.glob("*/shard-*.npz"))) == 2  # one shard per special-token setting

    second = HFPromptLM(pretrained=str(tiny_model), device="cpu", dtype="float32", batch_size=8, token_cache=str(cache))
    calls.clear()
    assert second.encode_pairs(pairs) == expected
    assert calls == []  # warm: nothing encoded

    new = plain.encode_pairs([("A new context", " X")])
    calls.clear()  # one new pair: only its two strings are encoded, into a third shard
    assert second.encode_pairs(pairs + [("A new context", " X")]) == expected + new
    assert sum(calls) == 2 and len(list(cache.glob("*/shard-*.npz"))) == 3


def test_token_cache_is_keyed_by_the_tokenizer(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    from culture_tasks.token_cache import tokenizer_fingerprint

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    base = tokenizer_fingerprint(tok, {"add_special_tokens": False})
    assert base == tokenizer_fingerprint(AutoTokenizer.from_pretrained(str(tiny_model)), {"add_special_tokens": False})
    assert base != tokenizer_fingerprint(tok, {"add_special_tokens": True})
    tok.add_tokens(["<culture>"])  # another vocabulary: another folder
    assert base != tokenizer_fingerprint(tok, {"add_special_tokens": False})


def test_unreadable_shard_stops_the_run(tiny_model, tmp_path):
    from culture_tasks.token_cache import TokenCache, TokenCacheError

    cache = TokenCache(tmp_path, "f" * 32)
    assert cache.encode(["ab", "cd", "ab"], lambda misses: [[len(s)] for s in misses]) == [[2], [2], [2]]
    assert (cache.hits, cache.misses) == (0, 2)  # the repeated "ab" is encoded once
    assert cache.encode(["cd", "e"], lambda misses: [[9] for _ in misses]) == [[2], [9]]
    assert (cache.hits, cache.misses) == (1, 1)
    shard = next((tmp_path / ("f" * 32)).glob("shard-*.npz"))
    shard.write_bytes(b"not a shard")
    with pytest.raises(TokenCacheError, match=f"{shard}: unreadable token cache shard .*delete it"):
        TokenCache(tmp_path, "f" * 32).encode(["ab"], lambda misses: [[0] for _ in misses])


def test_token_cache_is_a_model_arg_and_no_part_of_a_run_identity():
    from culture_tasks.leaderboard import identity
    from culture_tasks.metadata import check_keys

    check_keys("wvs_usa", {"token_cache": "/tmp/x", "pretrained": "m"}, ["data_dir"])  # accepted, not an error
    one = {"config": {"model": "hf-prompt", "model_args": "pretrained=m,token_cache=/tmp/x"}, "results": {}}
    two = {"config": {"model": "hf-prompt", "model_args": "pretrained=m"}, "results": {}}
    assert identity(one) == identity(two)


def test_token_cache_through_the_documented_command(tiny_model, data_root, tmp_path, monkeypatch):
    """``--model hf-prompt --model_args ...,token_cache=DIR``: the task accepts the key, the cache is
    filled on the first run and read on the second, and the logged scores equal a run without it."""
    import json
    import sys

    from culture_tasks.harness import main
    from culture_tasks.paths import TASKS_DIR

    def run(name, extra=""):
        out = tmp_path / name
        monkeypatch.setattr(sys, "argv", [
            "culture_tasks.harness", "--model", "hf-prompt", "--model_args", f"pretrained={tiny_model},dtype=float32{extra}",
            "--include_path", str(TASKS_DIR), "--tasks", "wvs_usa", "--limit", "6", "--device", "cpu",
            "--batch_size", "4", "--metadata", json.dumps({"data_dir": str(data_root)}),
            "--output_path", str(out), "--log_samples"])
        main()
        (samples,) = out.rglob("samples_wvs_usa_*.jsonl")
        return [json.loads(line)["resps"] for line in samples.read_text().splitlines()]

    plain = run("plain")
    cached = run("cold", f",token_cache={tmp_path / 'tokens'}")
    shards = sorted((tmp_path / "tokens").rglob("shard-*.npz"))
    assert shards and run("warm", f",token_cache={tmp_path / 'tokens'}") == cached == plain
    assert sorted((tmp_path / "tokens").rglob("shard-*.npz")) == shards  # the warm run added nothing


def test_logits_window_holds_every_continuation(lm):
    """The window is counted from the padding: rows of lengths 3 and 2 in a width of 4, continuations of
    at most 1 token: the last 4 - 2 + 1 = 3 positions. A row that ends in a real id 0 looks shorter
    (the window only widens), and a window as wide as the batch is no window (None)."""
    lm._longest_continuation = 1
    try:
        assert lm.logits_window(torch.tensor([[5, 6, 7, 0], [5, 6, 0, 0]])) == 3
        assert lm.logits_window(torch.tensor([[5, 6, 7, 8], [5, 6, 7, 0]])) == 2
        assert lm.logits_window(torch.tensor([[5, 6, 7, 8], [5, 0, 0, 0]])) is None
        lm._longest_continuation = 2
        assert lm.logits_window(torch.tensor([[5, 6, 7, 8, 0, 0], [5, 6, 7, 8, 9, 9]])) == 4
    finally:
        lm._longest_continuation = None
    assert lm.logits_window(torch.tensor([[5, 6, 7, 0]])) is None  # outside loglikelihood: every position


def test_logits_window_is_used_and_scores_as_all_positions(lm, tiny_model, tasks, monkeypatch):
    """The LM head runs on fewer positions than the batch holds, and every score equals lm-eval's ``hf``
    (all positions) to float32 rounding, at batch sizes 8 and 3."""
    from lm_eval.models.huggingface import HFLM

    from culture_tasks.hf_prompt import HFPromptLM

    requests = _requests(lm, tasks, chat=False, limit=6)
    reference = HFLM(pretrained=str(tiny_model), device="cpu", dtype="float32", batch_size=8).loglikelihood(requests)
    for batch in (8, 3):
        model = HFPromptLM(pretrained=str(tiny_model), device="cpu", dtype="float32", batch_size=batch)
        shapes = []
        forward = type(model.model).forward

        @functools.wraps(forward)  # keeps the signature that logits_window looks for
        def recording(self, *args, **kwargs):
            out = forward(self, *args, **kwargs)
            shapes.append((args[0].shape[1], out.logits.shape[1]))
            return out

        monkeypatch.setattr(type(model.model), "forward", recording)
        scores = model.loglikelihood(requests)
        monkeypatch.undo()
        assert shapes and all(kept < width for width, kept in shapes), shapes  # a window in every call
        assert [s for s, _ in scores] == pytest.approx([s for s, _ in reference], abs=1e-4)
        assert [g for _, g in scores] == [g for _, g in reference]


def test_logits_window_with_a_prompt_tuning_adapter(tiny_model, tasks, tmp_path):
    """A soft prompt adds positions in front of the row; the window counts from the end, so the scores
    equal ``hf`` with the same adapter (peft= on both), and the window is still used."""
    from lm_eval.models.huggingface import HFLM
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from culture_tasks.hf_prompt import HFPromptLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    get_peft_model(base, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).save_pretrained(tmp_path / "pt")
    kwargs = dict(pretrained=str(tiny_model), peft=str(tmp_path / "pt"), device="cpu", dtype="float32", batch_size=8)
    model = HFPromptLM(**kwargs)
    windows, inner = [], model.logits_window
    model.logits_window = lambda inps: windows.append((inps.shape[1], inner(inps))) or windows[-1][1]
    requests = _requests(model, tasks, chat=False, limit=6)
    scores = model.loglikelihood(requests)
    reference = HFLM(**kwargs).loglikelihood(requests)
    assert windows and all(keep is not None and keep < width for width, keep in windows), windows
    assert [s for s, _ in scores] == pytest.approx([s for s, _ in reference], abs=1e-4)
    assert [s for s, _ in scores] != pytest.approx([s for s, _ in HFLM(**{**kwargs, "peft": None}).loglikelihood(requests)],
                                                     abs=1e-4)  # the adapter is applied


def test_generation_from_a_prompt_longer_than_the_context(tiny_model, tmp_path):
    """A soft prompt of 4 virtual tokens and contexts of 3: the attention mask has a 1 for every virtual
    token (``attention_mask[:, :n]`` had only as many columns as the context, and generate crashed), and
    the greedy answers are those of [soft prompt | context] decoded by hand, at batch sizes 1 and 2."""
    from lm_eval.api.instance import Instance
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from culture_tasks.hf_prompt import HFPromptLM, soft_prompt_after_padding

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    get_peft_model(base, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).save_pretrained(tmp_path / "pt")
    contexts = ["Answer:", "Yes No", "Options: A B C D"]
    answers = {}
    for batch in (1, 2):
        lm = HFPromptLM(pretrained=str(tiny_model), peft=str(tmp_path / "pt"), device="cpu", dtype="float32",
                        batch_size=batch)
        requests = [Instance("generate_until", {}, (c, {"until": ["\n\n"], "max_gen_toks": 5, "do_sample": False}), i)
                    for i, c in enumerate(contexts)]
        answers[batch] = lm.generate_until(requests, disable_tqdm=True)
    ids = lm.tokenizer(contexts[:2], return_tensors="pt")["input_ids"]
    assert ids.shape[1] < 4
    embeds, mask = soft_prompt_after_padding(lm.model, ids, torch.ones_like(ids))
    assert mask.shape == embeds.shape[:2] and bool(mask.all())
    assert answers[1] == answers[2]
    prompt, table = lm.model.get_prompt(batch_size=1)[0], lm.model.get_base_model().get_input_embeddings()
    for context, answer in zip(contexts, answers[1]):
        seq = lm.tokenizer(context)["input_ids"]
        new = []
        for _ in range(5):
            with torch.no_grad():
                embeds = torch.cat([prompt[None], table(torch.tensor([seq + new]))], dim=1)
                new.append(int(lm.model.get_base_model()(inputs_embeds=embeds).logits[0, -1].argmax()))
        assert answer == lm.tokenizer.decode(new, skip_special_tokens=True).split("\n\n")[0]


def test_enable_thinking_refuses_loglikelihood_as_hf_does(tiny_model):
    from lm_eval.api.instance import Instance

    from culture_tasks.hf_prompt import HFPromptLM

    lm = HFPromptLM(pretrained=str(tiny_model), device="cpu", dtype="float32", enable_thinking=True,
                    think_end_token="</s>")
    with pytest.raises(ValueError, match="enable_thinking=True is not compatible with loglikelihood"):
        lm.loglikelihood([Instance("loglikelihood", {}, ("Answer:", " A"), 0)], disable_tqdm=True)


def test_a_token_cache_that_is_not_a_folder_stops_before_the_model_loads(tiny_model, tmp_path, monkeypatch):
    from lm_eval.models.huggingface import HFLM

    from culture_tasks.hf_prompt import HFPromptLM
    from culture_tasks.token_cache import TokenCacheError

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(HFLM, "_create_model", no_load)
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(TokenCacheError, match="token_cache=.*file"):
            HFPromptLM(pretrained=str(tiny_model), device="cpu", dtype="float32", token_cache=str(bad))
    monkeypatch.chdir(tmp_path)
    for flag in (False, True, "false"):  # lm-eval parses token_cache=false into False: no folder "False"
        with pytest.raises(ValueError, match=r"token_cache= takes a folder \(token_cache=DIR\), got"):
            HFPromptLM(pretrained=str(tiny_model), device="cpu", dtype="float32", token_cache=flag)
    assert not (tmp_path / "False").exists()


def test_boolean_model_args_parse_strictly(tiny_model, monkeypatch):
    # lm-eval turns only true/false into booleans: add_bos_token=no arrived as the string "no" (a TypeError from the
    # tokenizer once the model had loaded), logits_cache=off and trust_remote_code=no as strings Python reads as true
    from lm_eval.models.huggingface import HFLM
    from lm_eval.utils import simple_parse_args_string

    from culture_tasks.hf_prompt import HFPromptLM

    args = simple_parse_args_string(f"pretrained={tiny_model},dtype=float32,add_bos_token=no,logits_cache=0")
    assert (args["add_bos_token"], args["logits_cache"]) == ("no", 0)
    lm = HFPromptLM(**args, device="cpu")
    assert (lm.add_bos_token, lm.logits_cache) == (False, False)
    assert lm.tok_encode("Answer: A") == HFPromptLM(pretrained=str(tiny_model), dtype="float32", device="cpu",
                                                   add_bos_token=False).tok_encode("Answer: A")

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(HFLM, "_create_model", no_load)
    for name, bad in (("add_bos_token", "flase"), ("trust_remote_code", "off"), ("logits_cache", None),
                      ("parallelize", 2)):
        with pytest.raises(ValueError) as err:
            HFPromptLM(pretrained=str(tiny_model), device="cpu", **{name: bad})
        assert str(err.value) == f"hf-prompt: {name}= takes true or false (or yes/no/1/0), got {bad!r}"


def test_token_cache_fingerprint_ignores_padding_state_and_sees_split_special_tokens(tiny_model):
    from transformers import AutoTokenizer

    from culture_tasks.token_cache import tokenizer_fingerprint

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    before = tokenizer_fingerprint(tok, {})
    tok(["a", "bbb bb"], padding="longest", truncation=True, max_length=3)  # as lm-eval's generation batches do
    assert tokenizer_fingerprint(tok, {}) == before  # the same folder: the ids of our (unpadded) calls are the same
    split = AutoTokenizer.from_pretrained(str(tiny_model), split_special_tokens=True)
    assert split("x<s>y")["input_ids"] != tok("x<s>y")["input_ids"]
    assert tokenizer_fingerprint(split, {}) != before  # other ids: another folder


@pytest.mark.parametrize("damage", ["cut", "empty", "flipped"])
def test_a_cut_or_damaged_shard_stops_the_run_naming_it(tmp_path, damage):
    from culture_tasks.token_cache import TokenCache, TokenCacheError

    TokenCache(tmp_path, "f" * 32).encode(["ab", "cd"], lambda misses: [[1, 2, 3] for _ in misses])
    shard = next((tmp_path / ("f" * 32)).glob("shard-*.npz"))
    data = bytearray(shard.read_bytes())
    if damage == "flipped":
        data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data[:len(data) // 2] if damage == "cut" else b"" if damage == "empty" else data))
    with pytest.raises(TokenCacheError, match=f"{shard}: unreadable token cache shard"):
        TokenCache(tmp_path, "f" * 32).encode(["ab"], lambda misses: [[0] for _ in misses])


def test_batch_size_probe_gets_the_widest_window_of_a_batch(lm):
    """lm-eval's ``auto`` probe forwards rows of equal length; it must be given the window of the most
    uneven batch of its size, not the longest continuation alone. Rows of input lengths 10, 9, 4, 3
    (one-token continuations of contexts of 10, 9, 4, 3 and 3 tokens: the last two share a row) in
    longest-first batches of 2: spreads 1, 5, 1, so the probe keeps 5 + 1 = 6 positions of a width of 10;
    of 3 rows: 10 - 4 = 6 and 9 - 3 = 6, so 7; one row alone keeps the continuation only."""
    encoded = [([1] * 10, [2]), ([1] * 9, [2]), ([3] * 4, [2]), ([4] * 3, [2]), ([4] * 3, [5])]
    assert lm.row_lengths(encoded) == [10, 9, 4, 3]
    lm._longest_continuation, lm._row_lengths, lm._probing = 1, lm.row_lengths(encoded), True
    try:
        probe = torch.ones((2, 10), dtype=torch.long)
        assert lm.logits_window(probe) == 6
        assert lm.logits_window(torch.ones((3, 10), dtype=torch.long)) == 7
        assert lm.logits_window(torch.ones((1, 10), dtype=torch.long)) == 1
        assert lm.logits_window(torch.ones((4, 10), dtype=torch.long)) == 8
        # a later probe (auto:N) on requests of at most 4 tokens: only rows 4 and 3 can follow it
        assert lm.logits_window(torch.ones((2, 4), dtype=torch.long)) == 2
        assert lm.logits_window(torch.ones((2, 9), dtype=torch.long)) == 6  # rows 9, 4, 3
        # any two consecutive rows, right-padded as lm-eval pads them, keep at most what the probe kept
        lm._probing = False
        assert [lm.logits_window(torch.tensor(batch)) for batch in (
            [[1] * 10, [1] * 9 + [0]], [[1] * 9, [3] * 4 + [0] * 5], [[3] * 4, [4] * 3 + [0]])] == [2, 6, 2]
    finally:
        lm._longest_continuation, lm._row_lengths, lm._probing = None, [], False


def test_batch_size_probe_runs_with_the_window(lm, monkeypatch):
    """``_detect_batch_size`` (lm-eval's probe) sees the probe's window: the model is asked for
    ``logits_to_keep`` = the widest batch window, and the flag is off again afterwards."""
    seen = []
    monkeypatch.setattr(type(lm), "_model_call", lambda self, inps, attn_mask=None, labels=None: (
        seen.append(self.logits_window(inps)), torch.zeros((inps.shape[0], inps.shape[1], 4)))[1])
    encoded = [([1] * 10, [2]), ([3] * 4, [2])]
    lm._longest_continuation, lm._row_lengths = 1, lm.row_lengths(encoded)
    try:
        lm._detect_batch_size([(("a", "b"), [1] * 10, [2]), (("c", "d"), [3] * 4, [2])], 0)
    finally:
        lm._longest_continuation, lm._row_lengths = None, []
    assert seen and set(seen) == {10 - 4 + 1} and lm._probing is False


def test_a_token_cache_this_user_cannot_write_is_read_only(tmp_path, monkeypatch, caplog):
    """A cache folder filled by another user and read-only to this one serves its hits and keeps no
    new shard (writing one failed after the model had loaded); a warning says so."""
    import os

    from culture_tasks import token_cache
    from culture_tasks.token_cache import TokenCache

    TokenCache(tmp_path, "f" * 32).encode(["ab"], lambda misses: [[7, 8] for _ in misses])
    shards = sorted(tmp_path.rglob("shard-*.npz"))
    monkeypatch.setattr(token_cache.os, "access", lambda path, mode: not mode & os.W_OK)
    cache = TokenCache(tmp_path, "f" * 32)
    assert cache.encode(["ab", "cd"], lambda misses: [[5] for _ in misses]) == [[7, 8], [5]]
    assert (cache.hits, cache.misses) == (1, 1)
    assert sorted(tmp_path.rglob("shard-*.npz")) == shards
    assert "is not writable; cached ids are read, new ones are not kept" in caplog.text


def test_hf_prompt_records_the_fingerprint_of_the_weights_it_loaded(tiny_model, tmp_path):
    """model_sha is the model folder's fingerprint before the weights loaded: a folder rewritten during the run
    does not change what the result file says was evaluated (lm-eval asks get_model_info at the end)."""
    import shutil

    from culture_tasks.hf_prompt import HFPromptLM
    from culture_tasks.fingerprints import loaded_fingerprint

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    before = loaded_fingerprint(folder)
    lm = HFPromptLM(pretrained=str(folder), device="cpu", dtype="float32", batch_size=8)
    (folder / "config.json").write_text((folder / "config.json").read_text() + "\n")
    info = lm.get_model_info()
    assert info["model_sha"] == before != loaded_fingerprint(folder)
    assert "peft_sha" not in info  # no adapter: nothing recorded


def test_hf_prompt_fingerprints_the_subfolder_it_loads(tiny_model, tmp_path):
    """``pretrained=ROOT,subfolder=ckpt`` loads ROOT/ckpt: model_sha named ROOT's top level, here no file at all
    (the SHA-256 of nothing), the same for every checkpoint put there."""
    import shutil

    from culture_tasks.fingerprints import loaded_fingerprint
    from culture_tasks.hf_prompt import HFPromptLM

    shutil.copytree(tiny_model, tmp_path / "root" / "ckpt")
    lm = HFPromptLM(pretrained=str(tmp_path / "root"), subfolder="ckpt", device="cpu", dtype="float32", batch_size=8)
    assert lm.get_model_info()["model_sha"] == loaded_fingerprint(tiny_model) != loaded_fingerprint(tmp_path / "root")
