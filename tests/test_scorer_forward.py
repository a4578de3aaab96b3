"""The aligner's scorer goes through the model's own forward, so it scores as lm-eval does.

Granite divides its logits by ``logits_scaling`` and Cohere multiplies them by ``logit_scale``
inside ``forward``; a scorer that called the decoder and the LM head by hand would miss that.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from culture_tasks.paths import task_manager
from tests.lm_eval_helpers import evaluate

TASK = "vsm13_usa"
FAMILIES = {
    "granite": ("GraniteConfig", "GraniteForCausalLM", {"logits_scaling": 4.0, "embedding_multiplier": 2.0}),
    "cohere": ("CohereConfig", "CohereForCausalLM", {"logit_scale": 0.25}),
}


def _tiny_family(tiny_model, path, family: str):
    """The tiny Llama's tokenizer with a random model of another family (same sizes)."""
    import transformers
    from transformers import AutoTokenizer

    config_name, model_name, extra = FAMILIES[family]
    path.mkdir(parents=True, exist_ok=True)
    for name in tiny_model.iterdir():
        if "token" in name.name or name.name == "special_tokens_map.json":
            shutil.copy(name, path / name.name)
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    config = getattr(transformers, config_name)(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, initializer_range=0.2, **extra,
    )
    torch.manual_seed(0)
    getattr(transformers, model_name)(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tm(data_root):
    """One task manager for the module (indexing the task folder costs about 0.4 s each time): every
    ``TaskScorer`` loads its own task from it, and no test changes it."""
    return task_manager({"data_dir": str(data_root)})


@pytest.fixture(scope="module")
def scorers(tiny_model, tm, tmp_path_factory):
    """family -> (model folder, TaskScorer), built once per module on first use."""
    built = {}

    def get(family):
        if family not in built:
            model_dir = _tiny_family(tiny_model, tmp_path_factory.mktemp(family), family)
            built[family] = model_dir, _scorer(model_dir, tm)
        return built[family]

    return get


@pytest.fixture(scope="module")
def soft_prompt():
    return torch.randn(4, 32, generator=torch.Generator().manual_seed(1)) * 0.3


def _scorer(model_dir, task_manager, **kwargs):
    from lm_eval.models.huggingface import HFLM

    from aligners.scoring import TaskScorer

    lm = HFLM(pretrained=str(model_dir), device="cpu", dtype="float32", batch_size=8)
    return TaskScorer(lm, TASK, task_manager, **kwargs)


def _lm_eval_loglikelihoods(model_dir, scorer, peft=None) -> list[list[float]]:
    """lm-eval's own ``loglikelihood`` for the task's requests, as [item][option]."""
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(model_dir), peft=None if peft is None else str(peft), device="cpu",
              dtype="float32", batch_size=8)
    instances = sorted(scorer.task.instances, key=lambda i: (i.doc_id, i.idx))
    lls = [ll for ll, _ in lm.loglikelihood(instances)]
    out, k = [], 0
    for item in scorer.items:
        out.append(lls[k:k + len(item.option_tokens)])
        k += len(item.option_tokens)
    assert k == len(lls)
    return out


def _by_hand_without_rescaling(scorer, soft_prompt) -> list[list[float]]:
    """The old scorer: decoder and LM head called by hand, one unpadded row at a time."""
    model = scorer.lm.model
    out = []
    with torch.no_grad():
        for item in scorer.items:
            embeds = model.get_input_embeddings()(torch.tensor([item.context]))
            embeds = torch.cat([soft_prompt[None], embeds], dim=1)
            hidden = model.model(inputs_embeds=embeds).last_hidden_state[0, -1]
            out.append(model.lm_head(hidden).log_softmax(-1)[item.option_tokens].tolist())
    return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_scorer_equals_lm_eval_loglikelihood_for_families_that_rescale_logits(family, scorers, soft_prompt, tmp_path):
    from aligners.soft_prompt import save_prompt_tuning_adapter

    model_dir, scorer = scorers(family)
    assert len(scorer.items) == 24
    assert len(scorer.groups) == 3  # shared stems computed once: these scores go through that path

    plain = scorer.option_loglikelihoods(None, batch_size=16)[0]
    torch.testing.assert_close(torch.tensor(plain), torch.tensor(_lm_eval_loglikelihoods(model_dir, scorer)),
                               rtol=0, atol=1e-5)

    adapter = tmp_path / "adapter"
    save_prompt_tuning_adapter(scorer.lm.model, soft_prompt, adapter, str(model_dir), init="vocab")
    prompted = scorer.option_loglikelihoods(soft_prompt[None], batch_size=16)[0]
    expected = torch.tensor(_lm_eval_loglikelihoods(model_dir, scorer, peft=adapter))
    torch.testing.assert_close(torch.tensor(prompted), expected, rtol=0, atol=1e-5)
    # the soft prompt changes the scores, and skipping the family's rescaling would change them too
    assert (torch.tensor(prompted) - torch.tensor(plain)).abs().max() > 1e-2
    assert (torch.tensor(_by_hand_without_rescaling(scorer, soft_prompt)) - expected).abs().max() > 1e-2


