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

import inspect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from aligners import distributed


@dataclass
class _Item:
    doc: dict
    context: list[int]
    option_tokens: list[int]


def _left_padded(token_embeds: torch.Tensor, lengths: torch.Tensor, prompts: torch.Tensor | None):
    """Left-padded token embeddings (B, W, d) -> rows ``[padding | soft prompt | tokens]``, their attention mask
    and position ids: every row ends at its answer position, and its real tokens sit at the positions they
    have alone (soft prompt from 0, as peft puts it before an unpadded row)."""
    batch, width, dim = token_embeds.shape
    n = 0 if prompts is None else prompts.shape[1]
    device = token_embeds.device
    pads = (width - lengths).to(device)[:, None]
    j = torch.arange(n + width, device=device)[None]
    embeds = token_embeds
    if n:
        # [soft prompt | padding | tokens] -> [padding | soft prompt | tokens], one gather for the batch
        source = torch.where(j < pads, j + n, torch.where(j < pads + n, j - pads, j))
        embeds = torch.gather(torch.cat([prompts, token_embeds], dim=1), 1, source[..., None].expand(-1, -1, dim))
    mask = (j >= pads).long().expand(batch, -1).contiguous()
    return embeds, mask, (j - pads).clamp(min=0).expand(batch, -1).contiguous()


def _answer_logits(model, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Logits at the last position of every row, through the model's own forward: families that rescale
    or cap their logits there (Granite's ``logits_scaling``, Cohere's ``logit_scale``, Gemma's softcapping)
    score as lm-eval scores them. ``logits_to_keep=1`` runs the LM head on that position only."""
    kwargs = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    logits = model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False, **kwargs).logits
    return logits[:, -1]


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

    def batches(self, n_cand: int, batch_size: int) -> list[list[tuple[int, int]]]:
        """(candidate, item) rows in forward batches of similar length: sorted longest first (stable, as
        lm-eval's ``Collator`` sorts its requests), so a batch pads only to its own longest row and the
        padding of a whole generation is close to none. The first batch is the widest: a batch size that
        does not fit fails at once."""
        pairs = [(c, i) for c in range(n_cand) for i in range(len(self.items))]
        pairs.sort(key=lambda pair: -len(self.items[pair[1]].context))
        return [pairs[start:start + batch_size] for start in range(0, len(pairs), batch_size)]

    def token_counts(self, n_cand: int, batch_size: int, virtual_tokens: int = 0) -> dict[str, int]:
        """Token positions one generation runs through the model: ``needed`` (every row unpadded),
        ``computed`` (the length-sorted batches of ``batches``) and ``unsorted`` (rows batched in
        candidate order, each batch padded to its longest row)."""
        lengths = [virtual_tokens + len(item.context) for item in self.items]
        rows = [lengths[i] for _ in range(n_cand) for i in range(len(self.items))]
        unsorted = sum(len(rows[s:s + batch_size]) * max(rows[s:s + batch_size])
                       for s in range(0, len(rows), batch_size))
        computed = sum(len(chunk) * max(lengths[i] for _, i in chunk) for chunk in self.batches(n_cand, batch_size))
        return {"needed": sum(rows), "computed": computed, "unsorted": unsorted}

    def option_loglikelihoods(self, soft_prompts: torch.Tensor | None, batch_size: int = 64) -> list[list[list[float]]]:
        """[candidate][item][option] log-likelihoods; ``soft_prompts`` is (C, n, d) or None."""
        model = self.lm.model
        embed = model.get_input_embeddings()
        device = embed.weight.device
        dtype = embed.weight.dtype
        n_cand = 1 if soft_prompts is None else soft_prompts.shape[0]
        pad_id = self.lm.tokenizer.pad_token_id or 0

        def run(chunk: list[tuple[int, int]]) -> list[list[float]]:
            lengths = torch.tensor([len(self.items[i].context) for _, i in chunk])
            width = int(lengths.max())
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            for row, (_, i) in enumerate(chunk):
                ctx = self.items[i].context
                ids[row, width - len(ctx):] = torch.tensor(ctx)
            prompts = None
            if soft_prompts is not None:
                prompts = soft_prompts[[c for c, _ in chunk]].to(device=device, dtype=dtype)
            # rows padded on the left: every answer is at the last position, where the LM head runs;
            # the attention mask and position ids make each row score as it does alone (as in
            # lm-eval's right-padded batches), whatever batch it shares
            embeds, mask, positions = _left_padded(embed(ids.to(device)), lengths, prompts)
            answer = _answer_logits(model, embeds, mask, positions).float().log_softmax(-1)
            return [answer[row, self.items[i].option_tokens].tolist() for row, (_, i) in enumerate(chunk)]

        batches = self.batches(n_cand, batch_size)
        out = [[None] * len(self.items) for _ in range(n_cand)]
        with torch.no_grad():
            # under torchrun each process runs its share of these very batches (one process: all)
            for chunk, scores in zip(batches, distributed.map_shared(run, batches)):
                for (c, i), lls in zip(chunk, scores):
                    out[c][i] = lls
        return out

    def metrics(self, loglikelihoods: Sequence[Sequence[float]], keys: Sequence[str] | None = None
                ) -> dict[str, float]:
        """The task's own per-document results and aggregations for one candidate.

        ``keys`` limits the aggregations to those metrics: the search needs only its loss, not
        the bootstrap intervals (about 18 ms each) that the task also reports."""
        per_metric = defaultdict(list)
        for item, lls in zip(self.items, loglikelihoods):
            for key, value in self.task.process_results(item.doc, [(ll, False) for ll in lls]).items():
                if keys is None or key in keys:
                    per_metric[key].append(value)
        aggregations = self.task.aggregation()
        return {key: float(aggregations[key](values)) for key, values in per_metric.items()}
