"""Score lm-eval multiple-choice tasks with many soft prompts at once, exactly as lm-eval would.

The requests come from lm-eval's own task objects (same prompts, chat template, target
delimiter) and are tokenised by lm-eval's own ``HFLM._encode_pair`` (same BOS handling); the
scores go through the task's own ``process_results`` and aggregation functions. What this
module adds is speed: the options of an item differ only in their last token (one-token labels;
under a chat template lm-eval's ``_encode_pair`` moves the template's trailing newline into every
option, which then share that first token), so one forward pass per (soft prompt, item) over the
context and the shared tokens gives all option log-likelihoods, and the whole population x items
grid runs in a few large batches. A soft prompt is prepended to the input embeddings where peft's
prompt tuning puts it, before every token including BOS. Items that begin alike (VSM13 items 1-10
share one question stem; a chat template gives every item the same opening) have that shared
prefix ("stem") computed once per soft prompt and its keys/values reused for each item's rest.
"""

from __future__ import annotations

import copy
import inspect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from aligners import distributed
from culture_tasks.survey.tasks import BOTH_ORDERS_MARK


# the shortest shared prefix worth a pass of its own: below it the extra forward call costs more than
# the positions it saves
MIN_STEM = 8


def loaded_dtype(lm) -> str:
    """The dtype an lm-eval model's weights hold once loaded ("bfloat16"): ``--dtype auto`` takes the model's
    own, which the run records beside the requested one and warns about when it is half precision."""
    return str(lm.model.dtype).removeprefix("torch.")


def load_hflm(model: str, *, device: str, dtype: str, batch_size: int, peft: str | None = None):
    """lm-eval's HF model as the aligner and culture-steer score with it: the one loader, so both warn alike
    about half precision, also where ``--dtype auto`` gives the model's own half-precision dtype."""
    from lm_eval.models.huggingface import HFLM

    from culture_tasks.cli_args import warn_half_precision

    warn_half_precision(dtype)
    lm = HFLM(pretrained=model, peft=peft, device=device, dtype=dtype, batch_size=batch_size)
    if dtype == "auto":  # the model's own dtype, often half precision: warned as if it were named
        warn_half_precision(loaded_dtype(lm))
    return lm


@dataclass
class _Item:
    doc: dict
    context: list[int]  # lm-eval's context tokens, then the tokens every option begins with
    option_tokens: list[int]  # each option's last token
    shared: int = 0  # how many of ``context``'s last tokens every option begins with (their log-likelihood counts)


def split_options(continuations: Sequence[Sequence[int]]) -> tuple[list[int], list[int]] | None:
    """(the tokens all options begin with, each option's last token) when the options are equally long and
    differ only in their last token; None otherwise."""
    shared = list(continuations[0][:-1])
    if any(len(c) != len(shared) + 1 or list(c[:-1]) != shared for c in continuations):
        return None
    return shared, [c[-1] for c in continuations]


@dataclass(frozen=True)
class StemGroup:
    """Items whose contexts all begin with the same ``stem`` tokens."""
    stem: int
    items: tuple[int, ...]