def test_aligner_loss_equals_lm_eval_vsm13_l1_on_granite(scorers, data_root, soft_prompt, tmp_path):
    from aligners.soft_prompt import save_prompt_tuning_adapter

    model_dir, scorer = scorers("granite")
    loss = scorer.metrics(scorer.option_loglikelihoods(soft_prompt[None], batch_size=16)[0])["vsm13_l1"]
    adapter = tmp_path / "adapter"
    save_prompt_tuning_adapter(scorer.lm.model, soft_prompt, adapter, str(model_dir), init="vocab")
    out = evaluate(model_dir, [TASK], data_root, peft=str(adapter))
    assert out["results"][TASK]["vsm13_l1,none"] == pytest.approx(loss, abs=1e-4)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_scorer_does_not_depend_on_batch_size(family, scorers):
    _, scorer = scorers(family)
    prompts = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(2)) * 0.3
    results = {bs: torch.tensor(scorer.option_loglikelihoods(prompts, batch_size=bs)) for bs in (1, 7, 64)}
    # rows padded to other widths run other matrix shapes: a few float32 ulps (measured <= 1e-6 at |ll| ~ 6)
    assert results[1].shape == (2, 24, 5)
    torch.testing.assert_close(results[7], results[1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(results[64], results[1], rtol=1e-6, atol=1e-6)
    assert (results[1][0] - results[1][1]).abs().max() > 1e-3  # the candidates differ


def _scorer_with_lengths(lengths):
    """A scorer over items of these context lengths, for the batching arithmetic only."""
    from aligners.scoring import TaskScorer, _Item

    return _scorer_with_contexts([[1] * n for n in lengths])


def _scorer_with_contexts(contexts, min_stem=None):
    from aligners.scoring import MIN_STEM, TaskScorer, _Item, stem_groups

    scorer = TaskScorer.__new__(TaskScorer)
    scorer.items = [_Item({}, list(c), [0]) for c in contexts]
    scorer.groups = stem_groups(contexts, MIN_STEM if min_stem is None else min_stem)
    scorer.window = None  # no sliding window
    scorer.running_state = False  # attention layers only
    return scorer


def test_length_sorted_batches_pad_only_to_their_own_longest_row():
    scorer = _scorer_with_lengths([3, 5, 4])
    # 2 candidates x 3 items, longest first, ties in (candidate, item) order
    assert scorer.batches(2, 2) == [[(0, 1), (1, 1)], [(0, 2), (1, 2)], [(0, 0), (1, 0)]]
    # rows in candidate order are 3 5 | 4 3 | 5 4: padded to 5, 4, 5 -> 28 positions; sorted: 5 5 | 4 4 | 3 3 -> 24
    # (the items share 2 tokens, too few for a stem pass: computed = no_stems)
    assert scorer.token_counts(2, 2) == {"needed": 24, "computed": 24, "no_stems": 24, "unsorted": 28}
    # 4 virtual tokens per row: 7 9 | 8 7 | 9 8 -> 2 x (9 + 8 + 9) = 52; sorted: 2 x (9 + 8 + 7) = 48
    assert scorer.token_counts(2, 2, virtual_tokens=4) == {"needed": 48, "computed": 48, "no_stems": 48,
                                                           "unsorted": 52}
    # an odd batch size: 5 5 4 | 4 3 3 -> 15 + 12
    assert scorer.token_counts(2, 3) == {"needed": 24, "computed": 27, "no_stems": 27, "unsorted": 30}


def test_length_sorted_batches_score_as_candidate_order_batches(tiny_model, tm, monkeypatch):
    """The old batching (rows in candidate order, padded to each batch's longest) gives the same
    log-likelihoods, in the same [candidate][item] places, as the length-sorted batches."""
    from aligners.scoring import TaskScorer

    scorer = _scorer(tiny_model, tm, shared_stems=False)
    lengths = [len(item.context) for item in scorer.items]
    assert len(set(lengths)) > 5  # rows of mixed lengths: sorting moves them between batches
    prompts = torch.randn(3, 4, 32, generator=torch.Generator().manual_seed(3)) * 0.3
    counts = scorer.token_counts(3, 16, virtual_tokens=4)
    assert counts["computed"] < counts["unsorted"]
    sorted_lls = torch.tensor(scorer.option_loglikelihoods(prompts, batch_size=16))

    def candidate_order(self, n_cand, batch_size, items):
        pairs = [(c, i) for c in range(n_cand) for i in items]
        return [pairs[s:s + batch_size] for s in range(0, len(pairs), batch_size)]

    monkeypatch.setattr(TaskScorer, "batches", candidate_order)
    unsorted_lls = torch.tensor(scorer.option_loglikelihoods(prompts, batch_size=16))
    alone = torch.tensor(scorer.option_loglikelihoods(prompts, batch_size=1))  # every row unpadded, on its own
    assert sorted_lls.shape == (3, 24, 5)
    torch.testing.assert_close(sorted_lls, unsorted_lls, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sorted_lls, alone, rtol=1e-6, atol=1e-6)
    assert (sorted_lls[0] - sorted_lls[1]).abs().max() > 1e-3  # the candidates differ: a mix-up would show
    assert (sorted_lls[:, 0] - sorted_lls[:, 1]).abs().max() > 1e-3  # and so do the items


STEM = list(range(100, 110))  # 10 tokens


def test_stem_groups_take_the_cheapest_runs_of_shared_prefixes():
    from aligners.scoring import StemGroup, stem_groups

    contexts = [
        STEM + [1, 2],     # 0: 12 tokens
        [7, 7, 7],         # 1: shares nothing
        STEM + [3],        # 2: 11 tokens
        STEM + [1, 5, 6],  # 3: 13 tokens, shares 11 with item 0
        STEM,              # 4: the stem alone: its answer position (the 10th token) is its own
    ]
    # 0, 2, 3, 4 share 10 tokens, item 4 has only 10: the stem stops at 9 and saves 3 x 9 = 27 positions;
    # {0, 3} alone would share 11 (saving 11) and {2, 4} 9 (saving 9): 20 < 27
    assert stem_groups(contexts, min_stem=8) == [StemGroup(9, (0, 2, 3, 4))]
    # without item 4: {0, 2, 3} share 10 (saves 20) vs {0, 3} sharing 11 (saves 11)
    assert stem_groups(contexts[:4], min_stem=8) == [StemGroup(10, (0, 2, 3))]
    # two families that share only 2 tokens with each other: two groups
    other = [100, 101] + [50] * 9
    assert stem_groups([STEM + [1], other + [1], STEM + [2], other + [2]], min_stem=8) == [
        StemGroup(10, (0, 2)), StemGroup(11, (1, 3))]
    # a shared prefix under min_stem is not worth a pass
    assert stem_groups([STEM + [1], STEM + [2]], min_stem=11) == []
    assert stem_groups([[1, 2], [3, 4]], min_stem=1) == []


def test_token_counts_with_a_shared_stem():
    # items 0-2 share STEM (10 tokens); item 3 shares nothing
    scorer = _scorer_with_contexts([STEM + [1, 2], STEM + [3], STEM + [4, 5, 6], [9] * 5], min_stem=8)
    assert [(g.stem, g.items) for g in scorer.groups] == [(10, (0, 1, 2))]
    # 2 candidates, batch 4, 1 virtual token; full rows 13 12 14 6
    #   stem pass: 2 candidates x (1 + 10) = 22
    #   rests 2 1 3 per candidate, longest first: 3 3 2 2 | 1 1 -> 4 x 3 + 2 x 1 = 14
    #   item 3 alone: 6 6 -> 12
    counts = scorer.token_counts(2, 4, virtual_tokens=1)
    assert counts["needed"] == 2 * (13 + 12 + 14 + 6)
    assert counts["computed"] == 22 + 14 + 12
    # without stems, length-sorted: 14 14 13 13 | 12 12 6 6 -> 4 x 14 + 4 x 12
    assert counts["no_stems"] == 4 * 14 + 4 * 12


@pytest.mark.parametrize("chat_template", [False, True])
def test_shared_stems_score_as_full_rows(tiny_model, tm, chat_template):
    """Keys/values of a shared stem computed once per candidate give each row's log-likelihoods as the
    row computed in full does, at any batch size, with and without soft prompts; and a generation runs
    fewer positions."""
    stems = _scorer(tiny_model, tm, chat_template=chat_template)
    full = _scorer(tiny_model, tm, chat_template=chat_template, shared_stems=False)
    assert [len(g.items) for g in stems.groups] and not full.groups
    assert len(stems.groups[0].items) == 10  # VSM13 items 1-10 share their question stem
    counts = stems.token_counts(3, 16, virtual_tokens=4)
    assert counts["computed"] < 0.85 * counts["no_stems"]
    prompts = torch.randn(3, 4, 32, generator=torch.Generator().manual_seed(5)) * 0.3
    for soft in (None, prompts):
        expected = torch.tensor(full.option_loglikelihoods(soft, batch_size=64))
        for batch_size in (1, 5, 64):
            got = torch.tensor(stems.option_loglikelihoods(soft, batch_size=batch_size))
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=2e-6)
    assert (expected[0] - expected[1]).abs().max() > 1e-3  # candidates differ: a row mix-up would show


def _tiny_sliding_window_model(tiny_model, path, window: int, architecture: str = "gemma2"):
    """A random Gemma2 (``sliding_window``) or GPT-Neo (``window_size``, its local layers) on the tiny
    tokenizer whose sliding-window layers see the last ``window`` positions."""
    import transformers
    from transformers import AutoTokenizer

    path.mkdir(parents=True, exist_ok=True)
    for name in tiny_model.iterdir():
        if "token" in name.name or name.name == "special_tokens_map.json":
            shutil.copy(name, path / name.name)
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    if architecture == "gpt_neo":
        config = transformers.GPTNeoConfig(
            vocab_size=len(tok), hidden_size=32, num_layers=2, num_heads=4, max_position_embeddings=2048,
            attention_types=[[["global", "local"], 1]], window_size=window, initializer_range=0.2, **ids)
        transformers.GPTNeoForCausalLM(config).save_pretrained(path)
        return path
    config = transformers.Gemma2Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=2048, initializer_range=0.2,
        sliding_window=window, **ids)
    transformers.Gemma2ForCausalLM(config).save_pretrained(path)
    return path


