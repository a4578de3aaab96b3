"""``hf-prompt`` tokenises log-likelihood requests in batches, each distinct string once; the token ids,
and so the scores, are those of lm-eval's own one-request-at-a-time ``_encode_pair``."""

from __future__ import annotations

import pytest

from culture_tasks.paths import task_manager

TASKS = ["culturellm_arabic_offenseval2020", "culturellm_korean_hate_speech_detection", "wvs_usa", "vsm13_usa_persona"]


@pytest.fixture(scope="module")
def lm(tiny_model):
    from culture_tasks.hf_prompt import HFPromptLM

    return HFPromptLM(pretrained=str(tiny_model), device="cpu", dtype="float32", batch_size=8)


def _requests(lm, data_root, chat: bool, limit: int = 30):
    from lm_eval.tasks import get_task_dict

    tasks = get_task_dict(TASKS, task_manager({"data_dir": str(data_root)}))
    out = []
    for name in TASKS:
        task = tasks[name]
        task.build_all_requests(limit=limit, rank=0, world_size=1, apply_chat_template=chat,
                                chat_template=lm.apply_chat_template if chat else None,
                                tokenizer_name=lm.tokenizer_name if chat else "")
        out += task.instances
    return out


@pytest.mark.parametrize("chat", [False, True])
def test_batched_encoding_equals_encode_pair(lm, data_root, chat):
    requests = _requests(lm, data_root, chat)
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


def test_hf_prompt_scores_as_hf(lm, tiny_model, data_root):
    from lm_eval.models.huggingface import HFLM

    requests = _requests(lm, data_root, chat=False, limit=8)
    hf = HFLM(pretrained=str(tiny_model), device="cpu", dtype="float32", batch_size=8)
    assert lm.loglikelihood(requests) == hf.loglikelihood(requests)
