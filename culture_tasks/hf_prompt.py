"""lm-eval's ``hf`` model with batched generation from prompt-tuning adapters and batched tokenisation.

lm-eval pads generation batches on the left, and peft's prompt tuning puts its virtual tokens in
front of the whole row, padding included, and drops ``position_ids`` (peft issue 1093). A short
row then sees its soft prompt several positions further away than it would alone, so its greedy
answer depends on the batch it lands in. With transformers 5, peft 0.21's ``generate`` also
looks for the cache under its old name (``past_key_values``) and inserts the prompt again at
every decoding step, so even a batch of one drifts after a few tokens. ``hf-prompt`` is lm-eval's ``HFLM`` unchanged except
for generation from a prompt-tuning (or p-tuning) adapter: each row becomes
``[padding | soft prompt | tokens]`` with a matching attention mask, so the position ids that
transformers derives from the mask are those of the row alone, and the base model generates
from these embeddings. Log-likelihood requests are padded on the right, where peft is already
correct, and go through ``HFLM`` as they are.

Plain ``lm_eval --model hf`` cannot be changed from a task, so generation from a prompt-tuning adapter
by any other lm-eval ``HFLM`` is refused when it starts (``check_generation_route``, in ``HFLM.generate_until``,
wrapped once when this module is imported: the generative CultureLLM tasks' loader lives here, so loading
them installs it); ``python -m culture_tasks.harness --model hf-prompt ...`` runs lm-eval's own command line
with this model registered.

The second change is speed only. lm-eval tokenises log-likelihood requests one at a time, and every
request twice (``_encode_pair``: context + continuation, then the context alone), so a document with
k options has its context encoded 2k times: for the whole CultureLLM suite 300,098 tokenizer calls
over 150,049 requests, the largest part of the suite's time outside the model. ``hf-prompt``
encodes each distinct string once, many per tokenizer call (a fast tokenizer runs a batch on all
cores), with the same special-token choice as ``tok_encode``; the token ids are those of
``_encode_pair`` (tested), so the scores are too. With ``token_cache=DIR`` the ids are also kept on
disk per tokenizer (``culture_tasks.token_cache``), so a second run with the same tokenizer - the
next checkpoint of the same base model - encodes only strings it has not seen.

The third change is speed and memory only. For log-likelihoods ``HFLM`` takes the LM head and a
full-vocabulary log-softmax at every position of every row, and keeps only the continuation's few
positions: with a 128k vocabulary that is most of the memory of a long batch. lm-eval accepts logits
for fewer positions than the input (``_loglikelihood_tokens`` aligns them from the end, as it does for
a soft prompt's extra positions), so ``hf-prompt`` asks the model for the last positions only
(``logits_to_keep``): enough to hold every row's continuation. A row's length is bounded from below
by its trailing padding (lm-eval pads with id 0; a real id 0 at the end only widens the window), and
the continuation by the longest of the call, so no scored position is ever cut (tested).
lm-eval's ``batch_size=auto`` probe runs rows of equal length, whose window would be the longest
continuation alone, while a real batch of uneven rows keeps every position from its shortest row's
end; so the probe is given the widest window any batch of its size can have from its request on
(the largest length spread of that many consecutive requests, in lm-eval's longest-first order, no
longer than the probe's, plus the longest continuation): the batch size it finds holds every real
batch's logits, and ``auto:N``'s later probes, on shorter requests, are not held to the spread of
the longest ones.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import numpy as np
import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import _add_special_kwargs, has_bos_prefix
from lm_eval.models.utils_hf import stop_sequences_criteria

from culture_tasks.fingerprints import loaded_fingerprint, loaded_folders
from culture_tasks.metadata import as_bool
from culture_tasks.token_cache import TokenCache, check_root, tokenizer_fingerprint

MODEL_NAME = "hf-prompt"
ROUTE = f"python -m culture_tasks.harness --model {MODEL_NAME} --model_args pretrained=...,peft=... (same flags as lm_eval)"
# peft types whose adapter is a block of input embeddings put in front of the tokens
EMBEDDING_PROMPTS = ("PROMPT_TUNING", "P_TUNING")

# strings per tokenizer call when encoding requests in batches
ENCODE_CHUNK = 4096


def _local_fingerprint(folder) -> str | None:
    """``fingerprints.loaded_fingerprint`` of a local model or adapter folder; None for a hub id or a model object."""
    return loaded_fingerprint(folder) if isinstance(folder, (str, Path)) and folder else None


@functools.cache
def boolean_args(cls: type) -> dict[str, bool]:
    """``{name: None allowed}`` for each constructor argument of ``cls`` and its bases typed ``bool`` or ``bool | None``."""
    found: dict[str, bool] = {}
    for klass in reversed(cls.__mro__):
        if "__init__" not in vars(klass):
            continue
        for name, param in inspect.signature(vars(klass)["__init__"]).parameters.items():
            note = param.annotation
            kinds = {k.strip() for k in (note if isinstance(note, str) else inspect.formatannotation(note)).split("|")}
            if "bool" in kinds and kinds <= {"bool", "None"}:
                found[name] = "None" in kinds
    return found


def strict_booleans(cls: type, kwargs: dict, who: str = MODEL_NAME) -> dict:
    """``kwargs`` with every boolean argument of ``cls`` read by ``metadata.as_bool`` (an error names ``who``): lm-eval
    turns only true/false into booleans, so ``add_bos_token=no`` arrived as the string "no", which Python reads as
    true."""
    out = dict(kwargs)
    for name, none_allowed in boolean_args(cls).items():
        value = kwargs.get(name)
        if name not in kwargs or isinstance(value, bool) or (value is None and none_allowed):
            continue
        try:
            out[name] = as_bool(value)
        except ValueError:
            raise ValueError(f"{who}: {name}= takes true or false (or yes/no/1/0), got {value!r}") from None
    return out


@register_model(MODEL_NAME)
class HFPromptLM(HFLM):
    """``HFLM`` whose batched generation from a prompt-tuning adapter equals one-at-a-time generation."""

    # read by check_generation_route (an attribute, not isinstance: a reloaded module's class has it too)
    PROMPT_AFTER_PADDING = True

    def __init__(self, *args, peft: str | None = None, token_cache: str | None = None, **kwargs):
        kwargs = strict_booleans(type(self), kwargs)  # before anything loads
        # token_cache=DIR: request token ids kept on disk per tokenizer (culture_tasks.token_cache);
        # checked before anything loads (the folder here, the tokenizer in _create_tokenizer)
        if isinstance(token_cache, bool) or (isinstance(token_cache, str)
                                             and token_cache.strip().lower() in ("true", "false", "none")):
            # lm-eval turns token_cache=false into False: a folder named "False" would be made
            raise ValueError(f"{MODEL_NAME}: token_cache= takes a folder (token_cache=DIR), got {token_cache!r}; "
                             "leave token_cache= out to keep no cache")
        self.token_cache = None if token_cache in (None, "") else str(token_cache)
        if self.token_cache:
            check_root(self.token_cache)
        # taken before the weights load: what the run read, whatever is written into the folders later
        # (pretrained= inside subfolder=, as lm-eval loads it: the top level may hold no weights at all)
        folders = loaded_folders({**kwargs, "pretrained": kwargs.get("pretrained", args[0] if args else None),
                                  "peft": peft})
        self._fingerprints = {"model_sha": _local_fingerprint(folders.get("pretrained")),
                              "peft_sha": _local_fingerprint(folders.get("peft"))}
        super().__init__(*args, peft=peft, **kwargs)
        self._token_caches: dict[str, TokenCache] = {}
        self._longest_continuation: int | None = None  # set during loglikelihood (logits_window)
        self._row_lengths: list[int] = []  # the call's input lengths, longest first (probe_window)
        self._probing = False  # inside lm-eval's batch-size probe
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        self._takes_logits_to_keep = "logits_to_keep" in inspect.signature(base.forward).parameters

    def get_model_info(self) -> dict:
        """``HFLM.get_model_info``, whose ``model_sha`` and ``peft_sha`` are hub commits (empty for a local
        folder), with a local model's and adapter's content fingerprint taken before they loaded
        (``fingerprints.loaded_fingerprint``, ``sha256-full:...``) in their place: the result file then says which weights produced it, and the
        leaderboard tells another model or adapter written under the same path apart."""
        info = super().get_model_info()
        for key, fingerprint in self._fingerprints.items():
            if fingerprint and not info.get(key):
                info[key] = fingerprint
        return info

    def _create_tokenizer(self, *args, **kwargs) -> None:
        """``HFLM._create_tokenizer``, then the ``token_cache=`` check: before the model is loaded."""
        super()._create_tokenizer(*args, **kwargs)
        if self.token_cache and (self.backend != "causal" or not getattr(self.tokenizer, "is_fast", False)):
            raise ValueError(f"{MODEL_NAME}: token_cache= needs a causal model with a fast tokenizer "
                             f"({type(self.tokenizer).__name__}, backend {self.backend}); drop token_cache=")

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        """lm-eval's ``loglikelihood`` with the tokenisation batched (``encode_pairs``); ``HFLM``'s own
        (with its checks: ``enable_thinking`` refuses log-likelihood tasks) where that does not apply."""
        pairs = [req.args for req in requests]
        if getattr(self, "enable_thinking", None) or self.backend != "causal" or not getattr(self.tokenizer, "is_fast", False) or any(c == "" for c, _ in pairs):
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        encoded = self.encode_pairs(pairs)
        self._longest_continuation = max(len(cont) for _, cont in encoded) if encoded else None
        self._row_lengths = self.row_lengths(encoded)
        try:
            return self._loglikelihood_tokens([(pair, ctx, cont) for pair, (ctx, cont) in zip(pairs, encoded)],
                                              disable_tqdm=disable_tqdm)
        finally:
            self._longest_continuation = None
            self._row_lengths = []

    def row_lengths(self, encoded) -> list[int]:
        """The input length of every row ``_loglikelihood_tokens`` forwards, longest first: one row per
        context + continuation minus its last token (lm-eval's one-token-continuation groups), cut to
        ``max_length`` as lm-eval cuts it."""
        rows = {tuple(ctx + cont[:-1]) for ctx, cont in encoded}
        return sorted((min(len(row) + 1, self.max_length + 1) - 1 for row in rows), reverse=True)

    def _detect_batch_size(self, requests=None, pos: int = 0):
        """lm-eval's probe, with ``logits_window`` giving it the widest window of a batch (``probe_window``)."""
        self._probing = True
        try:
            return super()._detect_batch_size(requests, pos)
        finally:
            self._probing = False

    def probe_window(self, batch_size: int, width: int) -> int:
        """The most positions a batch of ``batch_size`` rows no longer than ``width`` (the probe's: its
        request and every later one in lm-eval's longest-first order) keeps: the largest spread of
        lengths over that many consecutive rows plus the longest continuation."""
        lengths = np.asarray(self._row_lengths, dtype=np.int64)
        lengths = lengths[lengths <= width]
        span = min(batch_size, len(lengths)) - 1
        spread = int((lengths[:len(lengths) - span] - lengths[span:]).max()) if len(lengths) else 0
        return spread + self._longest_continuation

    def _model_call(self, inps: torch.Tensor, attn_mask=None, labels=None) -> torch.Tensor:
        """``HFLM._model_call``; inside ``loglikelihood``, logits of the last ``logits_window`` positions only."""
        keep = None if attn_mask is not None or labels is not None else self.logits_window(inps)
        if keep is None:
            return super()._model_call(inps, attn_mask, labels)
        with torch.no_grad(), torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                             enabled=self.mixed_precision_dtype is not None):
            return self.model(inps, logits_to_keep=keep).logits

    def logits_window(self, inps: torch.Tensor) -> int | None:
        """Positions from the end of a right-padded batch that hold every row's continuation, or None
        (all of them) outside ``loglikelihood`` or for a model whose forward has no ``logits_to_keep``."""
        if self._longest_continuation is None or self.backend != "causal" or not self._takes_logits_to_keep:
            return None
        width = inps.shape[1]
        if self._probing:
            keep = self.probe_window(inps.shape[0], width)
            return keep if keep < width else None
        nonzero = (inps != 0).int()
        # index of the last non-zero id + 1: a lower bound of each row's length (0 for an all-zero row)
        lengths = torch.where(nonzero.any(dim=1), width - nonzero.flip(1).argmax(dim=1), 0)
        keep = width - int(lengths.min()) + self._longest_continuation
        return keep if keep < width else None

    def encode_pairs(self, pairs) -> list[tuple[list[int], list[int]]]:
        """``[self._encode_pair(context, continuation) for ...]`` for a causal model, with each distinct
        string encoded once: the trailing spaces of a context move to its continuation, the whole text
        and the context are encoded, and the continuation is what the whole has beyond the context."""
        moved = []
        for context, continuation in pairs:
            n_spaces = len(context) - len(context.rstrip())
            moved.append((context[:-n_spaces], context[-n_spaces:] + continuation) if n_spaces else
                         (context, continuation))
        strings = list(dict.fromkeys(s for context, continuation in moved for s in (context, context + continuation)))
        ids = dict(zip(strings, self.tok_encode_many(strings)))
        out = []
        for context, continuation in moved:
            context_enc = ids[context]
            out.append((context_enc, ids[context + continuation][len(context_enc):]))
        return out

    def tok_encode_many(self, strings: list[str]) -> list[list[int]]:
        """``[self.tok_encode(s) for s in strings]``, ``ENCODE_CHUNK`` strings per tokenizer call: the
        strings that already begin with BOS get no second one, as in ``tok_encode``."""
        bos = self.tokenizer.decode(self.prefix_token_id)
        out: list[list[int] | None] = [None] * len(strings)
        for starts_with_bos in (False, True):
            kwargs = _add_special_kwargs(None, self.add_bos_token)
            if starts_with_bos:
                kwargs["add_special_tokens"] = False
            index = [i for i, s in enumerate(strings) if has_bos_prefix(s, bos) == starts_with_bos]
            texts = [strings[i] for i in index]
            encoded = (self._cache(kwargs).encode(texts, lambda misses: self._encode_chunks(misses, kwargs))
                       if self.token_cache else self._encode_chunks(texts, kwargs))
            for i, enc in zip(index, encoded):
                out[i] = enc
        return out

    def _encode_chunks(self, texts: list[str], kwargs: dict) -> list[list[int]]:
        out: list[list[int]] = []
        for start in range(0, len(texts), ENCODE_CHUNK):
            out.extend(list(enc) for enc in self.tokenizer(texts[start:start + ENCODE_CHUNK], **kwargs)["input_ids"])
        return out

    def _cache(self, kwargs: dict) -> TokenCache:
        fingerprint = tokenizer_fingerprint(self.tokenizer, kwargs)
        if fingerprint not in self._token_caches:
            self._token_caches[fingerprint] = TokenCache(self.token_cache, fingerprint)
        return self._token_caches[fingerprint]

    def _embedding_prompt_config(self):
        """The active peft config if it prepends embeddings; None without a prompt-learning adapter."""
        config = getattr(self.model, "active_peft_config", None)
        if config is None or not config.is_prompt_learning:
            return None
        if str(getattr(config.peft_type, "value", config.peft_type)) not in EMBEDDING_PROMPTS:
            raise ValueError(
                f"{MODEL_NAME}: peft type {config.peft_type} is not supported for generation; "
                f"supported: {', '.join(EMBEDDING_PROMPTS)} (use --model hf for other adapters)"
            )
        return config

    def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs) -> torch.Tensor:
        config = self._embedding_prompt_config()
        if config is None:
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        attention_mask = generation_kwargs.pop("attention_mask", None)
        if attention_mask is None:
            attention_mask = torch.ones_like(context)
        embeds, mask = soft_prompt_after_padding(self.model, context, attention_mask.to(context.device))
        # the same sampling settings HFLM._model_generate derives from the task's generation_kwargs
        generation_kwargs["temperature"] = generation_kwargs.get("temperature", 0.0)
        do_sample = generation_kwargs.get("do_sample")
        if generation_kwargs["temperature"] == 0.0 and do_sample is None:
            generation_kwargs["do_sample"] = do_sample = False
        if do_sample is False and generation_kwargs["temperature"] == 0.0:
            generation_kwargs.pop("temperature")
        stopping_criteria = stop_sequences_criteria(self.tokenizer, stop, context.shape[1], context.shape[0])
        with torch.autocast(
            device_type=self.device.type,
            dtype=self.mixed_precision_dtype,
            enabled=self.mixed_precision_dtype is not None,
        ):
            # the base model, not peft's generate (which would prepend the prompt a second time);
            # input_ids only label the output, which is [context | new tokens] as HFLM expects
            return self.model.get_base_model().generate(
                input_ids=context,
                inputs_embeds=embeds,
                attention_mask=mask,
                max_new_tokens=max_length - context.shape[1],
                stopping_criteria=stopping_criteria,
                pad_token_id=self.tokenizer.pad_token_id,
                use_cache=True,
                **generation_kwargs,
            )