@dataclass(frozen=True)
class _Unit:
    """One share of a generation's work: ``rows`` (candidate, item) scored in full in one forward pass,
    or, with ``group``, the group's stem for ``rows``' candidates once, then each row's rest."""
    rows: tuple[tuple[int, int], ...]
    group: StemGroup | None = None


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def stem_groups(contexts: Sequence[Sequence[int]], min_stem: int = MIN_STEM) -> list[StemGroup]:
    """The runs of the sorted contexts whose shared prefix, computed once, saves the most positions.

    A run of k contexts with a stem of s tokens costs s + sum(len - s) positions instead of
    sum(len); the partition is the cheapest one (dynamic programming over the sorted order, where
    items with a common prefix sit together). A stem stops one token short of its shortest member:
    each member's answer position is computed in its own pass. Stems under ``min_stem`` tokens are
    not used; items in no run are left out of the result."""
    order = sorted(range(len(contexts)), key=lambda i: list(contexts[i]))
    lengths = [len(contexts[i]) for i in order]
    total = [0]
    for n in lengths:
        total.append(total[-1] + n)
    best = [0] * (len(order) + 1)
    choice: list[tuple[int, int]] = [(0, 0)] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        best[end], choice[end] = best[end - 1] + lengths[end - 1], (end - 1, 0)
        shared, shortest = lengths[end - 1], lengths[end - 1]
        for start in range(end - 2, -1, -1):
            # the common prefix of a sorted run is the smallest common prefix of neighbours
            shared = min(shared, common_prefix(contexts[order[start]], contexts[order[start + 1]]))
            shortest = min(shortest, lengths[start])
            stem = min(shared, shortest - 1)
            if stem < min_stem:
                break  # a longer run only shares less
            cost = best[start] + total[end] - total[start] - (end - start - 1) * stem
            if cost < best[end]:
                best[end], choice[end] = cost, (start, stem)
    groups, end = [], len(order)
    while end:
        start, stem = choice[end]
        if stem:
            groups.append(StemGroup(stem, tuple(sorted(order[start:end]))))
        end = start
    return sorted(groups, key=lambda g: g.items)


def sliding_window(model) -> int | None:
    """How many positions a sliding-window layer of ``model`` sees, or None: ``sliding_window`` (Gemma 2
    and 3, Mistral, Phi-3) or ``window_size`` (GPT-Neo's local layers); the smaller where both are set."""
    config = model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    windows = [getattr(config, name, None) for name in ("sliding_window", "window_size")]
    windows = [w for w in windows if isinstance(w, int) and not isinstance(w, bool) and w > 0]
    return min(windows, default=None)


def config_vocab(config) -> int:
    """The vocabulary size lm-eval's HF model reads from a config: the text config's where there is one (Gemma 3)."""
    text = getattr(config, "text_config", None)
    return getattr(text, "vocab_size", None) or config.vocab_size


def peft_vocab(lm) -> int | None:
    """How many logits lm-eval scores a peft checkpoint over, where that is not all of the model's: with ``peft=``
    its HF model resizes the embeddings to the tokenizer's length when the config's vocabulary differs (a hub
    Qwen2.5: 151,936 rows, 151,665 tokens), dropping the rows past it from every log-softmax; without ``peft=`` it
    does not. None where the two agree."""
    tokens = len(lm.tokenizer)
    return tokens if tokens != config_vocab(lm.model.config) else None


def keeps_running_state(model) -> bool:
    """Whether a layer of ``model`` keeps a recurrent or convolution state in its cache (Mamba; the SSM or
    conv layers of hybrids such as LFM2, Bamba, Jamba, Falcon-H1), as transformers builds the cache for its
    config. Such a state sums up the whole prefix instead of holding one key/value row per position: a stem's
    is not split by candidate as key/value rows are (LFM2's, Bamba's, Jamba's, Mamba's stopped the stem pass
    with an AttributeError), and would have to run on across the padding between the stem and each rest."""
    from transformers import DynamicCache

    layers = getattr(DynamicCache(config=model.config), "layers", None) or []
    return any(hasattr(layer, "recurrent_states") or hasattr(layer, "conv_states") for layer in layers)


def _cache_rows(cache, rows: torch.Tensor):
    """A copy of a key/value cache holding ``rows`` of its batch (repeats allowed); ``cache`` is left
    as it is, so every forward batch takes the rows it needs from the one stem pass."""
    if hasattr(cache, "layers"):  # layered caches: selecting rows replaces each layer's tensors, so copy the layers
        view = copy.copy(cache)
        view.layers = [copy.copy(layer) for layer in cache.layers]
    else:
        view = copy.deepcopy(cache)
    view.batch_select_indices(rows)
    return view


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