@pytest.mark.parametrize("architecture", ["gemma2", "gpt_neo"])
def test_shared_stems_of_rows_longer_than_a_sliding_window_score_as_full_rows(tiny_model, tm, tmp_path,
                                                                              architecture):
    """A stem pass's batched rows hold padding between the stem and each row's rest, and a sliding
    window counts positions, padding included: rows longer than the window are scored in full (the same
    log-likelihoods as lm-eval's), shorter ones still share their stems."""
    short = _scorer(_tiny_sliding_window_model(tiny_model, tmp_path / "w16", 16, architecture), tm)
    longest = max(len(item.context) for item in short.items)
    assert short.groups and longest > 16 + 10  # VSM13's rows are longer than the window
    prompts = torch.randn(3, 4, 32, generator=torch.Generator().manual_seed(5)) * 0.3
    full = _scorer(tmp_path / "w16", tm, shared_stems=False)
    # no stem pass for these rows: the positions computed are those of full rows
    counts = short.token_counts(3, 5, virtual_tokens=4)
    assert counts["computed"] == counts["no_stems"]
    for soft in (None, prompts):
        expected = torch.tensor(full.option_loglikelihoods(soft, batch_size=64))
        for batch_size in (1, 5, 64):
            got = torch.tensor(short.option_loglikelihoods(soft, batch_size=batch_size))
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=2e-6)
    # a window that holds every row with its soft prompt: the stems are used, and agree
    wide = _scorer(_tiny_sliding_window_model(tiny_model, tmp_path / "wide", longest + 4 + 1, architecture), tm)
    counts = wide.token_counts(3, 16, virtual_tokens=4)
    assert counts["computed"] < 0.85 * counts["no_stems"]
    wide_full = _scorer(tmp_path / "wide", tm, shared_stems=False)
    torch.testing.assert_close(torch.tensor(wide.option_loglikelihoods(prompts, batch_size=5)),
                               torch.tensor(wide_full.option_loglikelihoods(prompts, batch_size=64)),
                               rtol=1e-6, atol=2e-6)