def soft_prompt_after_padding(peft_model, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """Left-padded ``input_ids`` -> embeddings ``[padding | soft prompt | tokens]`` and their attention mask."""
    if bool((attention_mask[:, 1:] < attention_mask[:, :-1]).any()):
        raise ValueError("soft_prompt_after_padding needs left padding (attention mask 0...0 1...1 in every row)")
    tokens = peft_model.get_base_model().get_input_embeddings()(input_ids)
    prompts = peft_model.get_prompt(batch_size=input_ids.shape[0]).to(device=tokens.device, dtype=tokens.dtype)
    n = prompts.shape[1]
    pads = (attention_mask == 0).sum(dim=1).tolist()
    embeds = torch.cat([prompts, tokens], dim=1)
    # n ones per row, whatever the width: attention_mask[:, :n] has fewer columns when the rows are shorter than the prompt
    mask = torch.cat([attention_mask.new_ones((attention_mask.shape[0], n)), attention_mask], dim=1)
    for row, p in enumerate(pads):
        if p:  # move this row's padding in front of its soft prompt
            embeds[row] = torch.cat([tokens[row, :p], prompts[row], tokens[row, p:]])
            mask[row] = torch.cat([attention_mask[row, :p], mask[row, :n], attention_mask[row, p:]])
    return embeds, mask


def check_generation_route(lm, requests=()) -> None:
    """Refuse generation by an lm-eval model other than ``hf-prompt`` whose model carries an active prompt-tuning
    adapter: its answers would silently depend on ``--batch_size`` (and, with transformers 5, be wrong even one at
    a time). It looks at the model that runs the requests, however it was built (the command line, ``simple_evaluate``,
    a ``TaskManager`` without ``peft`` in its metadata) and whatever other models the process holds."""
    if getattr(lm, "PROMPT_AFTER_PADDING", False):
        return
    config = getattr(getattr(lm, "model", None), "active_peft_config", None)
    peft_type = None if config is None else str(getattr(config.peft_type, "value", config.peft_type))
    if peft_type in EMBEDDING_PROMPTS:
        task = next((r.task_name for r in requests if getattr(r, "task_name", None)), "generate_until")
        raise ValueError(
            f"{task}: peft={getattr(lm, 'peft', None)} is a {peft_type} adapter, which --model hf generates from "
            f"wrongly (soft prompt before the padding, peft issue 1093; answers change with --batch_size); run {ROUTE} "
            f"(in Python: lm_eval.simple_evaluate(model=\"{MODEL_NAME}\", ...))"
        )


def _guard_generation() -> None:
    """Run ``check_generation_route`` at the start of ``HFLM.generate_until``. lm-eval has no hook where a task
    sees the model that answers it (its metadata holds ``--model_args`` only on the command line, never the model
    class), so the check goes where the model and its requests meet: one wrapper, everything else passed through
    unchanged, installed once (a second import or a reload finds it in place)."""
    original = HFLM.generate_until
    if getattr(original, "_checks_generation_route", False):
        return

    @functools.wraps(original)
    def generate_until(self, requests, *args, **kwargs):
        check_generation_route(self, requests)
        return original(self, requests, *args, **kwargs)

    generate_until._checks_generation_route = True
    HFLM.generate_until = generate_until


_guard_generation()


def load_generative(**kwargs):
    """``custom_dataset`` of the generative CultureLLM tasks: the classification tasks' loader (metadata keys
    checked, data read), from this module so that loading the tasks installs the generation guard
    (``_guard_generation``) under any model, plain ``hf`` included."""
    from culture_tasks.classification import load_task

    return load_task(**kwargs)
