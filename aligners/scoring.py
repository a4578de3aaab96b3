"""Score lm-eval multiple-choice tasks with many soft prompts at once, exactly as lm-eval would.

The requests come from lm-eval's own task objects (same prompts, chat template, target
delimiter) and are tokenised by lm-eval's own ``HFLM._encode_pair`` (same BOS handling); the
scores go through the task's own ``process_results`` and aggregation functions. What this
module adds is speed: every option label is one token, so one forward pass per (soft prompt,
item) gives all option log-likelihoods at the answer position, and the whole population x items
grid runs in a few large batches. A soft prompt is prepended to the input embeddings where peft's
prompt tuning puts it, before every token including BOS.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from culture_tasks.paths import TASKS_DIR  # noqa: E402,F401


@dataclass
class _Item:
    doc: dict
    context: list[int]
    option_tokens: list[int]


def _answer_logits(model, embeds: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Logits at one position per row. For decoder + LM-head models only those positions go
    through the head (vocab x hidden per token: 1 GFLOP each on a 128k-vocabulary 8B model)."""
    rows = torch.arange(embeds.shape[0], device=embeds.device)
    decoder, head = getattr(model, "model", None), model.get_output_embeddings()
    if decoder is not None and head is not None and type(model).__name__.endswith("ForCausalLM") \
            and getattr(model.config, "final_logit_softcapping", None) is None:
        hidden = decoder(inputs_embeds=embeds).last_hidden_state
        return head(hidden[rows, last])
    return model(inputs_embeds=embeds).logits[rows, last]


class TaskScorer:
    """One lm-eval multiple-choice task, ready to score under many soft prompts."""

    def __init__(self, lm, task_name: str, task_manager, *, chat_template: bool = False):
        from lm_eval.tasks import get_task_dict

        self.lm = lm
        self.task_name = task_name
        self.task = get_task_dict([task_name], task_manager)[task_name]
        if self.task.OUTPUT_TYPE != "multiple_choice":
            raise ValueError(f"{task_name} is not a multiple-choice task")
        self.task.build_all_requests(
            rank=0,
            world_size=1,
            apply_chat_template=chat_template,
            chat_template=lm.apply_chat_template if chat_template else None,
            tokenizer_name=getattr(lm, "tokenizer_name", "") if chat_template else "",
        )
        by_doc: dict[int, list] = defaultdict(list)
        for inst in self.task.instances:
            by_doc[inst.doc_id].append(inst)
        self.items: list[_Item] = []
        for doc_id in sorted(by_doc):
            insts = sorted(by_doc[doc_id], key=lambda i: i.idx)
            contexts, tokens = set(), []
            for inst in insts:
                context, continuation = inst.arguments
                ctx_enc, cont_enc = lm._encode_pair(context, continuation)
                if len(cont_enc) != 1:
                    raise ValueError(
                        f"{task_name}: option {continuation!r} is {len(cont_enc)} tokens for this tokenizer; "
                        "the batched scorer needs one-token option labels"
                    )
                contexts.add(tuple(ctx_enc))
                tokens.append(cont_enc[0])
            if len(contexts) != 1:
                raise ValueError(f"{task_name}: options of doc {doc_id} do not share one context")
            self.items.append(_Item(insts[0].doc, list(contexts.pop()), tokens))

    def option_loglikelihoods(self, soft_prompts: torch.Tensor | None, batch_size: int = 64) -> list[list[list[float]]]:
        """[candidate][item][option] log-likelihoods; ``soft_prompts`` is (C, n, d) or None."""
        model = self.lm.model
        embed = model.get_input_embeddings()
        device = embed.weight.device
        dtype = embed.weight.dtype
        n_cand = 1 if soft_prompts is None else soft_prompts.shape[0]
        n_virtual = 0 if soft_prompts is None else soft_prompts.shape[1]
        pairs = [(c, i) for c in range(n_cand) for i in range(len(self.items))]
        out = [[None] * len(self.items) for _ in range(n_cand)]
        pad_id = self.lm.tokenizer.pad_token_id or 0
        with torch.no_grad():
            for start in range(0, len(pairs), batch_size):
                chunk = pairs[start:start + batch_size]
                width = max(len(self.items[i].context) for _, i in chunk)
                ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
                for row, (_, i) in enumerate(chunk):
                    ctx = self.items[i].context
                    ids[row, : len(ctx)] = torch.tensor(ctx)
                embeds = embed(ids.to(device))
                if soft_prompts is not None:
                    prompts = soft_prompts[[c for c, _ in chunk]].to(device=device, dtype=dtype)
                    embeds = torch.cat([prompts, embeds], dim=1)
                # right padding and no attention mask, as lm-eval's HFLM calls a causal model
                last = torch.tensor([n_virtual + len(self.items[i].context) - 1 for _, i in chunk], device=device)
                answer = _answer_logits(model, embeds, last).float().log_softmax(-1)
                for row, (c, i) in enumerate(chunk):
                    out[c][i] = answer[row, self.items[i].option_tokens].tolist()
        return out

    def metrics(self, loglikelihoods: Sequence[Sequence[float]]) -> dict[str, float]:
        """The task's own per-document results and aggregations for one candidate."""
        per_metric = defaultdict(list)
        for item, lls in zip(self.items, loglikelihoods):
            for key, value in self.task.process_results(item.doc, [(ll, False) for ll in lls]).items():
                per_metric[key].append(value)
        aggregations = self.task.aggregation()
        return {key: float(aggregations[key](values)) for key, values in per_metric.items()}