def _tiny_hybrid_model(tiny_model, path, model_type: str, **layers):
    """A random model of a family whose layers keep a running state in the cache (LFM2's conv layers, Bamba's
    SSM layers, Mamba) on the tiny tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path.mkdir(parents=True, exist_ok=True)
    for name in tiny_model.iterdir():
        if "token" in name.name or name.name == "special_tokens_map.json":
            shutil.copy(name, path / name.name)
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    config = AutoConfig.for_model(model_type, vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                  pad_token_id=tok.pad_token_id, initializer_range=0.2, **layers)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    return path


HYBRIDS = {
    "lfm2": {"intermediate_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
             "layer_types": ["conv", "full_attention"]},
    "bamba": {"intermediate_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "mamba_n_heads": 4,
              "mamba_d_head": 16, "mamba_d_state": 8, "mamba_n_groups": 1, "attn_layer_indices": [1],
              "mamba_chunk_size": 16},
}


@pytest.mark.parametrize("model_type", sorted(HYBRIDS))
def test_a_model_whose_layers_keep_a_running_state_scores_every_row_in_full(tiny_model, tm, tmp_path, model_type):
    """A conv or SSM layer's cache is a state of the whole prefix, not rows of keys/values: the stem pass stopped
    in generation 1 with "'LinearAttentionLayer' object has no attribute 'batch_select_indices'". Such a model
    shares no stems, and scores as lm-eval does at every batch size."""
    from aligners.scoring import keeps_running_state

    model_dir = _tiny_hybrid_model(tiny_model, tmp_path / model_type, model_type, **HYBRIDS[model_type])
    stems = _scorer(model_dir, tm)
    assert stems.groups and stems.running_state and stems.usable_groups(4) == []
    counts = stems.token_counts(3, 5, virtual_tokens=4)
    assert counts["computed"] == counts["no_stems"]
    plain = torch.tensor(stems.option_loglikelihoods(None, batch_size=5)[0])
    torch.testing.assert_close(plain, torch.tensor(_lm_eval_loglikelihoods(model_dir, stems)), rtol=0, atol=1e-5)
    prompts = torch.randn(3, 4, 32, generator=torch.Generator().manual_seed(5)) * 0.3
    expected = torch.tensor(_scorer(model_dir, tm, shared_stems=False).option_loglikelihoods(prompts, batch_size=64))
    for batch_size in (1, 5, 64):
        torch.testing.assert_close(torch.tensor(stems.option_loglikelihoods(prompts, batch_size=batch_size)),
                                   expected, rtol=1e-6, atol=2e-6)
    assert not keeps_running_state(_scorer(tiny_model, tm).lm.model)  # attention layers only: stems are shared


def _newline_chat_model(tiny_model, path):
    """The tiny model with a ChatML-like template whose generation prompt ends in a newline (as
    SmolLM2's and Qwen's do): lm-eval's ``_encode_pair`` moves that newline into every option."""
    from transformers import AutoTokenizer

    from tests.tiny_model import CHAT_TEMPLATE

    shutil.copytree(tiny_model, path)
    template = CHAT_TEMPLATE.replace("<|assistant|>{% endif %}", "<|assistant|>\n{% endif %}")
    assert template != CHAT_TEMPLATE
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.chat_template = template
    tokenizer.save_pretrained(path)
    return path