def _forward(model, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, past=None,
             keep_cache: bool = False, keep: int = 1):
    """The model's own forward: families that rescale or cap their logits there (Granite's
    ``logits_scaling``, Cohere's ``logit_scale``, Gemma's softcapping) score as lm-eval scores them.
    ``logits_to_keep`` runs the LM head on the last ``keep`` positions only, where every row's answer is."""
    params = inspect.signature(model.forward).parameters
    kwargs = {"logits_to_keep": keep} if "logits_to_keep" in params else {}
    if past is not None:
        kwargs["cache" if "cache" in params else "past_key_values"] = past  # transformers >= 5.24 names it cache
    return model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                 use_cache=keep_cache or past is not None, **kwargs)


def _returned_cache(output):
    return output.cache if getattr(output, "cache", None) is not None else output.past_key_values


def _answer_logits(model, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, past=None,
                   keep: int = 1) -> torch.Tensor:
    """Logits at the last ``keep`` positions of every row, (B, keep, vocabulary)."""
    return _forward(model, embeds, mask, positions, past, keep=keep).logits[:, -keep:]


class TaskScorer:
    """One lm-eval multiple-choice task, ready to score under many soft prompts."""

    def __init__(self, lm, task_name: str, task_manager, *, chat_template: bool = False, shared_stems: bool = True):
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
            contexts, continuations = set(), []
            for inst in insts:
                context, continuation = inst.arguments
                ctx_enc, cont_enc = lm._encode_pair(context, continuation)
                contexts.add(tuple(ctx_enc))
                continuations.append(cont_enc)
            if len(contexts) != 1:
                raise ValueError(f"{task_name}: options of doc {doc_id} do not share one context")
            split = split_options(continuations)
            if split is None:
                raise ValueError(
                    f"{task_name}: the options of doc {doc_id} ({', '.join(repr(i.arguments[1]) for i in insts)}) are "
                    f"{[len(c) for c in continuations]} tokens for this tokenizer; the batched scorer needs options "
                    "that differ only in their last token")
            shared, tokens = split
            self.items.append(_Item(insts[0].doc, list(contexts.pop()) + shared, tokens, len(shared)))
        # a stem ends before the shared option tokens: every row's rest holds all the positions it is scored at
        self.groups = stem_groups([item.context[:len(item.context) - item.shared] for item in self.items]) \
            if shared_stems else []
        self.window = sliding_window(lm.model)
        self.running_state = keeps_running_state(lm.model)
        self.prompted_vocab = peft_vocab(lm)  # the logits a candidate is scored over, as lm_eval ... peft= scores

    def usable_groups(self, virtual_tokens: int) -> list[StemGroup]:
        """``groups``, or none when a row with its soft prompt is not shorter than the model's sliding window
        (a stem pass's batched rows hold padding between the stem and each rest, and the window counts
        positions, padding included, so a rest would lose sight of stem tokens its full row sees), or when a
        layer keeps a running state (``keeps_running_state``): every row is then scored in full."""
        if self.running_state:
            return []
        longest = virtual_tokens + max((len(item.context) for item in self.items), default=0)
        return self.groups if self.window is None or longest < self.window else []

    def batches(self, n_cand: int, batch_size: int, items: Sequence[int] | None = None) -> list[list[tuple[int, int]]]:
        """(candidate, item) rows in forward batches of similar length: sorted longest first (stable, as
        lm-eval's ``Collator`` sorts its requests), so a batch pads only to its own longest row and the
        padding of a whole generation is close to none. The first batch is the widest: a batch size that
        does not fit fails at once. ``items``: only these (default: all)."""
        items = range(len(self.items)) if items is None else items
        pairs = [(c, i) for c in range(n_cand) for i in items]
        pairs.sort(key=lambda pair: -len(self.items[pair[1]].context))
        return [pairs[start:start + batch_size] for start in range(0, len(pairs), batch_size)]

    def units(self, n_cand: int, batch_size: int, virtual_tokens: int = 0) -> list[_Unit]:
        """A generation's work in self-contained shares (the processes of a distributed run each take
        some): per stem group (``usable_groups``), ``batch_size`` candidates at a time (one stem pass, then
        their rows of the group in batches of ``batch_size``); the items in no group in ``batches``."""
        groups = self.usable_groups(virtual_tokens)
        grouped = {i for g in groups for i in g.items}
        units = [_Unit(tuple((c, i) for c in range(start, min(start + batch_size, n_cand)) for i in g.items), g)
                 for g in groups for start in range(0, n_cand, batch_size)]
        loose = [i for i in range(len(self.items)) if i not in grouped]
        return units + [_Unit(tuple(chunk)) for chunk in self.batches(n_cand, batch_size, loose)]

    def _suffix_batches(self, unit: _Unit, batch_size: int) -> list[list[tuple[int, int]]]:
        rows = sorted(unit.rows, key=lambda row: -len(self.items[row[1]].context))
        return [rows[start:start + batch_size] for start in range(0, len(rows), batch_size)]

    def token_counts(self, n_cand: int, batch_size: int, virtual_tokens: int = 0) -> dict[str, int]:
        """Token positions one generation runs through the model: ``needed`` (every row unpadded),
        ``computed`` (what ``option_loglikelihoods`` runs: stems once per candidate, length-sorted
        batches), ``no_stems`` (every row in full, length-sorted batches) and ``unsorted`` (rows
        batched in candidate order, each batch padded to its longest row)."""
        lengths = [virtual_tokens + len(item.context) for item in self.items]
        rows = [lengths[i] for _ in range(n_cand) for i in range(len(self.items))]
        unsorted = sum(len(rows[s:s + batch_size]) * max(rows[s:s + batch_size])
                       for s in range(0, len(rows), batch_size))
        no_stems = sum(len(chunk) * max(lengths[i] for _, i in chunk) for chunk in self.batches(n_cand, batch_size))
        computed = 0
        for unit in self.units(n_cand, batch_size, virtual_tokens):
            if unit.group is None:
                computed += len(unit.rows) * max(lengths[i] for _, i in unit.rows)
                continue
            computed += len({c for c, _ in unit.rows}) * (virtual_tokens + unit.group.stem)
            computed += sum(len(chunk) * max(lengths[i] - virtual_tokens - unit.group.stem for _, i in chunk)
                            for chunk in self._suffix_batches(unit, batch_size))
        return {"needed": sum(rows), "computed": computed, "no_stems": no_stems, "unsorted": unsorted}

    def option_loglikelihoods(self, soft_prompts: torch.Tensor | None, batch_size: int = 64) -> list[list[list[float]]]:
        """[candidate][item][option] log-likelihoods; ``soft_prompts`` is (C, n, d) or None."""
        model = self.lm.model
        embed = model.get_input_embeddings()
        device = embed.weight.device
        dtype = embed.weight.dtype
        n_cand = 1 if soft_prompts is None else soft_prompts.shape[0]
        pad_id = self.lm.tokenizer.pad_token_id or 0

        def left_padded_ids(chunk, skip: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
            """Each row's context after its first ``skip`` tokens, padded on the left."""
            lengths = torch.tensor([len(self.items[i].context) - skip for _, i in chunk])
            width = int(lengths.max())
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            for row, (_, i) in enumerate(chunk):
                ids[row, width - int(lengths[row]):] = torch.tensor(self.items[i].context[skip:])
            return ids.to(device), lengths

        keep = 1 + max((item.shared for item in self.items), default=0)

        def options(chunk, logits: torch.Tensor) -> list[list[float]]:
            """Each option's log-likelihood: its last token at the last position, plus the shared tokens
            before it (lm-eval sums the log-likelihoods of all continuation tokens)."""
            if soft_prompts is not None and self.prompted_vocab:  # lm_eval ... peft= scores over the tokenizer's
                logits = logits[..., :self.prompted_vocab]            # tokens (``peft_vocab``)
            logprobs = logits.float().log_softmax(-1)
            out = []
            for row, (_, i) in enumerate(chunk):
                item = self.items[i]
                shared = sum(float(logprobs[row, keep - 1 - item.shared + j, token])
                             for j, token in enumerate(item.context[len(item.context) - item.shared:]))
                out.append([shared + ll for ll in logprobs[row, -1, item.option_tokens].tolist()])
            return out

        def prompts_of(candidates: list[int]) -> torch.Tensor | None:
            return None if soft_prompts is None else soft_prompts[candidates].to(device=device, dtype=dtype)

        def run_rows(chunk) -> list[list[float]]:
            ids, lengths = left_padded_ids(chunk)
            # rows padded on the left: every answer is at the last position, where the LM head runs;
            # the attention mask and position ids make each row score as it does alone (as in
            # lm-eval's right-padded batches), whatever batch it shares
            embeds, mask, positions = _left_padded(embed(ids), lengths, prompts_of([c for c, _ in chunk]))
            return options(chunk, _answer_logits(model, embeds, mask, positions, keep=keep))

        def run_stem(unit: _Unit) -> list[list[float]]:
            candidates = sorted({c for c, _ in unit.rows})
            stem = torch.tensor(self.items[unit.group.items[0]].context[:unit.group.stem], device=device)
            embeds = embed(stem)[None].expand(len(candidates), -1, -1)
            prompts = prompts_of(candidates)
            if prompts is not None:
                embeds = torch.cat([prompts, embeds], dim=1)
            done = embeds.shape[1]  # [soft prompt | stem], unpadded: the same length in every row
            ones = torch.ones(len(candidates), done, dtype=torch.long, device=device)
            cache = _returned_cache(_forward(model, embeds, ones, torch.arange(done, device=device)
                                             .expand(len(candidates), -1), keep_cache=True))
            where = {c: k for k, c in enumerate(candidates)}
            scores = {}
            for chunk in self._suffix_batches(unit, batch_size):
                # [stem | padding | rest]: the padding masked out, the rest at the positions it has in the full row
                ids, lengths = left_padded_ids(chunk, skip=unit.group.stem)
                pads = (ids.shape[1] - lengths).to(device)[:, None]
                j = torch.arange(ids.shape[1], device=device)[None]
                mask = torch.cat([ones[:1].expand(len(chunk), -1), (j >= pads).long()], dim=1)
                positions = done + (j - pads).clamp(min=0)
                past = _cache_rows(cache, torch.tensor([where[c] for c, _ in chunk], device=device))
                scores.update(zip(chunk, options(chunk, _answer_logits(model, embed(ids), mask, positions, past,
                                                                            keep=keep))))
            return [scores[row] for row in unit.rows]

        def run(unit: _Unit) -> list[list[float]]:
            return run_rows(unit.rows) if unit.group is None else run_stem(unit)

        units = self.units(n_cand, batch_size, 0 if soft_prompts is None else soft_prompts.shape[1])
        out = [[None] * len(self.items) for _ in range(n_cand)]
        with torch.no_grad():
            # under torchrun each process runs its share of these very units (one process: all)
            for unit, scores in zip(units, distributed.map_shared(run, units)):
                for (c, i), lls in zip(unit.rows, scores):
                    out[c][i] = lls
        return out

    def metrics(self, loglikelihoods: Sequence[Sequence[float]], keys: Sequence[str] | None = None,
                items: Sequence[int] | None = None) -> dict[str, float]:
        """The task's own per-document results and aggregations for one candidate (``loglikelihoods``: of
        every item).

        ``keys`` limits the aggregations to those metrics: the search needs only its loss, not
        the bootstrap intervals (about 18 ms each) that the task also reports. ``items``: aggregate only
        the documents at these positions, as a task holding only them would: one order's half of a ``_balanced``
        task is scored as that order's own task, without the marker that asks its aggregation for both orders."""
        per_metric = defaultdict(list)
        for i in range(len(self.items)) if items is None else items:
            item, lls = self.items[i], loglikelihoods[i]
            doc = item.doc if items is None or not item.doc.get(BOTH_ORDERS_MARK) else {**item.doc, BOTH_ORDERS_MARK: ""}
            for key, value in self.task.process_results(doc, [(ll, False) for ll in lls]).items():
                if keys is None or key in keys:
                    per_metric[key].append(value)
        aggregations = self.task.aggregation()
        return {key: float(aggregations[key](values)) for key, values in per_metric.items()}
