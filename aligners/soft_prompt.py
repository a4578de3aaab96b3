"""The search space P = P0 + reshape(A z) and the PEFT prompt-tuning checkpoint it becomes.

A full soft prompt has n x hidden_size numbers (16,384 for 4 tokens of an 8B Llama), far too
many for a black-box optimiser; following black-box tuning (Sun et al., 2022) the optimiser
searches a k-dimensional z mapped through a fixed, seeded random projection A whose scale
follows the token embeddings the model reads, so z ~ O(1) moves each prompt vector by about one embedding
standard deviation. The checkpoint stores the final full P, so using it needs no projection.
"""

from __future__ import annotations

import torch

from culture_tasks.paths import absolute_if_local


# token ids per call when the embedding layer is read row by row (``embedded_table``)
TABLE_CHUNK = 8192


def embedded_table(layer: torch.nn.Module) -> torch.Tensor:
    """The model's input embedding layer applied to every token id (vocab x hidden, float32, CPU): what
    the model reads for each token, and what peft and the scorer prepend a soft prompt to. Gemma's layer
    multiplies its table by sqrt(hidden), so its rows are not the table's."""
    weight = layer.weight
    table = None
    with torch.no_grad():
        # each chunk copied into its rows as it is read: the peak is the table and one chunk (not the
        # chunks and their joined copy: twice the table, 4 GiB for 128k x 4096 tokens)
        for start in range(0, weight.shape[0], TABLE_CHUNK):
            rows = layer(torch.arange(start, min(start + TABLE_CHUNK, weight.shape[0]), device=weight.device))
            if table is None:
                table = torch.empty(weight.shape[0], rows.shape[1], dtype=torch.float32)
            table[start:start + len(rows)] = rows
    return table


def _row_chunks(table: torch.Tensor, step: int = TABLE_CHUNK):
    return (table[start:start + step] for start in range(0, table.shape[0], step))


def _std_of_rows(table: torch.Tensor, rows: torch.Tensor, step: int = TABLE_CHUNK) -> float:
    """The standard deviation (ddof 1) of the values of ``table``'s rows where ``rows`` is True, in float64
    and a few rows at a time (``table[rows]`` would copy the whole table)."""
    flags = rows.split(step)
    count = int(rows.sum()) * table.shape[1]
    mean = sum(float(c[f].sum(dtype=torch.float64)) for c, f in zip(_row_chunks(table, step), flags)) / count
    squares = 0.0
    for c, f in zip(_row_chunks(table, step), flags):
        values = c[f].double()
        squares += float(values.sub_(mean).square_().sum())
    return (squares / (count - 1)) ** 0.5


class SoftPromptSpace:
    def __init__(self, embedding: torch.nn.Module, *, virtual_tokens: int, subspace_dim: int, seed: int,
                 init: str = "text", init_ids: list[int] | None = None):
        """``embedding`` is the model's input embedding layer (``get_input_embeddings()``): P0 and the
        projection's scale come from its output, the token embeddings as the model reads them."""
        table = embedded_table(embedding)
        self.n, self.d, self.k = virtual_tokens, table.shape[1], subspace_dim
        gen = torch.Generator().manual_seed(seed)
        if init == "text":
            if not init_ids:
                raise ValueError("init='text' needs the token ids of an initial text")
            ids = (list(init_ids) * self.n)[: self.n]
        elif init == "vocab":
            ids = torch.randint(0, table.shape[0], (self.n,), generator=gen).tolist()
        else:
            raise ValueError(f"init must be 'text' or 'vocab', got {init!r}")
        self.init_ids = ids
        self.p0 = table[ids].clone()
        finite = torch.cat([torch.isfinite(rows).all(dim=1) for rows in _row_chunks(table)])
        if not torch.isfinite(self.p0).all():
            bad = sorted({i for i in ids if not bool(finite[i])})
            raise ValueError(f"the model reads a NaN or infinite embedding for token id(s) {bad} of the initial "
                             "prompt (a damaged weight?); check the model's weights, or start from another "
                             "--init-text (or, with --init vocab, another --seed)")
        # damaged rows of tokens the prompt does not start from would make the scale NaN: every candidate
        # would then overflow, as if --bound were too large
        std = float(table.std()) if bool(finite.all()) else _std_of_rows(table, finite)
        self.projection = torch.randn(self.n * self.d, self.k, generator=gen) * (std / self.k**0.5)

    def prompts(self, z: torch.Tensor) -> torch.Tensor:
        """(C, k) candidates -> (C, n, d) soft prompts."""
        z = torch.as_tensor(z, dtype=torch.float32).reshape(-1, self.k)
        return self.p0.unsqueeze(0) + (z @ self.projection.T).reshape(-1, self.n, self.d)


def prompt_init_fields(init: str, init_text: str | None, base_model: str) -> dict:
    """How the prompt started, in peft's terms: TEXT (the text and the tokenizer that reads it) or
    SAMPLE_VOCAB (random vocabulary rows). peft's TEXT initialisation tokenises with the
    tokenizer's special tokens, this search without; the exact start ids are in alignment.json."""
    from peft import PromptTuningInit

    if init == "text":
        return {"prompt_tuning_init": PromptTuningInit.TEXT, "prompt_tuning_init_text": init_text,
                "tokenizer_name_or_path": base_model}
    if init == "vocab":
        return {"prompt_tuning_init": PromptTuningInit.SAMPLE_VOCAB}
    raise ValueError(f"init must be 'text' or 'vocab', got {init!r}")


def check_prompt_tuning_fits(model_config) -> None:
    """peft fills a prompt-tuning adapter's config from the model's (its layers, hidden size and attention
    heads go into adapter_config.json) and refuses a config without one (Mamba has no attention heads): asked
    here before the model loads, the refusal came only when the checkpoint was written, after the whole search
    and report. Raises peft's ValueError. The width is given, as ``save_prompt_tuning_adapter`` gives the prompt's."""
    from peft import PromptTuningConfig, TaskType
    from peft.utils import _prepare_prompt_learning_config

    # as a dict: peft before 0.22 reads the config by key only
    _prepare_prompt_learning_config(PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=1, token_dim=1),
                                    model_config.to_dict())


def save_prompt_tuning_adapter(model, prompt: torch.Tensor, output_dir, base_model: str, *, init: str,
                               init_text: str | None = None) -> None:
    """Write a stock peft prompt-tuning adapter (adapter_config.json + adapter_model.safetensors)."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    base_model = absolute_if_local(base_model)  # loadable from any folder, never mistaken for a hub id
    config = PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM,
        num_virtual_tokens=prompt.shape[0],
        token_dim=prompt.shape[1],
        base_model_name_or_path=base_model,
        inference_mode=True,  # the weights are set below: peft need not initialise them from text or vocab
        **prompt_init_fields(init, init_text, base_model),
    )
    # prompt tuning wraps the model without changing its modules, so the base stays usable; but peft
    # freezes its parameters, and on CPU torch's linear takes another path for a strided input (the
    # LM head on the last positions) when the weight is frozen (scores ~1e-7 apart): the flags are put
    # back, so that what the model scores next does not depend on whether a checkpoint was written
    # before (the next country of a run, or the same country resumed in a fresh process)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        peft_model = get_peft_model(model, config)
        weight = peft_model.prompt_encoder["default"].embedding.weight
        with torch.no_grad():
            weight.copy_(prompt.to(dtype=weight.dtype, device=weight.device))
        peft_model.peft_config["default"].base_model_name_or_path = base_model  # peft takes the model's own name
        peft_model.save_pretrained(str(output_dir), safe_serialization=True)
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)