def test_options_sharing_a_first_token_score_as_lm_eval(tiny_model, tm, soft_prompt, tmp_path):
    """Under a template ending in a newline each option is two tokens ("\\n", letter): the scorer runs
    the shared newline with the context and adds its log-likelihood, as lm-eval sums both tokens."""
    from aligners.soft_prompt import save_prompt_tuning_adapter

    model_dir = _newline_chat_model(tiny_model, tmp_path / "model")
    scorer = _scorer(model_dir, tm, chat_template=True)
    newline = scorer.lm.tokenizer.encode("\n", add_special_tokens=False)
    assert [item.shared for item in scorer.items] == [1] * 24
    assert all(item.context[-1:] == newline for item in scorer.items)
    plain = torch.tensor(scorer.option_loglikelihoods(None, batch_size=16)[0])
    torch.testing.assert_close(plain, torch.tensor(_lm_eval_loglikelihoods(model_dir, scorer)), rtol=0, atol=1e-5)

    adapter = tmp_path / "adapter"
    save_prompt_tuning_adapter(scorer.lm.model, soft_prompt, adapter, str(model_dir), init="vocab")
    expected = torch.tensor(_lm_eval_loglikelihoods(model_dir, scorer, peft=adapter))
    full = _scorer(model_dir, tm, chat_template=True, shared_stems=False)
    assert scorer.groups and not full.groups
    for batch_size in (1, 5, 64):
        for s in (scorer, full):
            got = torch.tensor(s.option_loglikelihoods(soft_prompt[None], batch_size=batch_size)[0])
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # the newline's own log-likelihood is part of each option's: the letter alone would be larger
    assert (expected - plain).abs().max() > 1e-2


def test_options_that_differ_before_their_last_token_are_refused():
    from aligners.scoring import split_options

    assert split_options([[5, 7], [5, 8]]) == ([5], [7, 8])
    assert split_options([[7], [8]]) == ([], [7, 8])
    assert split_options([[5, 7], [6, 8]]) is None  # first tokens differ
    assert split_options([[5, 7], [8]]) is None  # lengths differ


def _tiny_padded_vocabulary(tiny_model, path, extra: int):
    """The tiny Llama's tokenizer with a random Llama of ``extra`` embedding rows more than it has tokens (a hub
    Qwen2.5's 151,936 rows for 151,665 tokens), large weights so that the rows past the tokens hold mass."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path.mkdir(parents=True, exist_ok=True)
    for name in tiny_model.iterdir():
        if "token" in name.name or name.name == "special_tokens_map.json":
            shutil.copy(name, path / name.name)
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    config = LlamaConfig(vocab_size=len(tok) + extra, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=False, initializer_range=0.2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    return path, len(tok)


def test_a_model_with_more_embedding_rows_than_tokens_scores_a_prompt_as_lm_eval_with_peft(tiny_model, tm, soft_prompt,
                                                                                          tmp_path):
    """lm_eval ... peft= resizes the embeddings to the tokenizer's length where the config's vocabulary is larger
    (and without peft= it does not): the candidates' scores are over the tokenizer's logits, the plain model's over
    all of them, each as lm_eval scores it; the search scored candidates over all the rows (differing here by more
    than 1e-2), so the loss it reported was not lm_eval's of its checkpoint."""
    from aligners.soft_prompt import save_prompt_tuning_adapter

    model_dir, tokens = _tiny_padded_vocabulary(tiny_model, tmp_path / "padded", extra=64)
    scorer = _scorer(model_dir, tm)
    assert scorer.prompted_vocab == tokens and scorer.lm.model.config.vocab_size == tokens + 64
    plain = scorer.option_loglikelihoods(None, batch_size=16)[0]
    torch.testing.assert_close(torch.tensor(plain), torch.tensor(_lm_eval_loglikelihoods(model_dir, scorer)),
                               rtol=0, atol=1e-5)
    adapter = tmp_path / "adapter"
    save_prompt_tuning_adapter(scorer.lm.model, soft_prompt, adapter, str(model_dir), init="vocab")
    expected = torch.tensor(_lm_eval_loglikelihoods(model_dir, scorer, peft=adapter))
    for batch_size in (1, 16):
        prompted = scorer.option_loglikelihoods(soft_prompt[None], batch_size=batch_size)[0]
        torch.testing.assert_close(torch.tensor(prompted), expected, rtol=0, atol=1e-5)
    scorer.prompted_vocab = None  # every row's logits, as before
    over_all_rows = torch.tensor(scorer.option_loglikelihoods(soft_prompt[None], batch_size=16)[0])
    assert (over_all_rows - expected).abs().max() > 1e-2


def test_a_model_whose_tokenizer_outgrows_its_embeddings_is_refused_before_it_loads(tiny_model, tmp_path):
    """lm_eval ... peft= would grow such a model's embeddings with random rows before scoring a checkpoint: no
    search could report its loss. One line, before the model loads."""
    import json

    from aligners.align import AlignmentError, check_model

    model_dir = tmp_path / "short"
    shutil.copytree(tiny_model, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    tokens = config["vocab_size"]
    (model_dir / "config.json").write_text(json.dumps({**config, "vocab_size": tokens - 3}))
    with pytest.raises(AlignmentError) as err:
        check_model(str(model_dir))
    assert str(err.value) == (
        f"--model {model_dir}: its tokenizer holds {tokens} tokens, its config embeds {tokens - 3}: lm_eval scores a "
        "prompt checkpoint (peft=) after growing the embeddings to the tokenizer's length with random rows, so it "
        "would not score the search's losses; give a model whose embeddings cover its tokenizer")
